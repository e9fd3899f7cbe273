"""The Rosenbrock function: a curved, badly scaled valley with a known minimizer."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from secondorder._validation import check_vector
from secondorder.problems.base import Problem


def rosenbrock_function(x: Tensor) -> Tensor:
    r"""Chained Rosenbrock function, the same as ``scipy.optimize.rosen``.

    .. math::

        f(x) = \sum_{i=1}^{n-1} 100\,(x_{i+1} - x_i^2)^2 + (1 - x_i)^2.

    Parameters
    ----------
    x : Tensor
        Shape ``(n,)`` with ``n >= 2``, or ``(..., n)`` for a batch of points (handy for contour
        plots).

    Returns
    -------
    Tensor
        Shape ``()``, or ``(...)`` for a batch.
    """
    head, tail = x[..., :-1], x[..., 1:]  # (..., n-1) each
    return (100.0 * (tail - head**2) ** 2 + (1.0 - head) ** 2).sum(dim=-1)


def rosenbrock_hessian(x: Tensor) -> Tensor:
    r"""Hessian of :func:`rosenbrock_function` in closed form (tridiagonal), as ``scipy.optimize.rosen_hess``.

    With :math:`f = \sum_i 100 (x_{i+1} - x_i^2)^2 + (1 - x_i)^2`,

    .. math::

        \frac{\partial^2 f}{\partial x_i^2} = 1200 x_i^2 - 400 x_{i+1} + 2\,[i < n] + 200\,[i > 1],
        \qquad
        \frac{\partial^2 f}{\partial x_i \partial x_{i+1}} = -400 x_i .

    Exact and cheap (no autograd): for Newton iterations and for plotting the curvature along a path.

    Parameters
    ----------
    x : Tensor
        Shape ``(n,)``, ``n >= 2``.

    Returns
    -------
    Tensor
        Shape ``(n, n)``, symmetric, on ``x``'s device and dtype.
    """
    check_vector("x", x)
    if x.shape[0] < 2:
        raise ValueError(f"x must have at least 2 entries, got shape {tuple(x.shape)}")
    x = x.detach()
    head, tail = x[:-1], x[1:]                                   # (n-1,) each
    diag = torch.zeros_like(x)
    diag[:-1] += 1200.0 * head**2 - 400.0 * tail + 2.0
    diag[1:] += 200.0
    off = -400.0 * head
    return torch.diag(diag) + torch.diag(off, 1) + torch.diag(off, -1)


@dataclass(eq=False, repr=False, kw_only=True)
class RosenbrockProblem(Problem):
    """The Rosenbrock problem, with its Hessian in closed form (:func:`rosenbrock_hessian`)."""

    def hessian(self, x: Tensor) -> Tensor:
        """Return the exact Hessian at ``x``, shape ``(n, n)``."""
        check_vector("x", x, self.n, like=self.x0, like_name="x0", finite=False)
        return rosenbrock_hessian(x)


def rosenbrock(n: int = 2, x0: Tensor | None = None, *, dtype: torch.dtype = torch.float64,
               device: torch.device | str = "cpu") -> Problem:
    r"""Build the ``n``-dimensional Rosenbrock problem (Rosenbrock, *The Computer Journal* 3(3), 1960).

    :math:`f` is :func:`rosenbrock_function`; :math:`x^\star = (1, \dots, 1)`, :math:`f^\star = 0`.
    At the minimizer the Hessian has condition number about 2500 for ``n = 2``, and the valley
    :math:`x_{i+1} = x_i^2` bends, so steepest descent zig-zags while Newton-type methods follow it.

    The default start is the classical :math:`(-1.2, 1)` for ``n = 2`` (Moré, Garbow & Hillstrom,
    "Testing unconstrained optimization software", ACM TOMS 7(1), 1981, problem 1) and its repetition
    :math:`(-1.2, 1, -1.2, 1, \dots)` for larger ``n`` (their extended Rosenbrock start). For
    :math:`4 \le n \le 30` the chained form also has a local minimizer near :math:`(-1, 1, \dots, 1)`
    (Shang & Qiu, "A note on the extended Rosenbrock function", *Evolutionary Computation* 14(1),
    2006), so a method may legitimately stop there.

    Parameters
    ----------
    n : int
        Dimension, at least 2.
    x0 : Tensor or sequence of float, optional
        Starting point of shape ``(n,)``, instead of the standard one.
    dtype, device
        Where every tensor of the problem lives.

    Raises
    ------
    ValueError
        If ``n < 2`` or ``x0`` does not have shape ``(n,)``.
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 2:
        raise ValueError(f"n must be an integer >= 2, got {n!r}")
    if x0 is None:
        x0 = torch.tensor([-1.2, 1.0], dtype=dtype, device=device).repeat((n + 1) // 2)[:n]  # (n,)
    else:
        x0 = torch.as_tensor(x0).detach().to(dtype=dtype, device=device).clone()
        check_vector("x0", x0, n)
    return RosenbrockProblem(name=f"rosenbrock(n={n})", f=rosenbrock_function, x0=x0,
                             x_star=torch.ones(n, dtype=dtype, device=device), f_star=0.0)
