r"""The secant method in one dimension: the secant equation before it meets matrices.

To minimize a smooth :math:`f:\mathbb{R}\to\mathbb{R}`, find a zero of :math:`g = f'`. Newton's
method divides by :math:`f''(x_k)`; the secant method replaces it by the slope of the line through the
last two gradient values,

.. math::

    b_k = \frac{g_k - g_{k-1}}{x_k - x_{k-1}}, \qquad\text{i.e.}\qquad b_k\, s_{k-1} = y_{k-1},

the one-dimensional secant equation (6.6) of [NW]_ with :math:`s_{k-1} = x_k - x_{k-1}` and
:math:`y_{k-1} = g_k - g_{k-1}`. In one dimension it fixes :math:`b_k` uniquely; in :math:`n`
dimensions it leaves a whole family of matrices :math:`B_k`, and the quasi-Newton updates (SR1, BFGS)
are rules for picking one.

References
----------
.. [NW] J. Nocedal and S. J. Wright, *Numerical Optimization*, 2nd ed., Springer, 2006, §6.1–6.2.
.. [A] K. E. Atkinson, *An Introduction to Numerical Analysis*, 2nd ed., Wiley, 1989, §2.3
   (the error recursion of the secant method and its order :math:`(1 + \sqrt5)/2`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

from torch import Tensor

from ._validation import check_positive

#: The order of convergence of the secant method at a simple root, :math:`(1 + \sqrt5)/2`.
GOLDEN_RATIO = (1.0 + math.sqrt(5.0)) / 2.0


def _finite_number(name: str, value) -> float:
    if isinstance(value, bool):
        raise ValueError(f"{name} must be a real number, got {value!r}")
    try:
        v = float(value)
    except (TypeError, ValueError, RuntimeError):
        raise ValueError(f"{name} must be a real number (float or 0-d tensor), got {value!r}") from None
    if not math.isfinite(v):
        raise ValueError(f"{name} must be finite, got {v!r}")
    return v


def _value(g: Callable, x: float) -> float:
    gx = g(x)
    if isinstance(gx, Tensor) and gx.numel() != 1:
        raise ValueError("g must return a real number or a 0-d tensor, "
                         f"got a tensor of shape {tuple(gx.shape)}")
    try:
        return float(gx)
    except (TypeError, ValueError):
        raise ValueError(f"g must return a real number or a 0-d tensor, got {type(gx).__name__}") from None


def secant_method(g: Callable[[float], float], x0: float, x1: float, tol: float = 1e-12,
                  max_iter: int = 50) -> list[float]:
    r"""Find a zero of a scalar function of one variable by the secant method.

    .. math::

        x_{k+1} = x_k - g(x_k)\,\frac{x_k - x_{k-1}}{g(x_k) - g(x_{k-1})} ,

    Newton's step :math:`x_k - g(x_k)/g'(x_k)` with :math:`g'(x_k)` replaced by the slope
    :math:`b_k` of the secant through :math:`(x_{k-1}, g_{k-1})` and :math:`(x_k, g_k)`, which
    satisfies the one-dimensional secant equation :math:`b_k s_{k-1} = y_{k-1}` ((6.6) in [NW]_).
    Used on :math:`g = f'` it minimizes :math:`f` with first derivatives only.

    Near a simple root :math:`x^\star` (:math:`g'(x^\star) \ne 0`, :math:`g` twice continuously
    differentiable) the errors :math:`e_k = x_k - x^\star` obey
    :math:`e_{k+1} \approx \frac{g''(x^\star)}{2 g'(x^\star)}\, e_k e_{k-1}`, so the order of
    convergence is the positive root of :math:`p^2 = p + 1`, the golden ratio
    :math:`(1 + \sqrt5)/2 \approx 1.618` ([A]_, §2.3): faster than linear, slower than Newton's 2,
    for one evaluation of :math:`g` per step instead of Newton's :math:`g` and :math:`g'`.

    Stopping rules, checked in this order at every step:

    * :math:`g(x_k) = 0` exactly: :math:`x_k` is a root;
    * :math:`g(x_k) = g(x_{k-1})`: the secant is flat and has no zero (no division by zero);
    * after computing :math:`x_{k+1}`: :math:`|x_{k+1} - x_k| \le \text{tol}\cdot\max(1, |x_k|)`,
      or ``max_iter`` new iterates have been made.

    Parameters
    ----------
    g : callable
        ``g(x) -> float`` (or a 0-d tensor), called with a Python float. It is evaluated at most
        once per iterate: at ``x0``, at ``x1``, and at each new iterate the method continues from
        (the value at :math:`x_{k-1}` is kept from the step before), so a run costs ``len(result)``
        or ``len(result) - 1`` evaluations.
    x0, x1 : float
        Two distinct finite starting points.
    tol : float
        Relative step tolerance, ``>= 0``.
    max_iter : int
        Largest number of new iterates after ``x0`` and ``x1``, ``>= 1``.

    Returns
    -------
    list of float
        Every iterate as a Python float, ``[x0, x1, x2, ...]``; the last one is the estimate of the
        root. A NaN returned by ``g`` propagates into the iterates.

    Raises
    ------
    ValueError
        If ``g`` is not callable or returns something other than a number, ``x0`` or ``x1`` is not
        finite, ``x0 == x1``, ``tol < 0`` or ``max_iter < 1``.

    Examples
    --------
    >>> xs = secant_method(lambda x: x**3 - 2, 1.0, 2.0)
    >>> abs(xs[-1] - 2 ** (1 / 3)) < 1e-12
    True
    """
    if not callable(g):
        raise ValueError(f"g must be callable, got {type(g).__name__}")
    x_prev, x_cur = _finite_number("x0", x0), _finite_number("x1", x1)
    if x_prev == x_cur:
        raise ValueError(f"x0 and x1 must differ (the first secant needs two points), got both = {x_cur!r}")
    tol = check_positive("tol", tol, allow_zero=True)
    if isinstance(max_iter, bool) or not isinstance(max_iter, int) or max_iter < 1:
        raise ValueError(f"max_iter must be a positive integer, got {max_iter!r}")

    g_prev, g_cur = _value(g, x_prev), _value(g, x_cur)
    iterates = [x_prev, x_cur]
    while g_cur != 0.0 and g_cur != g_prev:
        x_next = x_cur - g_cur * (x_cur - x_prev) / (g_cur - g_prev)
        iterates.append(x_next)
        if abs(x_next - x_cur) <= tol * max(1.0, abs(x_cur)) or len(iterates) - 2 == max_iter:
            break
        # Only the new point is evaluated; g at the old one is carried over.
        x_prev, g_prev = x_cur, g_cur
        x_cur, g_cur = x_next, _value(g, x_next)
    return iterates


def estimate_order(errors: Sequence[float]) -> list[float]:
    r"""Estimate the order of convergence from a sequence of errors.

    If :math:`e_{k+1} \approx C e_k^p`, then :math:`e_{k+1}/e_k \approx (e_k/e_{k-1})^p`, so

    .. math::

        p_k = \frac{\log(e_{k+1}/e_k)}{\log(e_k/e_{k-1})}, \qquad k = 1, \dots, N-1,

    for errors :math:`e_0, \dots, e_N`. :math:`p_k \to 1` for a linearly convergent method, 2 for
    Newton's method and :data:`GOLDEN_RATIO` for the secant method at a simple root. Errors at the
    level of rounding (about :math:`10^{-15}|x^\star|` in float64) carry no information: drop them
    first.

    Parameters
    ----------
    errors : sequence of float
        :math:`e_k = |x_k - x^\star| \ge 0`, at least three of them (a list, tuple, array or 1-D
        tensor).

    Returns
    -------
    list of float
        ``len(errors) - 2`` estimates; an entry is NaN where one of its three errors is zero or
        infinite, or where :math:`e_k = e_{k-1}` (the ratio carries no information there).

    Raises
    ------
    ValueError
        If there are fewer than three errors, or one is negative or NaN.
    """
    try:
        e = [float(v) for v in errors]
    except (TypeError, ValueError):
        raise ValueError("errors must be a sequence of non-negative numbers") from None
    if len(e) < 3:
        raise ValueError(f"errors needs at least three values to estimate an order, got {len(e)}")
    if any(not v >= 0 for v in e):
        raise ValueError("errors must be non-negative and not NaN (take |x_k - x*|)")
    orders = []
    for a, b, c in zip(e, e[1:], e[2:]):
        usable = all(0 < v < math.inf for v in (a, b, c)) and a != b
        orders.append(math.log(c / b) / math.log(b / a) if usable else math.nan)
    return orders
