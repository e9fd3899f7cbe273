r"""``minimize``: gradient descent, Newton and the quasi-Newton family behind one interface.

Every method is a *direction rule* (how to turn the gradient into a search direction, and how to
update its curvature model after a step) driven by one loop with a line search, so the methods
differ only where the mathematics does. The loop records per iteration what the course teaches to
watch: f, ‖g‖, step length, ‖s‖, sᵀy, the secant residual and whether the curvature update was
accepted, skipped or damped.

The loop is scale-invariant: multiplying ``f`` by any constant leaves the iterates unchanged (the
first trial step has unit length, the curvature test compares sᵀy with ‖s‖‖y‖, and H₀ is rescaled
by γ = sᵀy/yᵀy after the first step, SR1's B₀ by 1/γ). Only the stopping test ``gtol`` is absolute, as
in scipy.

References
----------
.. [NW] J. Nocedal and S. J. Wright, *Numerical Optimization*, 2nd ed., Springer, 2006.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor

from ._validation import check_positive, check_vector
from .linesearch import LineSearchResult, backtracking, strong_wolfe
from .quasi_newton import (
    _bfgs_inverse,
    _dfp_inverse,
    bfgs_update,
    curvature_pair_accepted,
    initial_scaling,
    powell_damped_y,
    sr1_update,
)
from .two_loop import _two_loop

METHODS = ("gd", "newton", "sr1", "bfgs", "dfp", "lbfgs")
_RECORDABLE = ("x", "g", "s", "y", "d", "H", "B")


@dataclass
class OptimizeResult:
    r"""What :func:`minimize` returns.

    Attributes
    ----------
    x : Tensor
        Final iterate.
    fun : float
        f(x).
    grad_norm : float
        ‖∇f(x)‖∞, the quantity the stopping test compares with ``gtol``.
    nit, nfev : int
        Iterations and evaluations of f (each evaluation also gives the gradient).
    success : bool
        Whether the stopping test was met.
    message : str
        Why the run stopped.
    trace : list of dict
        One row per iteration: ``k, f, grad_norm, alpha, step_norm, sy, secant_residual, update,
        nfev, dphi, fallback``. ``update`` is ``"accepted"``, ``"skipped"``, ``"damped"``, ``"none"``,
        ``"scaled"`` (SR1 with ``scale_h0``: the first pair set :math:`B_0` and was not used for an
        update) or ``"no step"`` (after a retried line search); ``secant_residual`` is NaN where no
        secant update was made. ``dphi`` is :math:`g_k^\top d_k`; ``fallback`` is True when the
        method's direction was not a descent direction and :math:`-g_k` was used instead. Plus what
        ``record`` asks for.
    """

    x: Tensor
    fun: float
    grad_norm: float
    nit: int
    nfev: int
    success: bool
    message: str
    trace: list[dict] = field(default_factory=list, repr=False)


class _Direction:
    """A direction rule: ``direction(x, g)`` and ``update(s, y, x_new, g_new)``."""

    name = ""

    #: Names of the building blocks a caller may replace through ``kernels`` (the course's exercises).
    kernel_names: tuple[str, ...] = ()

    def __init__(self, f, n, like, options):
        self.f, self.options = f, options
        self.kernels = options["kernels"]

    def direction(self, x: Tensor, g: Tensor) -> Tensor:
        return -g

    def accept(self, s: Tensor, y: Tensor) -> bool:
        """The curvature test of ``pair_rule``: scale-invariant skipping, or none at all."""
        if self.options["pair_rule"] == "none":
            return bool(torch.dot(s, y) != 0)                # only a zero denominator cannot be used
        return bool(curvature_pair_accepted(s, y, self.options["curvature_eps"]))

    def inverse_model(self) -> Tensor | None:
        """H_k, the current inverse-Hessian approximation as a dense matrix (None for gd and newton)."""
        return None

    def direct_model(self) -> Tensor | None:
        """B_k, the current Hessian approximation as a dense matrix: the inverse of H_k unless kept directly."""
        B = getattr(self, "B", None)
        return B if B is not None else torch.linalg.inv(self.inverse_model())

    def update(self, s, y, x_new, g_new) -> tuple[str, float]:
        """Update the curvature model; return (verdict, secant residual or nan)."""
        return "none", math.nan


class _GradientDescent(_Direction):
    name = "gd"


class _Newton(_Direction):
    """Newton's method with a Cholesky-based modification, Algorithm 3.3 of [NW]_."""

    name = "newton"

    def direction(self, x, g):
        hess = self.options["hess"]
        Hf = hess(x.detach().clone()) if hess is not None else torch.func.hessian(self.f)(x.detach())   # (n, n)
        Hf = 0.5 * (Hf + Hf.T)
        eye = torch.eye(Hf.shape[0], dtype=Hf.dtype, device=Hf.device)
        beta = 1e-3 * float(Hf.abs().max()) or 1e-3
        diag_min = float(torch.diagonal(Hf).min())
        tau = 0.0 if diag_min > 0 else -diag_min + beta
        while True:
            L, info = torch.linalg.cholesky_ex(Hf + tau * eye)
            if int(info) == 0:
                return -torch.cholesky_solve(g.unsqueeze(1), L).squeeze(1)
            tau = max(2.0 * tau, beta)


