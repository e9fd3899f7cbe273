r"""Numerical safeguards: a Cholesky factorization that repairs its input, Levenberg–Marquardt damping.

References
----------
.. [NW] J. Nocedal and S. J. Wright, *Numerical Optimization*, 2nd ed., Springer, 2006.
.. [Higham] N. J. Higham, *Accuracy and Stability of Numerical Algorithms*, 2nd ed., SIAM, 2002.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from ._validation import check_positive, check_square, check_vector

if TYPE_CHECKING:
    from .minimize import OptimizeResult


def cholesky_with_jitter(A: Tensor, initial: float = 1e-10, factor: float = 10.0,
                         max_tries: int = 20) -> tuple[Tensor, float]:
    r"""Cholesky factor of :math:`A + \tau I` for the smallest :math:`\tau` of a geometric ladder that works.

    First :math:`A` itself is factorized; if that fails, :math:`\tau_j = \texttt{initial}\cdot
    \texttt{factor}^{\,j}` for :math:`j = 0, 1, \dots, \texttt{max\_tries} - 1` until

    .. math:: A + \tau_j I = L L^\top

    succeeds (``torch.linalg.cholesky_ex`` reports success). This is the "Cholesky with added
    multiple of the identity" of Algorithm 3.3 in [NW]_, with a fixed starting shift: a symmetric
    matrix that should be positive semidefinite (a Gram matrix, a Gauss–Newton or Fisher estimate)
    is often slightly indefinite after rounding, and a shift of the order of
    :math:`\varepsilon\,\|A\|` repairs it ([Higham]_, §10.1). Since
    :math:`\lambda_{\min}(A + \tau I) = \lambda_{\min}(A) + \tau`, the accepted :math:`\tau` exceeds
    :math:`-\lambda_{\min}(A)` and is at most ``factor`` times the smallest shift that would have
    sufficed (up to rounding). The shift is absolute: pass ``initial`` proportional to the scale of
    ``A`` (e.g. ``1e-10 * A.diagonal().mean()``) for a scale-invariant rule.

    Parameters
    ----------
    A : Tensor, shape (n, n)
        Symmetric matrix; only its lower triangle is read, as by ``torch.linalg.cholesky``. Not modified.
    initial : float
        The first shift tried, positive.
    factor : float
        Growth of the shift between tries, greater than 1.
    max_tries : int
        Number of shifted factorizations tried after the unshifted one, at least 1.

    Returns
    -------
    L : Tensor, shape (n, n)
        Lower triangular with positive diagonal, :math:`L L^\top = A + \tau I`, dtype and device of ``A``.
    jitter : float
        The shift :math:`\tau` used: ``0.0`` when ``A`` itself is positive definite.

    Raises
    ------
    ValueError
        On bad arguments (naming the argument), or when even :math:`\tau = \texttt{initial} \cdot
        \texttt{factor}^{\,\texttt{max\_tries} - 1}` does not make :math:`A + \tau I` positive definite.
    """
    check_square("A", A)
    initial = check_positive("initial", initial)
    factor = check_positive("factor", factor)
    if not factor > 1:
        raise ValueError(f"factor must be greater than 1, got {factor!r}")
    if isinstance(max_tries, bool) or not isinstance(max_tries, int) or max_tries < 1:
        raise ValueError(f"max_tries must be a positive integer, got {max_tries!r}")
    L, info = torch.linalg.cholesky_ex(A)
    if int(info) == 0:
        return L, 0.0
    eye = torch.eye(A.shape[0], dtype=A.dtype, device=A.device)
    for j in range(max_tries):
        tau = initial * factor ** j
        L, info = torch.linalg.cholesky_ex(A + tau * eye)
        if int(info) == 0:
            return L, float(tau)
    last = initial * factor ** (max_tries - 1)
    raise ValueError(f"A is not positive definite even with jitter {last:.3e} added to its diagonal "
                     f"after {max_tries} tries (its smallest eigenvalue is below {-last:.3e}); "
                     f"raise initial, factor or max_tries, or check A")


def levenberg_marquardt(fun: Callable[[Tensor], tuple[Tensor, Tensor]], hess: Callable[[Tensor], Tensor],
                        x0: Tensor, damping: float = 1e-3, gtol: float = 1e-10, max_iter: int = 200,
                        shrink: float = 3.0, grow: float = 2.0) -> OptimizeResult:
    r"""Newton's method globalized by Levenberg–Marquardt damping instead of a line search.

    Each iteration solves :math:`(\nabla^2 f(x_k) + \mu_k I)\, d_k = -g_k` (Cholesky with jitter,
    so an indefinite Hessian gets an extra shift, within a factor of about 10 of the smallest, that
    makes it positive definite),
    compares the actual decrease with the one the quadratic model predicts,

    .. math::

        \rho_k = \frac{f(x_k) - f(x_k + d_k)}{-(g_k^\top d_k + \tfrac12 d_k^\top \nabla^2 f(x_k)\, d_k)},

    takes the step only if :math:`\rho_k > 0`, and adapts :math:`\mu`: divide by ``shrink`` when
    :math:`\rho_k > 3/4` (the model is good: move towards Newton), multiply by ``grow`` when
    :math:`\rho_k < 1/4` (move towards a short gradient step). :math:`d(\mu)` is the solution of
    the trust-region subproblem with radius :math:`\|d(\mu)\|` whenever :math:`\mu \ge 0` and
    :math:`\nabla^2 f(x_k) + \mu I` is positive semidefinite (Theorem 4.1 of [NW]_), so this is a
    trust-region method that steers :math:`\mu` instead of the radius ([NW]_ §10.3, Moré 1978).

    Parameters
    ----------
    fun : callable
        ``fun(x) -> (f(x), ∇f(x))``.
    hess : callable
        ``hess(x) -> ∇²f(x)``, shape ``(n, n)``.
    x0 : Tensor, shape (n,)
        Starting point.
    damping : float
        :math:`\mu_0 > 0`.
    gtol : float
        Stop when :math:`\|g_k\|_\infty \le` ``gtol``.
    max_iter : int
        Iteration budget (rejected steps count).
    shrink, grow : float
        Factors (> 1) that adapt :math:`\mu`.

    Returns
    -------
    OptimizeResult
        As :func:`secondorder.minimize`; each trace row holds ``k, f, grad_norm, damping, rho,
        step_norm, accepted``.
    """
    from .minimize import OptimizeResult

    x = check_vector("x0", x0).detach().clone()
    damping = check_positive("damping", damping)
    gtol = check_positive("gtol", gtol, allow_zero=True)
    if not shrink > 1 or not grow > 1:
        raise ValueError(f"shrink and grow must be > 1, got shrink={shrink!r}, grow={grow!r}")
    fx, g = fun(x)
    nfev, trace = 1, []
    eye = torch.eye(x.shape[0], dtype=x.dtype, device=x.device)
    for k in range(int(max_iter)):
        if float(g.abs().max()) <= gtol:
            return OptimizeResult(x, float(fx), float(g.abs().max()), k, nfev, True,
                                  f"converged: ‖g‖∞ ≤ gtol = {gtol:g}", trace)
        H = hess(x)
        L, _ = cholesky_with_jitter(H + damping * eye, initial=1e-10 * max(float(H.diagonal().abs().max()), 1.0))
        d = -torch.cholesky_solve(g.unsqueeze(1), L).squeeze(1)
        predicted = -float(g @ d + 0.5 * d @ H @ d)
        f_new, g_new = fun(x + d)
        nfev += 1
        rho = (float(fx) - float(f_new)) / predicted if predicted > 0 else -1.0
        trace.append(dict(k=k, f=float(fx), grad_norm=float(g.abs().max()), damping=damping, rho=rho,
                          step_norm=float(torch.linalg.vector_norm(d)), accepted=rho > 0))
        if rho > 0:
            x, fx, g = x + d, f_new, g_new
        damping = damping / shrink if rho > 0.75 else (damping * grow if rho < 0.25 else damping)
    success = float(g.abs().max()) <= gtol
    return OptimizeResult(x, float(fx), float(g.abs().max()), int(max_iter), nfev, success,
                          "converged" if success else f"stopped: max_iter = {max_iter} iterations reached", trace)
