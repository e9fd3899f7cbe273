r"""Dense BFGS as a ``torch.optim`` optimizer, for models small enough for an :math:`n \times n` matrix.

Algorithm 6.1 of [NW]_ over the flattened parameters, driven like ``torch.optim.LBFGS`` (closure,
termination rules, first step :math:`\min(1, 1/\|g_0\|_1)\cdot` ``lr``), with a strong Wolfe line
search by default.

State (in ``self.state[first parameter]``) and its symbols in [NW]_: ``H`` ``(n, n)`` is the
inverse-Hessian approximation :math:`H_k`; ``scaled`` says whether :math:`H_0` has been rescaled
by (6.20); ``d`` ``(n,)`` and ``t`` are :math:`d_k = -H_k g_k` and :math:`\alpha_k`;
``prev_flat_grad`` ``(n,)`` is :math:`g_k`; ``n_iter``, ``func_evals``, ``prev_loss`` as in torch.

References
----------
.. [NW] J. Nocedal and S. J. Wright, *Numerical Optimization*, 2nd ed., Springer, 2006.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import Tensor

from .._validation import check_count
from ..quasi_newton import bfgs_inverse_update, initial_scaling
from .lbfgs import ClosureQuasiNewton, _abs_max, _pair_accepted, check_closure_options

#: Largest number of parameters BFGS accepts unless ``max_dense`` is raised (20000² float32 is 1.6 GB).
MAX_DENSE = 20000


class BFGS(ClosureQuasiNewton):
    r"""BFGS with a dense inverse-Hessian approximation, Algorithm 6.1 of [NW]_.

    After each step :math:`s_k = x_{k+1} - x_k`, :math:`y_k = g_{k+1} - g_k`; the pair is kept when
    :math:`y_k^\top s_k > \varepsilon \|s_k\| \|y_k\|` (the scale-invariant rule of
    :func:`secondorder.quasi_newton.curvature_pair_accepted`) and then

    .. math::

        H_{k+1} = (I - \rho_k s_k y_k^\top) H_k (I - \rho_k y_k s_k^\top) + \rho_k s_k s_k^\top,
        \qquad \rho_k = 1 / y_k^\top s_k ,

    (6.17, :func:`secondorder.quasi_newton.bfgs_inverse_update`), where before the first update
    :math:`H_0 = I` is replaced by :math:`\frac{y^\top s}{y^\top y} I` (6.20,
    :func:`secondorder.quasi_newton.initial_scaling`). The direction is :math:`d_k = -H_k g_k`.
    Cost per iteration :math:`O(n^2)`; memory :math:`n^2`.

    Parameters
    ----------
    params : iterable
        Parameters (one group), all of one dtype and device.
    lr : float
        Trial step of the line search, or the fixed step without one. Default 1.
    max_iter, max_eval, tolerance_grad, tolerance_change
        As in :class:`secondorder.optim.LBFGS` (defaults 20, ``max_iter * 5 // 4``, 1e-7, 1e-9).
    line_search_fn : {"strong_wolfe", None}
        Default "strong_wolfe" (:func:`secondorder.linesearch.strong_wolfe`); None: fixed step ``lr``.
    curvature_eps : float
        :math:`\varepsilon` of the acceptance rule. Default 1e-8.
    max_dense : int
        Refuse more parameters than this (the matrix has :math:`n^2` entries). Default 20000.
    """

    def __init__(self, params: Iterable, lr: float | Tensor = 1, max_iter: int = 20,
                 max_eval: int | None = None, tolerance_grad: float = 1e-7, tolerance_change: float = 1e-9,
                 line_search_fn: str | None = "strong_wolfe", curvature_eps: float = 1e-8,
                 max_dense: int = MAX_DENSE):
        if curvature_eps is None:
            raise ValueError("curvature_eps must be a number ≥ 0 for BFGS, got None")
        defaults = check_closure_options(lr, max_iter, max_eval, tolerance_grad, tolerance_change,
                                         line_search_fn, curvature_eps)
        max_dense = check_count("max_dense", max_dense, 1)
        super().__init__(params, defaults)
        if self._flat.n > max_dense:
            raise ValueError(f"BFGS stores a dense n×n matrix and n = {self._flat.n} exceeds "
                             f"max_dense = {max_dense}; use LBFGS, or pass a larger max_dense")

    def _allocate(self, state: dict) -> None:
        self._reset(state)

    def _reset(self, state: dict) -> None:
        state["H"] = torch.eye(self._flat.n, dtype=self._flat.dtype, device=self._flat.device)  # (n, n)
        state["scaled"] = False

    def _propose(self, state: dict, g: Tensor, g_prev: Tensor) -> dict[str, Tensor]:
        s = state["d"] * state["t"]                              # (n,)
        y = g - g_prev                                           # (n,)
        self._pending = (s, y)
        eps = self.param_groups[0]["curvature_eps"]
        return {"accept": _pair_accepted(s, y, torch.dot(y, s), eps), "step_max": _abs_max(s)}

    def _commit(self, state: dict, host: dict[str, float]) -> None:
        if not host["accept"] > 0:
            return
        s, y = self._pending
        H = state["H"]
        if not state["scaled"]:
            H = initial_scaling(s, y) * H                        # H_0 = γ I   (6.20)
            state["scaled"] = True
        state["H"] = bfgs_inverse_update(H, s, y)                # (6.17)

    def _direction(self, state: dict, g: Tensor) -> Tensor:
        state["d"] = -(state["H"] @ g)                           # (n,)
        return state["d"]