class _InverseQuasiNewton(_Direction):
    """Dense inverse-Hessian approximation H, updated by BFGS or DFP."""

    def __init__(self, f, n, like, options):
        super().__init__(f, n, like, options)
        self.H = torch.eye(n, dtype=like.dtype, device=like.device)
        self.scaled = not options["scale_h0"]
        self.kernel = _bfgs_inverse if self.name == "bfgs" else _dfp_inverse
        self.own_kernel = self.kernels.get(self.kernel_names[0])

    def direction(self, x, g):
        return -(self.H @ g)

    def inverse_model(self):
        return self.H

    def update(self, s, y, x_new, g_new):
        if not self.accept(s, y):
            return "skipped", math.nan
        if not self.scaled and float(torch.dot(s, y)) > 0:   # H0 = γ I before the first update (6.20)
            self.H = self.H * initial_scaling(s, y)
            self.scaled = True
        if self.own_kernel is not None:
            self.H = self.own_kernel(self.H, s, y)
        else:
            self.H = self.kernel(self.H, s, y, torch.dot(s, y))   # accept() made sure sᵀy ≠ 0
        return "accepted", float(torch.linalg.vector_norm(self.H @ y - s) / torch.linalg.vector_norm(s))


class _BFGS(_InverseQuasiNewton):
    name = "bfgs"
    kernel_names = ("bfgs_inverse_update",)


class _DFP(_InverseQuasiNewton):
    name = "dfp"
    kernel_names = ("dfp_inverse_update",)


class _SR1(_Direction):
    """SR1 on the Hessian approximation B; falls back to −g where B gives no descent direction.

    With ``scale_h0`` the first pair that passes the curvature test, while B is still I, only sets
    B₀ = (yᵀy/sᵀy) I (verdict ``"scaled"``) and is not also used for an SR1 update: for B₀ = cI with
    c = yᵀy/sᵀy and v = y − cs one has ‖v‖² = c²sᵀs − yᵀy = −c vᵀs, so the update would give
    B₁v = (c + ‖v‖²/vᵀs) v = 0, a singular B₁ (and a huge step −B₁⁻¹g) whenever y ∦ s.
    """

    name = "sr1"
    kernel_names = ("sr1_update",)

    def __init__(self, f, n, like, options):
        super().__init__(f, n, like, options)
        self.B = torch.eye(n, dtype=like.dtype, device=like.device)
        self.scaled = not options["scale_h0"]

    def direction(self, x, g):
        L, info = torch.linalg.cholesky_ex(self.B)
        if int(info) != 0:                                   # B indefinite: -B⁻¹g need not descend
            return -g
        return -torch.cholesky_solve(g.unsqueeze(1), L).squeeze(1)

    def inverse_model(self):
        return torch.linalg.pinv(self.B, hermitian=True)

    def update(self, s, y, x_new, g_new):
        if not self.scaled and bool(curvature_pair_accepted(s, y, self.options["curvature_eps"])):
            self.B = self.B / initial_scaling(s, y)          # B₀ = (yᵀy/sᵀy) I; SR1 with this pair: singular
            self.scaled = True
            return "scaled", math.nan
        B_new = self.kernels.get("sr1_update", sr1_update)(self.B, s, y, self.options["sr1_r"])
        skipped = torch.equal(B_new, self.B)
        self.B = B_new
        if skipped:
            return "skipped", math.nan
        self.scaled = True                                   # B is no longer the initial I: never rescale it
        return "accepted", float(torch.linalg.vector_norm(self.B @ s - y) / torch.linalg.vector_norm(y))


