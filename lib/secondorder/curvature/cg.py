r"""Conjugate gradient on curvature operators, and the two steps built on it.

:func:`cg` solves :math:`(A + \lambda I)\, x = b` with products by ``A`` only ([NW]_ Algorithm 5.2)
and stops early on negative curvature as Newton–CG needs ([NW]_ Algorithm 7.1).
:func:`hessian_free_step` and :func:`natural_gradient_step` build the operator of a model and
return the step.

References
----------
.. [NW] J. Nocedal and S. J. Wright, *Numerical Optimization*, 2nd ed., Springer, 2006.
.. [M10] J. Martens, "Deep learning via Hessian-free optimization", ICML 2010.
.. [M20] J. Martens, "New insights and perspectives on the natural gradient method", *JMLR* 21, 2020.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from .._validation import check_positive, check_vector
from .operators import FisherOperator, GGNOperator, HessianOperator


@dataclass
class CGResult:
    r"""Outcome of :func:`cg`.

    Attributes
    ----------
    x : Tensor, shape (n,)
        The last iterate (see :func:`cg` for the negative-curvature case).
    iterations : int
        Products with ``A`` taken (CG iterations).
    residual_norm : float
        :math:`\lVert b - (A + \lambda I) x_j \rVert` of the last CG iterate, by the recurrence.
    status : {"converged", "negative_curvature", "max_iter"}
        Why it stopped.
    """

    x: Tensor
    iterations: int
    residual_norm: float
    status: str

    @property
    def converged(self) -> bool:
        """Whether the relative residual reached ``tol``."""
        return self.status == "converged"

    @property
    def negative_curvature(self) -> bool:
        r"""Whether a direction with :math:`p^\top (A + \lambda I) p \le 0` stopped the iteration."""
        return self.status == "negative_curvature"


def _as_matvec(matvec) -> Callable[[Tensor], Tensor]:
    if callable(matvec):
        return matvec
    if hasattr(matvec, "__matmul__"):
        return lambda v: matvec @ v
    raise ValueError(f"matvec must be a callable v -> A v or support A @ v, got {type(matvec).__name__}")


def cg(matvec, b: Tensor, x0: Tensor | None = None, damping: float = 0.0, tol: float = 1e-6,
       max_iter: int | None = None) -> CGResult:
    r"""Conjugate gradient for :math:`(A + \lambda I)\, x = b`, ``A`` symmetric ([NW]_ Algorithm 5.2).

    With :math:`r_0 = b - (A + \lambda I) x_0`, :math:`p_0 = r_0` and :math:`\bar A = A + \lambda I`:

    .. math::

        \alpha_j = \frac{r_j^\top r_j}{p_j^\top \bar A p_j}, \quad
        x_{j+1} = x_j + \alpha_j p_j, \quad r_{j+1} = r_j - \alpha_j \bar A p_j, \quad
        p_{j+1} = r_{j+1} + \frac{r_{j+1}^\top r_{j+1}}{r_j^\top r_j}\, p_j,

    until :math:`\lVert r_j \rVert \le \mathrm{tol} \cdot \lVert b \rVert`. For symmetric positive
    definite :math:`\bar A` this minimizes :math:`\tfrac12 x^\top \bar A x - b^\top x` over growing
    Krylov subspaces and converges in at most ``n`` steps in exact arithmetic.

    If :math:`p_j^\top \bar A p_j \le 0` (``A`` indefinite, e.g. a Hessian away from a minimum) the
    quadratic is unbounded along :math:`p_j`; CG stops with ``status="negative_curvature"`` and
    returns the last iterate :math:`x_j`, or at the first iteration :math:`x_0 + r_0` (``b`` itself
    when ``x0`` is zero): for :math:`b = -\nabla f` that is the steepest-descent direction, the
    rule of Newton–CG ([NW]_ Algorithm 7.1).

    Parameters
    ----------
    matvec : callable or operator
        ``v -> A v`` for ``v`` of shape ``(n,)``, or anything with ``A @ v`` (a tensor, a
        :class:`~secondorder.curvature.CurvatureOperator`).
    b : Tensor, shape (n,)
        Right-hand side.
    x0 : Tensor, shape (n,), optional
        Starting point (default zero). Not modified.
    damping : float
        :math:`\lambda \ge 0`, added to the diagonal.
    tol : float
        Relative residual tolerance, > 0.
    max_iter : int, optional
        Iteration limit; default ``10 n`` as in ``scipy.sparse.linalg.cg`` (in floating point, CG
        on an ill-conditioned system can need more than the ``n`` steps of exact arithmetic).

    Returns
    -------
    CGResult

    Notes
    -----
    Each iteration reads two scalars on the host (one synchronisation on a GPU), to decide whether
    to stop; that is the nature of CG and costs far less than the product with ``A``.
    """
    check_vector("b", b)
    n = b.shape[0]
    damping = check_positive("damping", damping, allow_zero=True)
    tol = check_positive("tol", tol)
    if max_iter is None:
        max_iter = 10 * n
    if not isinstance(max_iter, int) or isinstance(max_iter, bool) or max_iter < 1:
        raise ValueError(f"max_iter must be a positive integer or None, got {max_iter!r}")
    apply_A = _as_matvec(matvec)

    def apply(v: Tensor) -> Tensor:
        Av = apply_A(v)
        if not isinstance(Av, Tensor) or Av.shape != v.shape:
            what = tuple(Av.shape) if isinstance(Av, Tensor) else type(Av).__name__
            raise ValueError(f"matvec must map a vector of shape ({n},) to one of the same shape, got {what}")
        return Av + damping * v if damping else Av  # (n,)

    if x0 is None:
        x = torch.zeros_like(b)  # (n,)
        r = b.clone()  # (n,)
    else:
        x = check_vector("x0", x0, n=n, like=b, like_name="b").clone()  # (n,)
        r = b - apply(x)  # (n,)
    p = r.clone()  # (n,)
    rr = r @ r
    threshold = (tol * torch.linalg.vector_norm(b)) ** 2
    if bool(rr <= threshold):
        return CGResult(x, 0, float(rr.sqrt()), "converged")
    for j in range(max_iter):
        Ap = apply(p)  # (n,)
        pAp = p @ Ap
        alpha = rr / pAp
        x_new = x + alpha * p  # (n,)
        r = r - alpha * Ap  # (n,)
        rr_new = r @ r
        # One host read per iteration for both tests (the update above is discarded if pAp ≤ 0).
        negative, done = torch.stack([pAp <= 0, rr_new <= threshold]).tolist()
        if negative:
            if j == 0:
                x = x + p  # x0 + r0: steepest descent on the model
            return CGResult(x, j + 1, float(rr.sqrt()), "negative_curvature")
        x = x_new
        if done:
            return CGResult(x, j + 1, float(rr_new.sqrt()), "converged")
        p = r + (rr_new / rr) * p  # (n,)
        rr = rr_new
    return CGResult(x, max_iter, float(rr.sqrt()), "max_iter")


def _forcing_tol(g: Tensor, tol: float | None) -> float:
    # N&W Algorithm 7.1: ‖r‖ ≤ min(0.5, √‖g‖)·‖g‖ gives superlinear convergence near a minimizer.
    return min(0.5, float(torch.linalg.vector_norm(g)) ** 0.5) if tol is None else tol


def hessian_free_step(model, loss_fn, batch, damping: float = 0.0, curvature: str = "hessian",
                      tol: float | None = None, max_iter: int = 100, params=None) -> CGResult:
    r"""Newton–CG step :math:`p \approx -(C + \lambda I)^{-1} \nabla L` at the model's parameters.

    ``curvature="hessian"``: :math:`C` is the Hessian and CG stops at negative curvature, returning
    the last iterate or :math:`-\nabla L` (line-search Newton–CG, [NW]_ Algorithm 7.1).
    ``curvature="ggn"``: :math:`C` is the Gauss–Newton matrix, positive semi-definite, with
    damping :math:`\lambda` — Hessian-free optimization ([M10]_; Martens adapts :math:`\lambda` by
    Levenberg–Marquardt and warm-starts CG, both left to the caller).

    Parameters
    ----------
    model, loss_fn, batch, params
        As for :class:`~secondorder.curvature.HessianOperator`.
    damping : float
        :math:`\lambda \ge 0`.
    curvature : {"hessian", "ggn"}
    tol : float, optional
        CG relative tolerance; default :math:`\min(0.5, \sqrt{\lVert \nabla L \rVert})` ([NW]_ 7.1).
    max_iter : int
        CG iteration limit (Martens 2010 allows up to 250).

    Returns
    -------
    CGResult
        ``x`` is the step :math:`p`, shape ``(n,)``, flat in ``params`` order: update with
        :math:`\theta \leftarrow \theta + \alpha p` after a line search.
    """
    if curvature == "hessian":
        C = HessianOperator(model, loss_fn, batch, params)
    elif curvature == "ggn":
        C = GGNOperator(model, loss_fn, batch, params)
    else:
        raise ValueError(f"curvature must be 'hessian' or 'ggn', got {curvature!r}")
    _, g = C.loss_and_gradient()  # (), (n,)
    return cg(C, -g, damping=damping, tol=_forcing_tol(g, tol), max_iter=max_iter)


def natural_gradient_step(model, loss_fn, batch, damping: float = 1e-3, mode: str = "exact",
                          mc_samples: int = 1, generator: torch.Generator | int = 0, tol: float = 1e-6,
                          max_iter: int = 100, params=None) -> CGResult:
    r"""Natural-gradient step :math:`p \approx -(F + \lambda I)^{-1} \nabla L` by CG on the Fisher.

    :math:`F` is :class:`~secondorder.curvature.FisherOperator` (``mode`` "exact", equal to the GGN
    for the supported losses, or "mc" with ``mc_samples`` sampled labels); the damping
    :math:`\lambda > 0` makes the system positive definite and acts as a trust region ([M20]_).

    Returns
    -------
    CGResult
        ``x`` is the step :math:`p` (the negative of the damped natural gradient
        :math:`(F + \lambda I)^{-1} \nabla L`), shape ``(n,)``.
    """
    F = FisherOperator(model, loss_fn, batch, params, mode=mode, mc_samples=mc_samples, generator=generator)
    _, g = F.loss_and_gradient()  # (), (n,)
    return cg(F, -g, damping=damping, tol=tol, max_iter=max_iter)
