r"""SOAP: Adam run in the eigenbasis of Shampoo's preconditioner [SOAP]_.

Shampoo with exponent :math:`-1/2` preconditions a matrix gradient :math:`G` (:math:`m \times n`)
by :math:`L^{-1/2} G R^{-1/2}`. Writing :math:`L = Q_L \Lambda_L Q_L^\top` and
:math:`R = Q_R \Lambda_R Q_R^\top`, that is a fixed diagonal rescaling in the rotated coordinates
:math:`G' = Q_L^\top G Q_R`. SOAP replaces that fixed rescaling by Adam's adaptive one: it runs Adam
on :math:`G'` and rotates the result back,

.. math::

    M' \leftarrow \beta_1 M' + (1-\beta_1)\, G', \qquad
    V' \leftarrow \beta_2 V' + (1-\beta_2)\, G' \odot G', \qquad
    W \leftarrow W - \eta\, Q_L \frac{\hat M'}{\sqrt{\hat V'} + \epsilon} Q_R^\top ,

while :math:`L, R` follow exponential moving averages of :math:`G G^\top` and :math:`G^\top G` and
the bases are refreshed only every ``precondition_frequency`` steps ([SOAP]_). With
:math:`Q_L = I, Q_R = I` it is exactly Adam (AdamW with ``weight_decay``).

:func:`adam_direction`, the kernel both SOAP and Adam are built on, also serves
:class:`~secondorder.optim.shampoo.Shampoo`'s grafting and :class:`~secondorder.optim.muon.Muon`'s
AdamW part.

References
----------
.. [SOAP] N. Vyas, D. Morwani, R. Zhao, I. Shapira, D. Brandfonbrener, L. Janson and S. Kakade,
   "SOAP: Improving and stabilizing Shampoo using Adam", arXiv:2409.11321, 2024.
.. [AW] I. Loshchilov and F. Hutter, "Decoupled weight decay regularization", ICLR 2019.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from secondorder._validation import check_positive
from secondorder.matrix_functions import _eigenbasis, _refresh_eigenbasis, check_count
from secondorder.optim._per_parameter import PerParameterOptimizer

BASIS_REFRESH = ("qr", "eigh")


def check_beta(name: str, value: float) -> float:
    """Check a decay rate lies in [0, 1)."""
    v = check_positive(name, value, allow_zero=True)
    if v >= 1:
        raise ValueError(f"{name} must lie in [0, 1), got {value!r}")
    return v


def check_start(name: str, value: int | float) -> int | float:
    """Check a first step: an integer >= 1, or ``math.inf`` for never."""
    if value == math.inf:
        return value
    return check_count(name, value, minimum=1)


def adam_direction(M: Tensor, V: Tensor, g: Tensor, step: int, beta1: float, beta2: float,
                   eps: float) -> Tensor:
    r"""Advance Adam's moments by one gradient and return the bias-corrected direction.

    .. math::

        M \leftarrow \beta_1 M + (1-\beta_1)\, g, \qquad
        V \leftarrow \beta_2 V + (1-\beta_2)\, g \odot g, \qquad
        d = \frac{M / (1-\beta_1^t)}{\sqrt{V / (1-\beta_2^t)} + \epsilon} ,

    Algorithm 1 of Kingma & Ba, "Adam: A method for stochastic optimization", ICLR 2015, with
    :math:`\epsilon` added outside the square root as in ``torch.optim.Adam``. The step is
    :math:`-\eta\, d`.

    Parameters
    ----------
    M, V : Tensor
        First and second moments, shape of ``g``; updated in place (they are optimizer state).
    g : Tensor
        The gradient (for SOAP: the rotated gradient :math:`G'`).
    step : int
        :math:`t \ge 1`, the number of gradients averaged so far including ``g``.
    beta1, beta2, eps : float
        Adam's hyperparameters.

    Returns
    -------
    Tensor
        :math:`d`, a new tensor of ``g``'s shape.
    """
    M.lerp_(g, 1 - beta1)
    V.mul_(beta2).addcmul_(g, g, value=1 - beta2)
    denom = (V.sqrt() / math.sqrt(1 - beta2 ** step)).add_(eps)
    return (M / (1 - beta1 ** step)).div_(denom)


def _rotate(X: Tensor, Q_L: Tensor | None, Q_R: Tensor | None) -> Tensor:
    r""":math:`Q_L^\top X Q_R`, skipping a side whose basis is the identity (``None``)."""
    if Q_L is not None:
        X = Q_L.mT @ X                                           # (m, n)
    return X if Q_R is None else X @ Q_R                         # (m, n)


def _unrotate(X: Tensor, Q_L: Tensor | None, Q_R: Tensor | None) -> Tensor:
    r""":math:`Q_L X Q_R^\top`, the inverse of :func:`_rotate`."""
    if Q_L is not None:
        X = Q_L @ X                                              # (m, n)
    return X if Q_R is None else X @ Q_R.mT                      # (m, n)


class SOAP(PerParameterOptimizer):
    r"""Adam in Shampoo's eigenbasis, with decoupled weight decay [SOAP]_.

    A parameter with two or more dimensions is viewed as a matrix :math:`W` of shape
    :math:`m \times n` (first dimension × the rest). Each side whose size is at most
    ``max_precond_dim`` gets a Kronecker factor and an eigenbasis; a larger side keeps the identity
    basis (Adam's own diagonal scaling covers it), as in [SOAP]_. Vectors (biases, norms)
    and matrices too large on both sides get plain AdamW. Per step, for a matrix parameter:

    1. :math:`L \leftarrow \beta_s L + (1-\beta_s) G G^\top`,
       :math:`R \leftarrow \beta_s R + (1-\beta_s) G^\top G`;
    2. at steps :math:`t_0, t_0 + f, t_0 + 2f, \dots` (:math:`t_0` = ``start_preconditioning_step``,
       :math:`f` = ``precondition_frequency``) refresh :math:`Q_L, Q_R`: by an eigendecomposition the
       first time, then by one step of subspace iteration with QR
       (:func:`~secondorder.matrix_functions.refresh_eigenbasis`, ``basis_refresh="qr"``, the
       paper's choice) or a full eigendecomposition every time (``"eigh"``). The first moment is
       rotated exactly into the new basis, :math:`M' \leftarrow Q_{L,\text{new}}^\top
       Q_{L,\text{old}} M' Q_{R,\text{old}}^\top Q_{R,\text{new}}`; the second moment cannot be
       rotated, so its rows and columns follow the columns of the bases (permuted with the QR
       refresh's order, kept in place after an ``eigh`` refresh, whose columns are in eigenvalue
       order too);
    3. one Adam step on :math:`G' = Q_L^\top G Q_R` (:func:`adam_direction`), rotated back:
       :math:`W \leftarrow (1 - \eta\lambda) W - \eta\, Q_L D' Q_R^\top`.

    Before :math:`t_0` the bases are the identity and SOAP is AdamW exactly; with
    ``start_preconditioning_step=math.inf`` it stays AdamW (useful to test, and to warm up).

    Parameters
    ----------
    params : iterable
        Parameters or parameter groups.
    lr : float
        :math:`\eta` (default 3e-3).
    betas : (float, float)
        Adam's :math:`(\beta_1, \beta_2)` (default (0.95, 0.95), the paper's).
    shampoo_beta : float
        :math:`\beta_s`, decay of the factors (default 0.95).
    eps : float
        Adam's :math:`\epsilon` (default 1e-8).
    weight_decay : float
        :math:`\lambda`, decoupled as in AdamW [AW]_ (default 0.01).
    precondition_frequency : int
        :math:`f`, steps between basis refreshes (default 10).
    max_precond_dim : int
        Largest side that gets a factor and a basis (default 10000).
    start_preconditioning_step : int or math.inf
        :math:`t_0`, the first refresh (default 1).
    basis_refresh : {"qr", "eigh"}
        How later refreshes are computed (default "qr").

    Notes
    -----
    State per parameter, named after the paper's symbols: ``step`` (int :math:`t`), ``M`` and ``V``
    (:math:`M', V'`, Adam's moments in the rotated basis, shape :math:`m \times n`, or the
    parameter's shape for AdamW parameters), and for each preconditioned side ``L``/``R``
    (factors) and ``Q_L``/``Q_R`` (bases, starting at the identity). Memory: :math:`2mn` plus
    :math:`2d^2` for each preconditioned side of size :math:`d`.
    """

    def __init__(self, params, lr: float = 3e-3, betas: tuple[float, float] = (0.95, 0.95),
                 shampoo_beta: float = 0.95, eps: float = 1e-8, weight_decay: float = 0.01,
                 precondition_frequency: int = 10, max_precond_dim: int = 10000,
                 start_preconditioning_step: int | float = 1, basis_refresh: str = "qr"):
        if basis_refresh not in BASIS_REFRESH:
            raise ValueError(f"basis_refresh must be one of {BASIS_REFRESH}, got {basis_refresh!r}")
        defaults = dict(
            lr=check_positive("lr", lr, allow_zero=True),
            betas=(check_beta("betas[0]", betas[0]), check_beta("betas[1]", betas[1])),
            shampoo_beta=check_beta("shampoo_beta", shampoo_beta), eps=check_positive("eps", eps),
            weight_decay=check_positive("weight_decay", weight_decay, allow_zero=True),
            precondition_frequency=check_count("precondition_frequency", precondition_frequency),
            max_precond_dim=check_count("max_precond_dim", max_precond_dim),
            start_preconditioning_step=check_start("start_preconditioning_step",
                                                   start_preconditioning_step),
            basis_refresh=basis_refresh)
        super().__init__(params, defaults)

    def _direction(self, p: Tensor, state: dict, group: dict) -> tuple[Tensor, float]:
        return self._soap_direction(p.grad, state, group), group["lr"]

    @staticmethod
    def _init_state(p: Tensor, state: dict, group: dict) -> None:
        max_dim = group["max_precond_dim"]
        shape = (p.shape[0], p[0].numel()) if p.ndim >= 2 else p.shape  # (m, n) or the vector's
        state["M"] = torch.zeros(shape, dtype=p.dtype, device=p.device)
        state["V"] = torch.zeros(shape, dtype=p.dtype, device=p.device)
        if p.ndim < 2:
            return
        for side, d in zip(("L", "R"), shape):
            if d <= max_dim:
                state[side] = torch.zeros(d, d, dtype=p.dtype, device=p.device)   # (d, d)
                state["Q_" + side] = torch.eye(d, dtype=p.dtype, device=p.device)  # (d, d)

    @staticmethod
    def _soap_direction(g: Tensor, state: dict, group: dict) -> Tensor:
        beta1, beta2 = group["betas"]
        t = state["step"]
        G = g.reshape(state["M"].shape)                          # (m, n), or the vector
        if "L" in state or "R" in state:
            beta_s = group["shampoo_beta"]
            if "L" in state:
                state["L"].lerp_(G @ G.mT, 1 - beta_s)           # (m, m)
            if "R" in state:
                state["R"].lerp_(G.mT @ G, 1 - beta_s)           # (n, n)
            t0 = group["start_preconditioning_step"]
            if t >= t0 and (t - t0) % group["precondition_frequency"] == 0:
                _refresh_bases(state, exact=t == t0 or group["basis_refresh"] == "eigh")
            G = _rotate(G, state.get("Q_L"), state.get("Q_R"))  # (m, n) = G'
        D = adam_direction(state["M"], state["V"], G, t, beta1, beta2, group["eps"])
        return _unrotate(D, state.get("Q_L"), state.get("Q_R")) if G.ndim == 2 else D


def _refresh_bases(state: dict, exact: bool) -> None:
    """Refresh ``Q_L``/``Q_R`` from ``L``/``R`` and carry Adam's moments into the new basis."""
    M = _unrotate(state["M"], state.get("Q_L"), state.get("Q_R"))  # (m, n), parameter basis
    for dim, side in enumerate(("L", "R")):
        if side not in state:
            continue
        if exact:
            state["Q_" + side] = _eigenbasis(state[side])        # (d, d)
        else:
            state["Q_" + side], order = _refresh_eigenbasis(state[side], state["Q_" + side])
            state["V"] = state["V"].index_select(dim, order)     # V' follows its basis columns
    state["M"] = _rotate(M, state.get("Q_L"), state.get("Q_R"))  # (m, n), new basis