class _LBFGS(_Direction):
    """Limited-memory BFGS: the last m pairs and the two-loop recursion, Algorithm 7.5 of [NW]_."""

    name = "lbfgs"
    kernel_names = ("two_loop_recursion",)

    def __init__(self, f, n, like, options):
        super().__init__(f, n, like, options)
        self.m = int(options["history_size"])
        self.s_hist, self.y_hist, self.rho = [], [], []

    def _gamma(self):
        if not self.options["scale_h0"]:
            return 1.0
        return initial_scaling(self.s_hist[-1], self.y_hist[-1])

    def direction(self, x, g):
        if not self.s_hist:
            return -g
        own = self.kernels.get("two_loop_recursion")
        if own is not None:                                  # gamma=None: the function applies rule (7.20)
            return -own(g, list(self.s_hist), list(self.y_hist), None if self.options["scale_h0"] else 1.0)
        return -_two_loop(g, self.s_hist, self.y_hist, self.rho, self._gamma())

    def inverse_model(self):
        n = self.options["n"]
        like = self.options["like"]
        eye = torch.eye(n, dtype=like.dtype, device=like.device)
        if not self.s_hist:
            return eye
        gamma = self._gamma()                                # H_k applied to the n columns of I: O(m n²)
        return torch.stack([_two_loop(e, self.s_hist, self.y_hist, self.rho, gamma) for e in eye], 1)

    def update(self, s, y, x_new, g_new):
        if not self.accept(s, y):
            return "skipped", math.nan
        if len(self.s_hist) == self.m:
            del self.s_hist[0], self.y_hist[0], self.rho[0]
        self.s_hist.append(s)
        self.y_hist.append(y)
        self.rho.append(1.0 / torch.dot(y, s))
        return "accepted", math.nan


class _DampedBFGS(_Direction):
    """Direct-form BFGS with Powell damping (Procedure 18.2 of [NW]_): every pair is used."""

    name = "bfgs-damped"
    kernel_names = ("powell_damped_y", "bfgs_update")

    def __init__(self, f, n, like, options):
        super().__init__(f, n, like, options)
        self.B = torch.eye(n, dtype=like.dtype, device=like.device)

    def direction(self, x, g):
        return -torch.linalg.solve(self.B, g)

    def inverse_model(self):
        return torch.linalg.inv(self.B)

    def update(self, s, y, x_new, g_new):
        r = self.kernels.get("powell_damped_y", powell_damped_y)(self.B, s, y, self.options["damping_threshold"])
        if not float(torch.dot(s, r)) > 0:                   # sᵀr = ω sᵀBs > 0 in exact arithmetic; rounding
            return "skipped", math.nan                       # (float32, tiny steps) can still reach 0
        verdict = "accepted" if torch.equal(r, y) else "damped"
        self.B = self.kernels.get("bfgs_update", bfgs_update)(self.B, s, r)
        return verdict, float(torch.linalg.vector_norm(self.B @ s - y) / torch.linalg.vector_norm(y))


