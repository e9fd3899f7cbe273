r"""Line searches along a descent direction: backtracking Armijo and strong Wolfe.

Both work on :math:`\phi(\alpha) = f(x + \alpha d)` through a function ``fun(x) -> (f, g)`` that
returns the value and gradient. They never raise on a bad objective: a non-finite value is treated
as "step too long" and the outcome is reported in :attr:`LineSearchResult.status`.

Equation and algorithm numbers refer to [NW]_.

References
----------
.. [NW] J. Nocedal and S. J. Wright, *Numerical Optimization*, 2nd ed., Springer, 2006.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from ._validation import check_positive, check_vector

ValueAndGrad = Callable[[Tensor], tuple[Tensor, Tensor]]


@dataclass
class LineSearchResult:
    r"""Outcome of a line search.

    Attributes
    ----------
    alpha : float
        Accepted step length (0.0 when nothing better than the start was found).
    x, f, g : Tensor
        The point :math:`x + \alpha d`, and the value and gradient there.
    nfev : int
        Number of calls of ``fun``.
    status : str
        ``"converged"`` (the conditions hold), ``"max_evals"`` (budget spent; ``x`` is the best point
        found that satisfies sufficient decrease, if any), ``"not_descent"`` (:math:`g^\top d \ge 0`),
        ``"nonfinite"`` (no finite value found along ``d``) or ``"no_progress"`` (the bracket shrank
        below floating-point resolution).
    """

    alpha: float
    x: Tensor
    f: Tensor
    g: Tensor
    nfev: int
    status: str

    @property
    def success(self) -> bool:
        """Whether the requested conditions hold at the returned point."""
        return self.status == "converged"


def wolfe_conditions(phi0: float, dphi0: float, phi_a: float, dphi_a: float, alpha: float,
                     c1: float = 1e-4, c2: float = 0.9) -> tuple[bool, bool]:
    r"""Check the strong Wolfe conditions (3.7) of [NW]_ for a step length ``alpha``.

    .. math::

        \phi(\alpha) \le \phi(0) + c_1\, \alpha\, \phi'(0)
        \qquad\text{and}\qquad
        |\phi'(\alpha)| \le c_2\, |\phi'(0)| ,

    with :math:`0 < c_1 < c_2 < 1`. Arguments may be Python numbers or 0-d tensors.

    Returns
    -------
    (bool, bool)
        ``(sufficient_decrease, curvature)``.
    """
    c1, c2 = check_positive("c1", c1), check_positive("c2", c2)
    if not c1 < c2 < 1:
        raise ValueError(f"need 0 < c1 < c2 < 1, got c1={c1!r}, c2={c2!r}")
    phi0, dphi0, phi_a, dphi_a, alpha = (float(v) for v in (phi0, dphi0, phi_a, dphi_a, alpha))
    if not alpha > 0:
        raise ValueError(f"alpha must be > 0, got {alpha!r}")
    if not dphi0 < 0:
        raise ValueError(f"dphi0 must be negative (a descent direction), got {dphi0!r}")
    sufficient = phi_a <= phi0 + c1 * alpha * dphi0
    curvature = abs(dphi_a) <= c2 * abs(dphi0)
    return bool(sufficient), bool(curvature)


def cubic_minimizer(a: float, fa: float, da: float, b: float, fb: float, db: float) -> float | None:
    r"""Minimizer of the cubic through :math:`(a, f_a, f'_a)` and :math:`(b, f_b, f'_b)`, (3.59) in [NW]_.

    Returns ``None`` when the cubic has no minimizer (then callers bisect).
    """
    if a == b:
        return None
    d1 = da + db - 3.0 * (fa - fb) / (a - b)
    disc = d1 * d1 - da * db
    if not (disc >= 0 and math.isfinite(disc)):
        return None
    d2 = math.copysign(math.sqrt(disc), b - a)
    denom = db - da + 2.0 * d2
    if denom == 0:
        return None
    t = b - (b - a) * (db + d2 - d1) / denom
    return t if math.isfinite(t) else None


def _extrapolate(prev: tuple, cur: tuple) -> float:
    r"""Next trial step of the bracketing phase, beyond ``cur``, from ``(α, φ, φ')`` at two steps.

    The minimizer of the cubic (3.59) through both points, kept within
    :math:`[\alpha + 1.1(\alpha - \alpha_{prev}),\ 10\alpha]` so that the bracket grows fast; where
    the cubic has no minimizer, the upper end. Except where :math:`\phi'` did not change at all:
    a straight stretch of :math:`\phi` says nothing about where it turns up, and a tenfold jump
    would skip the basins that begin just after it (scipy's gh-12157, where a line meets a cosine
    at :math:`\alpha = 1`), so there the step only doubles (or goes to the lower end, if larger),
    the growth of scipy's ``scalar_search_wolfe2``.
    """
    lo_b, hi_b = cur[0] + 1.1 * (cur[0] - prev[0]), 10.0 * cur[0]
    if abs(cur[2] - prev[2]) <= 1e-10 * abs(prev[2]):
        # Equal slopes (to rounding): the cubic degenerates to a line, and whatever minimizer
        # rounding gives it is meaningless.
        t = 2.0 * cur[0]
    else:
        t = cubic_minimizer(prev[0], prev[1], prev[2], cur[0], cur[1], cur[2])
    return min(max(t if t is not None else hi_b, lo_b), hi_b)


def _start(fun, x, d, f0, g0):
    check_vector("x", x)
    check_vector("d", d, n=x.shape[0], like=x, like_name="x")
    if f0 is None or g0 is None:
        f0, g0 = fun(x)
        return f0, g0, 1
    return f0, g0, 0


def backtracking(fun: ValueAndGrad, x: Tensor, d: Tensor, f0: Tensor | None = None,
                 g0: Tensor | None = None, alpha0: float = 1.0, rho: float = 0.5, c1: float = 1e-4,
                 max_evals: int = 40) -> LineSearchResult:
    r"""Backtracking line search for the Armijo condition, Algorithm 3.1 of [NW]_.

    Try :math:`\alpha_0, \rho\alpha_0, \rho^2\alpha_0, \dots` until
    :math:`f(x + \alpha d) \le f(x) + c_1 \alpha\, g^\top d`.
    """
    f0, g0, nfev = _start(fun, x, d, f0, g0)
    rho = check_positive("rho", rho)
    if rho >= 1:
        raise ValueError(f"rho must lie in (0, 1), got {rho!r}")
    phi0, dphi0 = float(f0), float(torch.dot(g0, d))
    if not dphi0 < 0:
        return LineSearchResult(0.0, x, f0, g0, nfev, "not_descent")
    alpha = check_positive("alpha0", alpha0)
    while nfev < max_evals:
        xa = x + alpha * d
        fa, ga = fun(xa)
        nfev += 1
        if float(fa) <= phi0 + c1 * alpha * dphi0:
            return LineSearchResult(alpha, xa, fa, ga, nfev, "converged")
        alpha *= rho
    return LineSearchResult(0.0, x, f0, g0, nfev, "max_evals")


def strong_wolfe(fun: ValueAndGrad, x: Tensor, d: Tensor, f0: Tensor | None = None,
                 g0: Tensor | None = None, alpha0: float = 1.0, c1: float = 1e-4, c2: float = 0.9,
                 max_evals: int = 25) -> LineSearchResult:
    r"""Line search for the strong Wolfe conditions, Algorithms 3.5 (bracketing) and 3.6 (zoom) of [NW]_.

    The bracketing phase grows the trial step until it brackets an interval that holds acceptable
    steps (by cubic extrapolation, at most tenfold per trial, only doubling along a straight
    stretch of :math:`\phi`: see ``_extrapolate``); the zoom phase shrinks that interval by
    safeguarded cubic interpolation (3.59). A trial whose value is NaN or infinite counts as a step
    that was too long.

    Parameters
    ----------
    fun : callable
        ``fun(x) -> (f, g)``, value (0-d tensor) and gradient (shape of ``x``).
    x, d : Tensor, shape (n,)
        Start point and search direction (must satisfy :math:`g_0^\top d < 0`).
    f0, g0 : Tensor, optional
        Value and gradient at ``x`` if already known (saves one evaluation).
    alpha0 : float
        First trial step; 1 is natural for (quasi-)Newton directions.
    c1, c2 : float
        Wolfe constants, :math:`0 < c_1 < c_2 < 1`; (1e-4, 0.9) for quasi-Newton, (1e-4, 0.1) for
        nonlinear conjugate gradient.
    max_evals : int
        Budget of evaluations of ``fun``.
    """
    f0, g0, nfev = _start(fun, x, d, f0, g0)
    c1, c2 = check_positive("c1", c1), check_positive("c2", c2)
    if not c1 < c2 < 1:
        raise ValueError(f"need 0 < c1 < c2 < 1, got c1={c1!r}, c2={c2!r}")
    phi0, dphi0 = float(f0), float(torch.dot(g0, d))
    if not dphi0 < 0:
        return LineSearchResult(0.0, x, f0, g0, nfev, "not_descent")

    def evaluate(alpha):
        xa = x + alpha * d
        fa, ga = fun(xa)
        fa_ = float(fa)
        if not math.isfinite(fa_):
            fa_ = math.inf
        return (alpha, fa_, float(torch.dot(ga, d)) if fa_ < math.inf else math.nan, xa, fa, ga)

    def armijo(p):
        return p[1] <= phi0 + c1 * p[0] * dphi0

    def curvature(p):
        return abs(p[2]) <= -c2 * dphi0

    def result(p, status):
        return LineSearchResult(p[0], p[3], p[4], p[5], nfev, status)

    start = (0.0, phi0, dphi0, x, f0, g0)
    prev, alpha = start, check_positive("alpha0", alpha0)
    while nfev < max_evals:                                   # Algorithm 3.5: bracketing
        cur = evaluate(alpha)
        nfev += 1
        if not armijo(cur) or (prev[0] > 0 and cur[1] >= prev[1]):
            lo, hi = prev, cur
            break
        if curvature(cur):
            return result(cur, "converged")
        if cur[2] >= 0:
            lo, hi = cur, prev
            break
        prev, alpha = cur, _extrapolate(prev, cur)
    else:
        return result(prev, "max_evals" if prev[0] > 0 else "nonfinite")

    while nfev < max_evals:                                   # Algorithm 3.6: zoom
        width = abs(hi[0] - lo[0])
        if width <= 1e-14 * max(abs(lo[0]), abs(hi[0])):
            return result(lo, "no_progress")
        t = None
        if math.isfinite(hi[1]):
            t = cubic_minimizer(lo[0], lo[1], lo[2], hi[0], hi[1], hi[2])
        a_min, a_max = min(lo[0], hi[0]), max(lo[0], hi[0])
        if t is None or not a_min < t < a_max:
            t = 0.5 * (lo[0] + hi[0])                         # no usable interpolant: bisect
        else:
            # Keep the trial at least 10% of the width away from both ends, so that each trial
            # shrinks the bracket by a fixed fraction even when the interpolant hugs an end.
            margin = 0.1 * width
            t = min(max(t, a_min + margin), a_max - margin)
        cur = evaluate(t)
        nfev += 1
        if not armijo(cur) or cur[1] >= lo[1]:
            hi = cur
            continue
        if curvature(cur):
            return result(cur, "converged")
        if cur[2] * (hi[0] - lo[0]) >= 0:
            hi = lo
        lo = cur
    if lo[0] > 0:
        return result(lo, "max_evals")
    return result(lo, "nonfinite" if not math.isfinite(hi[1]) else "max_evals")
