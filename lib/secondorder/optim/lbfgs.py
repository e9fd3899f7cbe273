r"""L-BFGS as a ``torch.optim`` optimizer: a drop-in for :class:`torch.optim.LBFGS`.

The outer iteration is Algorithm 7.5 of [NW]_ with the conventions of ``torch.optim.LBFGS``
(closure, termination rules, first step, curvature-pair rule). With ``line_search_fn=None`` the
iterates agree with torch's to rounding. With ``line_search_fn="strong_wolfe"`` they do not in
general: the step comes from :func:`secondorder.linesearch.strong_wolfe` (Algorithms 3.5–3.6 of
[NW]_), not from torch's port of minFunc's search, so the accepted step lengths and the number of
evaluations can differ from the first line search on (both steps satisfy the strong Wolfe
conditions). What differs in every case is how the direction :math:`d_k = -H_k g_k` is computed:

* the pairs live in one preallocated ring buffer on the parameters' device instead of lists of
  freshly allocated tensors;
* :math:`H_k g_k` comes from the compact representation of [BNS]_ instead of the two-loop
  recursion (Algorithm 7.4 of [NW]_, :func:`secondorder.two_loop.two_loop_recursion`): the same
  matrix, applied with two matrix-vector products over the buffer (:math:`S^\top g, Y^\top g`,
  then :math:`S u + \gamma Y v`) and a few :math:`m \times m` operations, instead of :math:`4m`
  dependent vector operations. The new column of :math:`S^\top Y` and :math:`Y^\top Y` costs no
  third pass: :math:`s_i^\top y_k = s_i^\top g_{k+1} - s_i^\top g_k`, both products already known;
* the scalars the termination rules need are read in one host synchronization per function
  evaluation, plus one for the directional derivative, instead of :math:`2m + 5` per iteration.

State (all in ``self.state[first parameter]``, as torch does) and its symbols in [NW]_:

==================  ======================  ===============================================
state key           shape                   meaning
==================  ======================  ===============================================
``pairs``           ``(2, m + 1, n)``       ring buffer: ``pairs[0, i]`` = :math:`s_i`,
                                            ``pairs[1, i]`` = :math:`y_i` (the extra slot
                                            receives the next candidate pair)
``head, count``     int, int                slot of the oldest stored pair, number stored
``sy``              ``(m + 1, m + 1)``      ``sy[i, j]`` = :math:`s_i^\top y_j` for stored
                                            :math:`i` older than or equal to :math:`j`;
                                            its diagonal is :math:`1/\rho_i` (7.17)
``yy``              ``(m + 1, m + 1)``      ``yy[i, j]`` = :math:`y_i^\top y_j`
``pg``              ``(2, m + 1)``          :math:`s_i^\top g_{k-1}` and :math:`y_i^\top g_{k-1}`
``H_diag``          float                   :math:`\gamma_k` of :math:`H_k^0 = \gamma_k I` (7.20)
``d``, ``t``        ``(n,)``, float         :math:`d_k` and the step length :math:`\alpha_k`
``flat_grad``,      ``(n,)`` each           work buffer and :math:`g_{k-1}` (the gradient
``prev_flat_grad``                          where ``d`` was computed)
==================  ======================  ===============================================

plus ``n_iter``, ``func_evals`` and ``prev_loss`` as in torch. :math:`m` is ``history_size``;
:math:`n` the total number of (real) parameter entries.

References
----------
.. [NW] J. Nocedal and S. J. Wright, *Numerical Optimization*, 2nd ed., Springer, 2006.
.. [LN] D. C. Liu and J. Nocedal, "On the limited memory BFGS method for large scale
   optimization", *Mathematical Programming* 45, 503–528, 1989.
.. [BNS] R. H. Byrd, J. Nocedal and R. B. Schnabel, "Representations of quasi-Newton matrices and
   their use in limited memory methods", *Mathematical Programming* 63, 129–156, 1994.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from functools import lru_cache

import torch
from torch import Tensor
from torch.optim import Optimizer

from .._validation import check_count, check_positive
from ..linesearch import strong_wolfe

LINE_SEARCHES = (None, "strong_wolfe")

#: The options of a parameter group (torch's base class adds others, such as ``differentiable``).
OPTIONS = ("lr", "max_iter", "max_eval", "tolerance_grad", "tolerance_change", "line_search_fn",
           "curvature_eps", "history_size")

#: torch.optim.LBFGS keeps a pair only when y·s exceeds this absolute threshold.
TORCH_CURVATURE_THRESHOLD = 1e-10

#: On a multi-threaded CPU, a pair buffer larger than this is multiplied row by row (LBFGS._by_rows).
ROW_KERNEL_MIN_BYTES = 1 << 26

#: Up to this many entries, max |x_i| is one ``vector_norm`` call; above, ``aminmax``, which reads x
#: once without a temporary (17× faster at n = 1e7 on a 2-core CPU).
ONE_CALL_ABS_MAX = 1 << 16


def compact_coefficients(a: Tensor, b: Tensor, sy: Tensor, yy: Tensor, gamma: Tensor | float
                         ) -> tuple[Tensor, Tensor]:
    r"""Coefficients of :math:`H_k g` in the compact representation of L-BFGS, Theorem 2.2 of [BNS]_.

    With the :math:`k` stored pairs as columns of :math:`S, Y \in \mathbb{R}^{n \times k}` (oldest
    first), :math:`H_k^0 = \gamma I`, :math:`R` the upper triangle of :math:`S^\top Y` and
    :math:`D` its diagonal, the L-BFGS matrix (the one the two-loop recursion applies) is

    .. math::

        H_k = \gamma I + \begin{bmatrix} S & \gamma Y \end{bmatrix}
        \begin{bmatrix} R^{-\top}(D + \gamma Y^\top Y) R^{-1} & -R^{-\top} \\ -R^{-1} & 0 \end{bmatrix}
        \begin{bmatrix} S^\top \\ \gamma Y^\top \end{bmatrix},

    so :math:`H_k g = \gamma g + S u + \gamma Y v` with :math:`a = S^\top g`, :math:`b = Y^\top g`,

    .. math::

        v = -R^{-1} a, \qquad u = R^{-\top}\bigl(-(D + \gamma Y^\top Y)\, v - \gamma b\bigr).

    Only :math:`k \times k` work: the :math:`n`-dimensional products :math:`S^\top g, Y^\top g`
    and :math:`S u + \gamma Y v` are left to the caller, one pass over the pairs each.

    Parameters
    ----------
    a, b : Tensor, shape (k,)
        :math:`S^\top g` and :math:`Y^\top g`.
    sy : Tensor, shape (k, k)
        :math:`S^\top Y`, oldest first; only the upper triangle is read.
    yy : Tensor, shape (k, k)
        :math:`Y^\top Y`.
    gamma : float or 0-d Tensor
        :math:`\gamma` of :math:`H_k^0 = \gamma I`.

    Returns
    -------
    u, v : Tensor, shape (k,)
    """
    neg_u, neg_v = _negated_coefficients(a, b, sy, yy, gamma)
    return neg_u.neg_(), neg_v.neg_()


def _negated_coefficients(a: Tensor, b: Tensor, sy: Tensor, yy: Tensor, gamma: Tensor | float
                          ) -> tuple[Tensor, Tensor]:
    r""":math:`-u` and :math:`-v` of :func:`compact_coefficients`, the signs the direction needs.

    Five kernels, two of them the triangular solves: :math:`-v = R^{-1}a` and
    :math:`-u = R^{-\top}\bigl(-D(-v) + \gamma(b - Y^\top Y (-v))\bigr)`.
    """
    # solve_triangular reads only the named triangle, so R = triu(sy) is never formed (torch.triu
    # also starts a thread team even for a 10 × 10 matrix).
    neg_v = torch.linalg.solve_triangular(sy, a.unsqueeze(-1), upper=True).squeeze(-1)     # (k,)
    rhs = torch.addmv(b, yy, neg_v, alpha=-1).mul_(gamma)                                 # γ(b - YᵀY(-v))
    rhs.addcmul_(torch.diagonal(sy), neg_v, value=-1)                                     # (k,)
    neg_u = torch.linalg.solve_triangular(sy.mT, rhs.unsqueeze(-1), upper=False).squeeze(-1)
    return neg_u, neg_v


@lru_cache(maxsize=4096)
def _chronological(m1: int, head: int, k: int, device: torch.device) -> tuple[list[int], Tensor | slice]:
    """Slots of the ``k`` stored pairs of a ring of ``m1`` slots, oldest first; cached.

    Returned as a list and as an index for :func:`_select` and :func:`_scatter`: a slice while the
    ring has not wrapped (views, no copy), else an index tensor of shape (k,).
    """
    slots = [(head + i) % m1 for i in range(k)]
    return slots, (slice(0, k) if head == 0 else torch.tensor(slots, device=device))


def _select(M: Tensor, idx: Tensor | slice, dims: tuple[int, ...]) -> Tensor:
    """``M`` restricted to ``idx`` along each of ``dims``.

    ``index_select``, not advanced indexing: torch's indexing kernel starts a thread team, which
    made it 1000× slower than the copy itself when another process kept a core busy.
    """
    if isinstance(idx, slice):
        return M[tuple(idx if i in dims else slice(None) for i in range(M.dim()))]
    for dim in dims:
        M = M.index_select(dim, idx)
    return M


def _abs_max(x: Tensor) -> Tensor:
    r""":math:`\max_i |x_i|` as a 0-d tensor (NaN if any entry is NaN), in the fewest passes for its size."""
    if x.numel() <= ONE_CALL_ABS_MAX:
        return torch.linalg.vector_norm(x, float("inf"))
    lo, hi = torch.aminmax(x)
    return torch.maximum(-lo, hi)


def _pair_accepted(s: Tensor, y: Tensor, ys: Tensor, eps: float) -> Tensor:
    """The rule of :func:`secondorder.quasi_newton.curvature_pair_accepted`, without its input checks.

    Those checks raise on a non-finite pair and synchronize; here a non-finite pair is simply
    rejected (every comparison with NaN is false), as torch does.
    """
    return ys > eps * torch.linalg.vector_norm(s) * torch.linalg.vector_norm(y)


def _to_host(values: dict[str, Tensor | float], device: torch.device) -> dict[str, float]:
    """Read several scalars (0-d tensors or numbers) to Python floats in one synchronization."""
    if device.type == "cpu":  # reading is free here; stacking would only add operations
        return {key: float(v.detach() if isinstance(v, Tensor) else v) for key, v in values.items()}
    stacked = torch.stack([torch.as_tensor(v, device=device).detach().reshape(()).to(device, torch.float64)
                           for v in values.values()])                       # (len(values),)
    return dict(zip(values, stacked.tolist()))


def check_closure_options(lr, max_iter, max_eval, tolerance_grad, tolerance_change, line_search_fn,
                          curvature_eps) -> dict:
    """Validate the arguments shared by :class:`LBFGS` and BFGS; return them as ``defaults``."""
    if isinstance(lr, Tensor):
        if lr.numel() != 1:
            raise ValueError(f"lr must be a number or a 1-element tensor, got shape {tuple(lr.shape)}")
        check_positive("lr", float(lr), allow_zero=True)
    else:
        lr = check_positive("lr", lr, allow_zero=True)
    max_iter = check_count("max_iter", max_iter, 1)
    max_eval = max_iter * 5 // 4 if max_eval is None else check_count("max_eval", max_eval, 1)
    if line_search_fn not in LINE_SEARCHES:
        raise ValueError(f"line_search_fn must be one of {LINE_SEARCHES}, got {line_search_fn!r}")
    if curvature_eps is not None:
        curvature_eps = check_positive("curvature_eps", curvature_eps, allow_zero=True)
    return dict(lr=lr, max_iter=max_iter, max_eval=max_eval,
                # inf is allowed, as torch allows it: tolerance_grad=inf stops after one evaluation.
                tolerance_grad=check_positive("tolerance_grad", tolerance_grad, allow_zero=True, allow_inf=True),
                tolerance_change=check_positive("tolerance_change", tolerance_change, allow_zero=True,
                                                allow_inf=True),
                line_search_fn=line_search_fn, curvature_eps=curvature_eps)


class FlatParams:
    """A list of parameters seen as one flat real vector :math:`x` of shape ``(n,)``.

    Complex parameters count as two real entries each (as in torch). All parameters must share one
    dtype and device, the home of every buffer the optimizers keep.
    """

    def __init__(self, params: list[Tensor]):
        views = [torch.view_as_real(p) if p.is_complex() else p for p in params]
        kinds = {(v.dtype, v.device) for v in views}
        if len(kinds) != 1:
            raise ValueError(f"all parameters must share one dtype and device, got {sorted(map(str, kinds))}")
        self.params = params
        self.sizes = [v.numel() for v in views]
        self.n = sum(self.sizes)
        self.dtype, self.device = kinds.pop()
        self._split: tuple[Tensor, list[tuple[Tensor, Tensor]]] | None = None

    @staticmethod
    def _real(t: Tensor) -> Tensor:
        return torch.view_as_real(t) if t.is_complex() else t

    def _grad(self, p: Tensor) -> Tensor:
        if p.grad is None:
            return self._real(p).new_zeros(self._real(p).shape).reshape(-1)
        g = p.grad.to_dense() if p.grad.is_sparse else p.grad
        return self._real(g).reshape(-1)

    def grad(self, out: Tensor | None = None) -> Tensor:
        """The gradients as one vector, shape ``(n,)``, written into ``out`` when given."""
        grads = [self._grad(p) for p in self.params]
        if out is None:
            return torch.cat(grads)
        if len(grads) == 1:
            return out.copy_(grads[0])
        return torch.cat(grads, out=out)

    def get(self) -> Tensor:
        """A copy of the parameters as one vector, shape ``(n,)``."""
        return torch.cat([self._real(p).reshape(-1) for p in self.params])

    def _parts(self, d: Tensor) -> list[tuple[Tensor, Tensor]]:
        """(parameter, its slice of ``d`` shaped like it) pairs; cached for the last ``d`` seen."""
        if self._split is None or self._split[0] is not d:
            parts = [(p, part.view_as(p)) for p, part in
                     zip(map(self._real, self.params), torch.split(d, self.sizes))]
            self._split = (d, parts)       # holding d keeps the identity test sound
        return self._split[1]

    def add_(self, t: float, d: Tensor) -> None:
        r""":math:`x \leftarrow x + t\, d` (the update torch.optim.LBFGS makes, in the same arithmetic)."""
        for p, part in self._parts(d):
            p.add_(part, alpha=t)

    def set_(self, x: Tensor) -> None:
        r""":math:`x \leftarrow` ``x``."""
        for p, part in zip(self.params, torch.split(x, self.sizes)):
            p = self._real(p)
            p.copy_(part.view_as(p))


class ClosureQuasiNewton(Optimizer):
    r"""Closure-driven quasi-Newton outer loop with the semantics of ``torch.optim.LBFGS``.

    One :meth:`step` runs up to ``max_iter`` iterations of: direction :math:`d_k = -H_k g_k`,
    stop if :math:`g_k^\top d_k > -` ``tolerance_change``, move by a fixed ``lr`` (the very first
    iteration by :math:`\min(1, 1/\|g_0\|_1)\,` ``lr``) or by a strong Wolfe line search, then
    stop on ``max_iter``, ``max_eval``, :math:`\|g\|_\infty \le` ``tolerance_grad``,
    :math:`\|\alpha_k d_k\|_\infty \le` ``tolerance_change`` or
    :math:`|f_{k+1} - f_k| <` ``tolerance_change``. Subclasses supply the matrix :math:`H_k`
    through four hooks: :meth:`_reset`, :meth:`_propose`, :meth:`_commit`, :meth:`_direction`.
    """

    def __init__(self, params: Iterable, defaults: dict):
        super().__init__(params, defaults)
        if len(self.param_groups) != 1:
            raise ValueError(f"{type(self).__name__} supports a single parameter group (like "
                             f"torch.optim.LBFGS), got {len(self.param_groups)}")
        self._params = self.param_groups[0]["params"]
        self._flat = FlatParams(self._params)
        self._pending = None

    # --- hooks -------------------------------------------------------------------------------
    def _allocate(self, state: dict) -> None:
        raise NotImplementedError

    def _reset(self, state: dict) -> None:
        """Start from :math:`H_0 = I` (the first iteration ever)."""
        raise NotImplementedError

    def _propose(self, state: dict, g: Tensor, g_prev: Tensor) -> dict[str, Tensor]:
        """Form the pair :math:`(t d, g - g_{prev})`; return ``accept`` and ``step_max`` on the device."""
        raise NotImplementedError

    def _commit(self, state: dict, host: dict[str, float]) -> None:
        """Store the proposed pair if the scalars read after the evaluation (``host``) accept it."""
        raise NotImplementedError

    def _direction(self, state: dict, g: Tensor) -> Tensor:
        """Return :math:`-H_k g` (and keep it as ``state["d"]``)."""
        raise NotImplementedError

    # --- driver ------------------------------------------------------------------------------
    def _state(self) -> dict:
        if len(self.param_groups) != 1:
            raise ValueError(f"{type(self).__name__} supports a single parameter group, "
                             f"got {len(self.param_groups)}")
        state = self.state[self._params[0]]
        if "n_iter" not in state:
            state.update(n_iter=0, func_evals=0, t=0.0, prev_loss=None)
            state["flat_grad"] = torch.zeros(self._flat.n, dtype=self._flat.dtype, device=self._flat.device)
            state["prev_flat_grad"] = torch.zeros_like(state["flat_grad"])
            self._allocate(state)
        return state

    def _observe(self, state: dict, loss, g: Tensor, lr: float) -> dict[str, float]:
        """After an evaluation: propose the pending pair and read every scalar the rules need at once."""
        values = {"loss": loss, "gmax": _abs_max(g)}
        if state["n_iter"] == 0:
            inv_l1 = 1.0 / g.abs().sum()      # the first step of torch.optim.LBFGS, in its arithmetic
            values.update(inv_l1=inv_l1, t_first=inv_l1 * lr)
        else:
            self._pending = None
            values.update(self._propose(state, g, state["prev_flat_grad"]))
        return _to_host(values, g.device)

    def _advance(self, state: dict, loss: float) -> None:
        """The current gradient becomes :math:`g_{k-1}`; the other buffer receives the next one."""
        state["flat_grad"], state["prev_flat_grad"] = state["prev_flat_grad"], state["flat_grad"]
        state["prev_loss"] = loss

    def _line_search(self, closure: Callable, state: dict, g: Tensor, d: Tensor, loss: float, t: float,
                     budget: int):
        """Strong Wolfe search along ``d`` from the current point (Algorithms 3.5–3.6 of [NW]_)."""

        def value_and_grad(x: Tensor) -> tuple[Tensor, Tensor]:
            self._flat.set_(x)
            f = closure()
            return torch.as_tensor(f).detach(), self._flat.grad()

        f0 = torch.tensor(loss, dtype=torch.float64)  # float32 would round f0 and break the Armijo test
        result = strong_wolfe(value_and_grad, self._flat.get(), d, f0=f0, g0=g, alpha0=t,
                              max_evals=max(budget, 1))
        self._flat.set_(result.x)
        return result

    def _move(self, closure: Callable, group: dict, state: dict, d: Tensor, t: float, loss: float,
              budget: int, last: bool) -> tuple[dict[str, float] | None, int]:
        """Take the step along ``d``; return the scalars at the new point (``None`` if not evaluated)."""
        lr = float(group["lr"])
        if group["line_search_fn"] == "strong_wolfe":
            res = self._line_search(closure, state, state["prev_flat_grad"], d, loss, t, budget)
            state["t"] = res.alpha
            return self._observe(state, res.f, state["flat_grad"].copy_(res.g), lr), res.nfev
        self._flat.add_(t, d)
        state["t"] = t
        if last:  # as torch: no evaluation after the last iteration of a step
            return None, 0
        with torch.enable_grad():
            loss = closure()
        return self._observe(state, loss, self._flat.grad(out=state["flat_grad"]), lr), 1

    def _search_direction(self, state: dict, host: dict[str, float]) -> Tensor:
        g = state["flat_grad"]
        if state["n_iter"] == 1:
            self._reset(state)
            state["d"] = torch.neg(g, out=state.get("d"))
            return state["d"]
        self._commit(state, host)
        return self._direction(state, g)

    def _initial_step(self, state: dict, host: dict[str, float], lr: float) -> float:
        if state["n_iter"] == 1:
            return host["t_first"] if host["inv_l1"] < 1.0 else 1.0 * lr
        return lr

    @staticmethod
    def _converged(group: dict, host: dict[str, float], prev_loss: float) -> bool:
        tol_change = group["tolerance_change"]
        return (host["gmax"] <= group["tolerance_grad"] or host["step_max"] <= tol_change
                or abs(host["loss"] - prev_loss) < tol_change)

    @torch.no_grad()
    def step(self, closure: Callable[[], Tensor]) -> Tensor:  # type: ignore[override]
        """Run up to ``max_iter`` iterations; return the loss of the first evaluation (as torch does).

        Parameters
        ----------
        closure : callable
            Re-evaluates the model: zeroes the gradients, computes the loss, calls ``backward()``
            and returns the loss. Called with gradients enabled.
        """
        if not callable(closure):
            raise ValueError(f"{type(self).__name__}.step needs a closure that returns the loss")
        closure = torch.enable_grad()(closure)
        group, state = self.param_groups[0], self._state()
        lr = float(group["lr"])
        orig_loss = closure()
        state["func_evals"] += 1
        host = self._observe(state, orig_loss, self._flat.grad(out=state["flat_grad"]), lr)
        if host["gmax"] <= group["tolerance_grad"]:
            return orig_loss
        self._iterate(closure, group, state, host, lr)
        return orig_loss

    def _iterate(self, closure: Callable, group: dict, state: dict, host: dict[str, float], lr: float):
        max_iter, max_eval = group["max_iter"], group["max_eval"]
        loss, evals = host["loss"], 1
        for n_iter in range(1, max_iter + 1):
            state["n_iter"] += 1
            d = self._search_direction(state, host)
            self._advance(state, loss)
            t = self._initial_step(state, host, lr)
            if not -math.inf < float(torch.dot(state["prev_flat_grad"], d)) < -group["tolerance_change"]:
                # Not a descent direction (to tolerance), or not finite: torch would step along a NaN
                # direction and leave NaN parameters; here the step ends and the parameters stay.
                break
            prev_loss = loss
            host, n_evals = self._move(closure, group, state, d, t, loss, max_eval - evals,
                                       last=n_iter == max_iter)
            evals += n_evals
            state["func_evals"] += n_evals
            if host is None or evals >= max_eval or self._converged(group, host, prev_loss):
                break
            loss = host["loss"]

    def load_state_dict(self, state_dict: dict) -> None:
        """Load a state; its tensors are copied, so the source optimizer's buffers are never shared.

        Entries of ``self.state`` that are not per-parameter dicts (a load-state-dict post-hook may
        add any value, as torch's own tests do) are left as they are; options missing from a saved
        parameter group (a state saved before the option existed) take this optimizer's defaults.
        """
        super().load_state_dict(state_dict)
        for group in self.param_groups:        # a state saved before an option existed lacks its key
            for key in set(OPTIONS) & set(self.defaults):
                group.setdefault(key, self.defaults[key])
        for state in self.state.values():
            if not isinstance(state, dict):
                continue
            for key, value in state.items():
                if isinstance(value, Tensor):
                    state[key] = value.clone()
            if isinstance(state.get("H_diag"), Tensor):      # saved when γ was kept as a tensor
                state["H_diag"] = float(state["H_diag"])
        self._pending = None


class LBFGS(ClosureQuasiNewton):
    r"""Limited-memory BFGS, Algorithm 7.5 of [NW]_ / [LN]_: a drop-in for :class:`torch.optim.LBFGS`.

    Same constructor, defaults, closure semantics, termination rules and first step
    :math:`\min(1, 1/\|g_0\|_1)\cdot` ``lr`` as torch; with the default ``curvature_eps=None`` the
    same rule for keeping a pair (:math:`y^\top s > 10^{-10}`), so without a line search the iterates
    agree with torch's to rounding (with ``line_search_fn="strong_wolfe"`` the line searches differ:
    see the module docstring). Each iteration stores :math:`s_k = x_{k+1} - x_k`, :math:`y_k = g_{k+1} - g_k`
    (dropping the oldest of ``history_size`` pairs), sets
    :math:`\gamma_{k+1} = s_k^\top y_k / y_k^\top y_k` (7.20) from that newest pair, and moves along
    :math:`d_{k+1} = -H_{k+1} g_{k+1}` (the matrix of (7.19), applied through
    :func:`compact_coefficients`). The module docstring maps the state to these symbols.

    Parameters
    ----------
    params : iterable
        Parameters (one group), all of one dtype and device.
    lr : float
        Step length (the trial step of the line search when there is one). Default 1.
    max_iter : int
        Iterations per :meth:`step`. Default 20.
    max_eval : int, optional
        Function evaluations per :meth:`step`. Default ``max_iter * 5 // 4``.
    tolerance_grad : float
        Stop when :math:`\|g\|_\infty \le` ``tolerance_grad``. Default 1e-7.
    tolerance_change : float
        Stop when the step, the change in loss or :math:`-g^\top d` falls below it. Default 1e-9.
    history_size : int
        :math:`m`, pairs kept. Default 100. The buffer of :math:`2(m+1)n` entries is allocated on
        the first step (torch's lists grow to :math:`2mn` as the pairs arrive).
    line_search_fn : {None, "strong_wolfe"}
        None: fixed step ``lr``. "strong_wolfe": :func:`secondorder.linesearch.strong_wolfe`.
    curvature_eps : float, optional
        None (default): keep a pair when :math:`y^\top s > 10^{-10}`, torch's absolute rule. A number
        :math:`\varepsilon`: keep it when :math:`y^\top s > \varepsilon \|s\|\|y\|`, the scale-invariant
        rule of :func:`secondorder.quasi_newton.curvature_pair_accepted`, which works whatever the
        scale of the loss.
    """

    def __init__(self, params: Iterable, lr: float | Tensor = 1, max_iter: int = 20,
                 max_eval: int | None = None, tolerance_grad: float = 1e-7, tolerance_change: float = 1e-9,
                 history_size: int = 100, line_search_fn: str | None = None,
                 curvature_eps: float | None = None):
        defaults = check_closure_options(lr, max_iter, max_eval, tolerance_grad, tolerance_change,
                                         line_search_fn, curvature_eps)
        defaults["history_size"] = check_count("history_size", history_size, 1)
        super().__init__(params, defaults)
        self._row_views: tuple[Tensor, list[Tensor], bool] | None = None
        # torch compares y·s > 1e-10 in the parameters' dtype; on the host the threshold is rounded alike.
        self._threshold = torch.tensor(TORCH_CURVATURE_THRESHOLD, dtype=self._flat.dtype).item()

    def _allocate(self, state: dict) -> None:
        m1, n = self.param_groups[0]["history_size"] + 1, self._flat.n
        like = dict(dtype=self._flat.dtype, device=self._flat.device)
        state.update(pairs=torch.zeros(2, m1, n, **like), sy=torch.zeros(m1, m1, **like),
                     yy=torch.zeros(m1, m1, **like), pg=torch.zeros(2, m1, **like),
                     H_diag=1.0, d=torch.zeros(n, **like), head=0, count=0)

    def _slots(self, state: dict) -> int:
        m1 = state["pairs"].shape[1]
        if m1 != self.param_groups[0]["history_size"] + 1:
            raise ValueError(f"history_size changed from {m1 - 1} to {self.param_groups[0]['history_size']} "
                             "after the buffers were allocated; build a new optimizer instead")
        return m1

    def _reset(self, state: dict) -> None:
        for key in ("pairs", "sy", "yy", "pg"):
            state[key].zero_()
        state["H_diag"] = 1.0
        state["head"] = state["count"] = 0

    def _propose(self, state: dict, g: Tensor, g_prev: Tensor) -> dict[str, Tensor]:
        pairs, m1 = state["pairs"], self._slots(state)
        c = (state["head"] + state["count"]) % m1           # the free slot
        rows = self._rows(pairs)
        s, y = rows[c], rows[m1 + c]                        # (n,), (n,)
        torch.mul(state["d"], state["t"], out=s)
        torch.sub(g, g_prev, out=y)
        pg = self._products(pairs, g)                        # (2, m+1): s_i·g, y_i·g
        # s_i·y = s_i·g - s_i·g_prev: no third pass over the buffer. Slot c was just overwritten,
        # so its entries (y·s, y·y) are computed directly: they decide acceptance and γ.
        py = pg - state["pg"]                                 # (2, m+1)
        new = self._pair_products(pairs, c)                   # (2,): y·s, y·y
        py[:, c] = new
        self._pending = (c, pg, py)
        ys, yy = new.unbind()
        values = {"ys": ys, "yy": yy, "step_max": _abs_max(s)}
        eps = self.param_groups[0]["curvature_eps"]
        if eps is not None:
            values["accept"] = _pair_accepted(s, y, ys, eps)
        return values

    def _commit(self, state: dict, host: dict[str, float]) -> None:
        c, _, py = self._pending
        eps = self.param_groups[0]["curvature_eps"]
        if not (host["ys"] > self._threshold if eps is None else host["accept"] > 0):
            return
        state["sy"][:, c] = py[0]
        state["yy"][:, c] = py[1]
        state["yy"][c, :] = py[1]
        state["H_diag"] = host["ys"] / host["yy"]         # γ = s·y / y·y   (7.20), a host number
        if state["count"] == state["pairs"].shape[1] - 1:
            state["head"] = (state["head"] + 1) % state["pairs"].shape[1]
        else:
            state["count"] += 1

    def _advance(self, state: dict, loss: float) -> None:
        super()._advance(state, loss)
        if self._pending is not None:
            state["pg"] = self._pending[1]                  # now the products with g_{k-1}

    def _direction(self, state: dict, g: Tensor) -> Tensor:
        head, k, gamma, d = state["head"], state["count"], state["H_diag"], state["d"]
        if k == 0:
            return torch.mul(g, -gamma, out=d)
        pairs, m1 = state["pairs"], state["pairs"].shape[1]
        slots, idx = _chronological(m1, head, k, d.device)                        # k, (k,) or a slice
        a, b = _select(self._pending[1], idx, (1,)).unbind()                       # (k,) each: Sᵀg, Yᵀg
        neg_u, neg_v = _negated_coefficients(a, b, _select(state["sy"], idx, (0, 1)),
                                             _select(state["yy"], idx, (0, 1)), gamma)  # (k,), (k,)
        w = torch.zeros(2, m1, dtype=d.dtype, device=d.device)
        coef = torch.stack((neg_u, neg_v.mul_(gamma)))                             # (2, k)
        if isinstance(idx, slice):
            w[:, idx] = coef
        else:
            w.index_copy_(1, idx, coef)                                            # (2, m+1) by slot
        return self._combine(pairs, w, slots, g, gamma, d)                        # -(γ g + S u + γ Y v)

    # --- the two passes over the buffer ------------------------------------------------------
    def _by_rows(self, pairs: Tensor) -> bool:
        # Measured on a 2-core CPU (MKL, n = 1e6, m = 10): MKL's matrix-vector products ran no
        # faster on two threads, while torch's dot and addcmul did (1.6x), so once the buffer is out
        # of cache one level-1 kernel per row reads it faster. In cache, and on a GPU, one
        # matrix-vector product beats 2m + 2 separate calls.
        self._rows(pairs)
        return self._row_views[2] and torch.get_num_threads() > 1

    def _rows(self, pairs: Tensor) -> list[Tensor]:
        """The buffer's rows as views, ``s`` slots then ``y`` slots; cached per buffer.

        The cache also holds whether it is a large buffer on a CPU, the first condition of
        :meth:`_by_rows`.
        """
        if self._row_views is None or self._row_views[0] is not pairs:
            large = pairs.device.type == "cpu" and pairs.numel() * pairs.element_size() > ROW_KERNEL_MIN_BYTES
            self._row_views = (pairs, list(pairs.view(2 * pairs.shape[1], -1).unbind(0)), large)
        return self._row_views[1]

    def _pair_products(self, pairs: Tensor, c: int) -> Tensor:
        r""":math:`(y^\top s, y^\top y)` of the pair in slot ``c``, shape (2,)."""
        y = pairs[1, c]
        if self._by_rows(pairs):
            return torch.stack((torch.dot(y, pairs[0, c]), torch.dot(y, y)))
        return torch.mv(pairs[:, c], y)

    def _products(self, pairs: Tensor, g: Tensor) -> Tensor:
        r""":math:`[S; Y]\, g` over every slot, shape (2, m+1)."""
        m1 = pairs.shape[1]
        if self._by_rows(pairs):
            return torch.stack([torch.dot(row, g) for row in self._rows(pairs)]).view(2, m1)
        return torch.mv(pairs.view(2 * m1, -1), g).view(2, m1)

    def _combine(self, pairs: Tensor, w: Tensor, slots: list[int], g: Tensor, gamma: float,
                 d: Tensor) -> Tensor:
        r"""``d`` = :math:`[S; Y]^\top w - \gamma g`; ``w`` (2, m+1) is zero outside ``slots``."""
        m1 = pairs.shape[1]
        if self._by_rows(pairs):
            rows, coef = self._rows(pairs), w.view(-1).unbind(0)
            torch.mul(g, -gamma, out=d)
            # Reverse of the order _products read the rows in: the last ones read are still in cache.
            for r in sorted([m1 + i for i in slots] + slots, reverse=True):
                d.addcmul_(rows[r], coef[r])
            return d
        torch.mv(pairs.view(2 * m1, -1).T, w.view(-1), out=d)
        return d.add_(g, alpha=-gamma)