_RULES = {cls.name: cls for cls in (_GradientDescent, _Newton, _SR1, _BFGS, _DFP, _LBFGS, _DampedBFGS)}


def _value_and_grad(f: Callable, jac: bool) -> Callable[[Tensor], tuple[Tensor, Tensor]]:
    if jac:
        def fun(x):
            # f gets a copy: a function that writes into its argument must not move the iterate
            # (SciPy copies too, gh-13740).
            fx, gx = f(x.clone())
            return torch.as_tensor(fx).detach(), torch.as_tensor(gx).detach()
        return fun

    def fun(x):
        with torch.enable_grad():
            xr = x.detach().requires_grad_(True)
            fx = f(xr)
            if not isinstance(fx, Tensor) or fx.numel() != 1:
                raise ValueError(f"f must return a scalar tensor, got {type(fx).__name__} "
                                 f"{tuple(getattr(fx, 'shape', ()))}")
            (gx,) = torch.autograd.grad(fx, xr, allow_unused=True)
        if gx is None:
            gx = torch.zeros_like(xr)
        return fx.detach().reshape(()), gx.detach()
    return fun


def minimize(f: Callable[[Tensor], Tensor], x0: Tensor, method: str = "bfgs", *, jac: bool = False,
             hess: Callable[[Tensor], Tensor] | None = None,
             gtol: float = 1e-5, max_iter: int | None = None, max_fev: int | None = None,
             line_search: str = "strong_wolfe", c1: float = 1e-4, c2: float | None = None,
             history_size: int = 10, curvature_eps: float = 1e-8, sr1_r: float = 1e-8,
             damping_threshold: float = 0.2, scale_h0: bool = True, pair_rule: str = "skip",
             record: Sequence[str] = (), kernels: dict[str, Callable] | None = None, on_failure: str = "stop",
             callback: Callable[[dict], None] | None = None) -> OptimizeResult:
    r"""Minimize a smooth function of a vector with a line-search method.

    Iteration: :math:`d_k` from the method's rule, :math:`\alpha_k` from the line search,
    :math:`x_{k+1} = x_k + \alpha_k d_k`, then the curvature model is updated with
    :math:`s_k = x_{k+1} - x_k` and :math:`y_k = g_{k+1} - g_k`. Stops when
    :math:`\|g_k\|_\infty \le` ``gtol``.

    Parameters
    ----------
    f : callable
        ``f(x) -> scalar tensor``, differentiable by autograd; or ``f(x) -> (value, gradient)``
        when ``jac=True``.
    x0 : Tensor, shape (n,)
        Starting point; its dtype and device are used throughout (float32 works).
    hess : callable, optional
        ``hess(x) -> (n, n)`` Hessian for ``"newton"`` (e.g. a closed form such as
        :func:`secondorder.problems.rosenbrock_hessian`); by default ``torch.func.hessian`` of ``f``.
    method : str
        ``"gd"`` (steepest descent), ``"newton"`` (exact Hessian by autograd, modified Cholesky),
        ``"sr1"``, ``"bfgs"``, ``"dfp"``, ``"lbfgs"``, or ``"bfgs-damped"`` (direct BFGS with
        Powell damping).
    gtol : float
        Stop when the largest gradient component is at most ``gtol`` (scipy's default test).
    max_iter, max_fev : int, optional
        Budgets; default ``200 * n`` iterations (at least 1000) and ``10 * max_iter`` evaluations.
    line_search : str
        ``"strong_wolfe"`` (Algorithms 3.5–3.6), ``"armijo"`` (backtracking), or ``"none"`` (unit step).
    c1, c2 : float
        Line-search constants; ``c2`` defaults to 0.9 (0.1 for ``"gd"``).
    history_size : int
        m for ``"lbfgs"``.
    curvature_eps : float
        Pairs with :math:`s^\top y \le \varepsilon\,\|s\|\|y\|` are skipped (scale-invariant test).
    sr1_r, damping_threshold : float
        SR1 skipping threshold (6.26) and Powell damping threshold (Procedure 18.2).
    scale_h0 : bool
        For ``"lbfgs"``: :math:`H_k^0 = \gamma_k I` with :math:`\gamma_k = s_{k-1}^\top y_{k-1} /
        y_{k-1}^\top y_{k-1}` ((7.20) in [NW]_) when True, :math:`H_k^0 = I` when False.
        For ``"sr1"``, ``"bfgs"`` and ``"dfp"``: rescale the initial matrix by
        :math:`\gamma = s^\top y / y^\top y` after the first step ((6.20) in [NW]_), which makes the
        iterates independent of the scale of ``f``. BFGS and DFP then update the rescaled
        :math:`H_0` with the same pair; SR1 does not (that update of :math:`B_0 = I/\gamma` is always
        singular, see ``_SR1``): its first pair only sets :math:`B_0` (``update = "scaled"``).
        With ``False`` the initial matrix stays :math:`I` and each line search starts from
        :math:`\min(1, 1.01 \cdot 2 (f_k - f_{k-1}) / \phi'(0))` ((3.60) in [NW]_), as scipy does:
        often fewer iterations when the Hessian's eigenvalues are at least about 1 (``I`` then
        overestimates the inverse, which BFGS corrects quickly; an underestimate it corrects slowly),
        but not scale-invariant.
    pair_rule : str
        For ``"bfgs"``, ``"dfp"`` and ``"lbfgs"``: ``"skip"`` drops pairs that fail the curvature
        test above; ``"none"`` applies every update with :math:`s^\top y \ne 0`, whatever its sign
        (for demonstrating what the test prevents: :math:`H_k` can become indefinite).
    record : sequence of str
        Extra entries copied into each trace row, for plots and diagnostics: ``"x"`` (the new
        iterate), ``"g"`` (its gradient), ``"s"``, ``"y"``, ``"d"`` (the search direction) and
        ``"H"`` and ``"B"`` (the inverse-Hessian and Hessian approximations after the update, dense
        n × n matrices, the one a method does not keep computed as the inverse of the other; quasi-Newton
        methods only, and O(n²) memory per row: for small n).
    on_failure : str
        When the line search finds no acceptable step: ``"stop"`` (return, ``success=False``), or
        ``"retry"``: stay at :math:`x_k`, evaluate ``f`` again and go on with the new gradient,
        leaving the curvature model unchanged — for noisy gradients, where a fresh draw may point
        downhill (the trace row has ``update="no step"``; ``max_iter`` and ``max_fev`` still bound
        the run).
    kernels : dict, optional
        Replacements for the method's building blocks, by name, with the signatures of the library's
        functions: ``"bfgs_inverse_update"`` (``"bfgs"``), ``"dfp_inverse_update"`` (``"dfp"``),
        ``"sr1_update"`` (``"sr1"``), ``"two_loop_recursion"`` (``"lbfgs"``; called with
        ``gamma=None`` so it applies rule (7.20) itself, or 1.0 when ``scale_h0=False``),
        ``"powell_damped_y"`` and ``"bfgs_update"`` (``"bfgs-damped"``). The course's notebooks run
        the student's functions through this; their errors propagate.
    callback : callable, optional
        Called with each trace row (the same dict that goes into the trace).

    Returns
    -------
    OptimizeResult
        Never raises on a bad objective value: a NaN objective ends with ``success=False`` and a
        message that says where.
    """
    if method not in _RULES:
        raise ValueError(f"method must be one of {sorted(_RULES)}, got {method!r}")
    if line_search not in ("strong_wolfe", "armijo", "none"):
        raise ValueError(f"line_search must be 'strong_wolfe', 'armijo' or 'none', got {line_search!r}")
    x = check_vector("x0", x0).detach().clone()
    gtol = check_positive("gtol", gtol, allow_zero=True)
    n = x.shape[0]
    max_iter = int(max_iter) if max_iter is not None else max(1000, 200 * n)
    max_fev = int(max_fev) if max_fev is not None else 10 * max_iter
    c2 = c2 if c2 is not None else (0.1 if method == "gd" else 0.9)
    if history_size < 1:
        raise ValueError(f"history_size must be ≥ 1, got {history_size!r}")
    if on_failure not in ("stop", "retry"):
        raise ValueError(f"on_failure must be 'stop' or 'retry', got {on_failure!r}")
    if pair_rule not in ("skip", "none"):
        raise ValueError(f"pair_rule must be 'skip' or 'none', got {pair_rule!r}")
    record = tuple(record)
    unknown = sorted(set(record) - set(_RECORDABLE))
    if unknown:
        raise ValueError(f"record may hold {', '.join(map(repr, _RECORDABLE))}; got unknown {unknown}")
    for name in ("H", "B"):
        if name in record and method in ("gd", "newton"):
            raise ValueError(f"record {name!r} needs a quasi-Newton method; method {method!r} keeps no "
                             "approximation")
    kernels = dict(kernels or {})
    allowed = _RULES[method].kernel_names
    for name, fn in kernels.items():
        if name not in allowed:
            raise ValueError(f"kernels: method {method!r} uses {list(allowed) or 'no replaceable kernels'}, "
                             f"got {name!r}")
        if not callable(fn):
            raise ValueError(f"kernels[{name!r}] must be callable, got {type(fn).__name__}")
    options = dict(kernels=kernels, history_size=history_size, curvature_eps=curvature_eps, sr1_r=sr1_r,
                   damping_threshold=damping_threshold, scale_h0=scale_h0, pair_rule=pair_rule, hess=hess,
                   n=x.shape[0], like=x)
    if method == "newton" and jac and hess is None:
        raise ValueError("method='newton' with jac=True needs hess: it cannot differentiate f(x) -> (value, "
                         "gradient) twice by autograd")
    if hess is not None and method != "newton":
        raise ValueError(f"hess is used by method='newton' only, got method={method!r}")
    fun = _value_and_grad(f, jac)
    rule = _RULES[method](f, n, x, options)

    fx, g = fun(x)
    f_start = float(fx)
    nfev, trace = 1, []

    def finish(success, message, k):
        return OptimizeResult(x, float(fx), float(g.abs().max()), k, nfev, success, message, trace)

    if not (math.isfinite(float(fx)) and bool(torch.isfinite(g).all())):
        return finish(False, f"f or its gradient is not finite at x0 (f(x0) = {float(fx)})", 0)
    for k in range(max_iter):
        if float(g.abs().max()) <= gtol:
            return finish(True, f"converged: ‖g‖∞ ≤ gtol = {gtol:g}", k)
        if nfev >= max_fev:
            return finish(False, f"stopped: {nfev} function evaluations reached max_fev", k)
        d = rule.direction(x, g)
        fallback = not float(torch.dot(g, d)) < 0
        if fallback:                                          # safeguard: the rule gave no descent
            d = -g
        # First step of unit length (scale-invariant); afterwards the natural step α = 1.
        alpha0 = 1.0 / float(torch.linalg.vector_norm(d)) if k == 0 and method != "newton" else 1.0
        if method == "gd" and trace:                          # GD: reuse the last step length (3.60)
            alpha0 = trace[-1]["alpha"] * max(0.1, min(10.0, trace[-1]["dphi"] / float(torch.dot(g, d))))
        elif not scale_h0 and trace and method in ("sr1", "bfgs", "dfp"):
            # Predict the step from the last decrease, as if it will repeat (3.60); capped at 1.
            f_prev = trace[-2]["f"] if len(trace) > 1 else f_start
            guess = 1.01 * 2.0 * (float(fx) - f_prev) / float(torch.dot(g, d))
            alpha0 = min(1.0, guess) if guess > 0 else 1.0
        budget = max(1, min(25, max_fev - nfev))
        if line_search == "strong_wolfe":
            ls = strong_wolfe(fun, x, d, fx, g, alpha0=alpha0, c1=c1, c2=c2, max_evals=budget)
        elif line_search == "armijo":
            ls = backtracking(fun, x, d, fx, g, alpha0=alpha0, c1=c1, max_evals=budget)
        else:
            ls = _unit_step(fun, x, d, alpha0)
        nfev += ls.nfev
        failed = ls.alpha == 0.0 or not math.isfinite(float(ls.f))
        if failed and on_failure == "retry" and math.isfinite(float(fx)):
            # Noisy gradients: stay at x_k, draw the gradient again, leave the curvature model alone.
            fx, g_new = fun(x)
            nfev += 1
            row = dict(k=k, f=float(fx), grad_norm=float(g_new.abs().max()), alpha=0.0, step_norm=0.0, sy=0.0,
                       secant_residual=math.nan, update="no step", nfev=nfev, dphi=float(torch.dot(g, d)),
                       fallback=fallback)
            _record(row, record, rule, x=x, g=g_new, s=torch.zeros_like(x), y=g_new - g, d=d)
            trace.append(row)
            if callback is not None:
                callback(row)
            g = g_new
            continue
        if failed and nfev >= max_fev:                        # the budget cut the line search short
            return finish(False, f"stopped: {nfev} function evaluations reached max_fev", k)
        if failed:
            why = {"nonfinite": "f is NaN or infinite everywhere along the search direction",
                   "not_descent": "the search direction is not a descent direction"}.get(
                       ls.status, _no_step_reason(ls.status, g, d))
            return finish(False, f"stopped at iteration {k}: {why}", k)
        s, y = ls.x - x, ls.g - g                             # (n,), (n,)
        verdict, residual = rule.update(s, y, ls.x, ls.g)
        row = dict(k=k, f=float(ls.f), grad_norm=float(ls.g.abs().max()), alpha=ls.alpha,
                   step_norm=float(torch.linalg.vector_norm(s)), sy=float(torch.dot(s, y)),
                   secant_residual=residual, update=verdict, nfev=nfev, dphi=float(torch.dot(g, d)),
                   fallback=fallback)
        _record(row, record, rule, x=ls.x, g=ls.g, s=s, y=y, d=d)
        trace.append(row)
        if callback is not None:
            callback(row)
        x, fx, g = ls.x, ls.f, ls.g
    return finish(float(g.abs().max()) <= gtol, f"stopped: max_iter = {max_iter} iterations reached",
                  max_iter)


