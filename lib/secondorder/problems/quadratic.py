"""Strongly convex quadratics with a prescribed spectrum: the model problem of the course."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from secondorder._validation import check_positive
from secondorder.problems.base import Problem

SPACINGS = ("geometric", "linear")


@dataclass(eq=False, repr=False, kw_only=True)
class QuadraticProblem(Problem):
    r""":math:`f(x) = \tfrac12 x^\top A x - b^\top x` with :math:`A = Q \operatorname{diag}(\lambda) Q^\top`.

    Parameters
    ----------
    A : Tensor
        The symmetric positive definite Hessian, shape ``(n, n)``.
    b : Tensor
        Linear term, shape ``(n,)``.
    eigenvalues : Tensor
        :math:`\lambda`, ascending, shape ``(n,)``.
    eigenvectors : Tensor
        :math:`Q`, orthogonal, column ``i`` belongs to ``eigenvalues[i]``, shape ``(n, n)``.
    """

    A: Tensor
    b: Tensor
    eigenvalues: Tensor
    eigenvectors: Tensor

    @property
    def cond(self) -> float:
        r"""Condition number :math:`\kappa(A) = \lambda_{\max} / \lambda_{\min}`."""
        return float(self.eigenvalues[-1] / self.eigenvalues[0])

    def hessian(self, x: Tensor) -> Tensor:
        """Return :math:`A` (the Hessian does not depend on ``x``)."""
        return self.A.clone()


def _spectrum(n: int, cond: float, spacing: str) -> Tensor:
    """Eigenvalues from 1 to ``cond``, ascending, in float64 on the CPU, shape ``(n,)``."""
    if spacing == "geometric":
        # λ_i = cond^{(i-1)/(n-1)}: equally spaced on a log axis, the usual benchmark spectrum.
        return torch.logspace(0.0, math.log10(cond), n, dtype=torch.float64)
    return torch.linspace(1.0, cond, n, dtype=torch.float64)


def _random_orthogonal(n: int, generator: torch.Generator) -> Tensor:
    """Haar-distributed orthogonal matrix, shape ``(n, n)``.

    QR of a Gaussian matrix, with the signs of :math:`R`'s diagonal moved into :math:`Q` so that the
    distribution is uniform (Mezzadri, "How to generate random matrices from the classical compact
    groups", Notices AMS 54(5), 2007).
    """
    G = torch.randn(n, n, generator=generator, dtype=torch.float64)  # (n, n)
    Q, R = torch.linalg.qr(G)  # (n, n), (n, n)
    return Q * torch.sign(torch.diagonal(R))  # (n, n): column j scaled by sign(R_jj)


def quadratic(n: int | None = None, cond: float | None = None, spectrum: Tensor | None = None,
              spacing: str = "geometric", seed: int = 0, *, dtype: torch.dtype = torch.float64,
              device: torch.device | str = "cpu") -> QuadraticProblem:
    r"""Build a random strongly convex quadratic with the eigenvalues you choose.

    .. math::

        f(x) = \tfrac12 x^\top A x - b^\top x, \qquad A = Q \operatorname{diag}(\lambda) Q^\top,
        \qquad x^\star = A^{-1} b, \qquad f^\star = -\tfrac12 b^\top x^\star,

    with :math:`Q` Haar-random orthogonal and :math:`b \sim \mathcal N(0, I)`, both drawn from
    ``seed``; ``x0`` is the origin. Gradient descent with step :math:`1/\lambda_{\max}` contracts the
    error along eigenvector :math:`i` by :math:`1 - \lambda_i/\lambda_{\max}` per step, so the
    spectrum alone decides how first-order methods behave, while Newton's method solves the problem
    in one step (Nocedal & Wright, *Numerical Optimization*, 2nd ed., 2006, §3.3).

    Everything is computed in float64 on the CPU and then converted, so a seed gives the same
    problem (up to rounding) in every dtype and on every device.

    Parameters
    ----------
    n : int, optional
        Dimension (default 20). Must match ``len(spectrum)`` when both are given.
    cond : float, optional
        Condition number :math:`\kappa = \lambda_{\max}/\lambda_{\min} \ge 1` (default 1000); the
        eigenvalues run from 1 to ``cond``. Not allowed together with ``spectrum``.
    spectrum : Tensor or sequence of float, optional
        The eigenvalues themselves (positive); they are sorted ascending.
    spacing : {"geometric", "linear"}
        How the eigenvalues between 1 and ``cond`` are spaced when ``spectrum`` is not given.
    seed : int
        Seed for :math:`Q` and :math:`b`.
    dtype, device
        Where every tensor of the problem lives.

    Returns
    -------
    QuadraticProblem
        With ``A``, ``b``, ``eigenvalues``, ``eigenvectors``, ``x_star`` and ``f_star``.

    Raises
    ------
    ValueError
        If ``n < 1``, ``cond < 1`` (or ``cond != 1`` with ``n == 1``), ``spectrum`` is empty, not
        finite or not positive, ``n`` disagrees with ``spectrum``, or ``spacing`` is unknown.
    """
    if spectrum is not None:
        if cond is not None:
            raise ValueError("cond cannot be given together with spectrum (it follows from it)")
        lam = torch.as_tensor(spectrum, dtype=torch.float64).detach().cpu().reshape(-1)  # (n,)
        if lam.numel() == 0 or not bool(torch.isfinite(lam).all()) or not bool((lam > 0).all()):
            raise ValueError(f"spectrum must be non-empty, finite and positive, got {spectrum!r}")
        if n is not None and n != lam.numel():
            raise ValueError(f"n = {n} disagrees with spectrum of length {lam.numel()}")
        lam, _ = torch.sort(lam)
        n = lam.numel()
    else:
        n = 20 if n is None else n
        cond = 1e3 if cond is None else cond
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError(f"n must be a positive integer, got {n!r}")
        cond = check_positive("cond", cond)
        if cond < 1:
            raise ValueError(f"cond must be >= 1 (it is lambda_max / lambda_min), got {cond!r}")
        if n == 1 and cond != 1:
            raise ValueError(f"cond must be 1 when n == 1 (one eigenvalue), got {cond!r}")
        if spacing not in SPACINGS:
            raise ValueError(f"spacing must be one of {SPACINGS}, got {spacing!r}")
        lam = _spectrum(n, cond, spacing)  # (n,)

    generator = torch.Generator().manual_seed(seed)
    Q = _random_orthogonal(n, generator)  # (n, n)
    b = torch.randn(n, generator=generator, dtype=torch.float64)  # (n,)
    A = (Q * lam) @ Q.T  # (n, n) = Q diag(λ) Qᵀ
    A = 0.5 * (A + A.T)  # exactly symmetric despite rounding
    x_star = Q @ ((Q.T @ b) / lam)  # (n,): A⁻¹ b through the eigenbasis, no solve needed
    f_star = float(-0.5 * (b @ x_star))

    def to(t: Tensor) -> Tensor:
        return t.to(dtype=dtype, device=device)

    A_, b_ = to(A), to(b)

    def f(x: Tensor) -> Tensor:
        return 0.5 * (x @ (A_ @ x)) - b_ @ x  # ()

    kappa = float(lam[-1] / lam[0])
    return QuadraticProblem(
        name=f"quadratic(n={n}, cond={kappa:g})", f=f, x0=torch.zeros(n, dtype=dtype, device=device),
        x_star=to(x_star), f_star=f_star, A=A_, b=b_, eigenvalues=to(lam), eigenvectors=to(Q))