def _no_step_reason(status: str, g: Tensor, d: Tensor) -> str:
    """Why a line search found no step, from the sizes of g and d."""
    g_norm, d_norm = float(torch.linalg.vector_norm(g)), float(torch.linalg.vector_norm(d))
    if d_norm > 1e6 * max(g_norm, 1e-300):
        return (f"the line search found no acceptable step ({status}) along a direction of length "
                f"‖d‖ = {d_norm:.1e} for ‖g‖ = {g_norm:.1e}: the curvature model is nearly singular")
    remedy = "loosen gtol" if g.dtype == torch.float64 else "loosen gtol or use float64"
    return (f"the line search found no acceptable step ({status}); at ‖g‖∞ = {float(g.abs().max()):.1e} the "
            f"changes in f may be below its rounding error (precision loss): {remedy}")


def _record(row: dict, record: tuple, rule: _Direction, **values: Tensor) -> None:
    """Copy what ``record`` asks for into the trace row."""
    for name in record:
        if name == "H":
            row[name] = rule.inverse_model().clone()
        elif name == "B":
            row[name] = rule.direct_model().clone()
        else:
            row[name] = values[name].clone()


def _unit_step(fun, x, d, alpha):
    xa = x + alpha * d
    fa, ga = fun(xa)
    status = "converged" if math.isfinite(float(fa)) else "nonfinite"
    return LineSearchResult(alpha if status == "converged" else 0.0, xa, fa, ga, 1, status)
