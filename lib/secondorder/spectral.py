r"""Spectra of symmetric operators from matrix-vector products alone.

Every function here takes the operator :math:`A \in \mathbb{R}^{n \times n}` (symmetric) as
``matvec``: a callable ``v -> A v`` or any object with ``@`` (a dense tensor, a sparse tensor, a
curvature operator), so the same code runs on a dense test matrix, a Hessian-vector product of a
network, or a Fisher operator. Nothing here forms :math:`A`.

=====================================  ===============================================================
:func:`power_iteration`                eigenvalue of largest magnitude, Rayleigh quotient [GVL]_ §8.2.1
:func:`lanczos`                        extreme eigenpairs from a Krylov basis [L50]_, [GVL]_ §10.1
:func:`slq_density`                    spectral density by stochastic Lanczos quadrature [UCS17]_
:func:`smoothed_density`               Gaussian-smoothed density from quadrature nodes and weights
:func:`hutchinson_trace`               :math:`\operatorname{tr} A` from random probes [H89]_
:func:`hutchpp_trace`                  Hutch++: low-rank sketch plus Hutchinson on the rest [MMMW21]_
=====================================  ===============================================================

Random probes come from ``generator`` when given (drawn on the generator's device and moved), so
a seed gives the same probes on every device; otherwise from the global generator on ``device``.

References
----------
.. [GVL] G. H. Golub and C. F. Van Loan, *Matrix Computations*, 4th ed., Johns Hopkins, 2013.
.. [L50] C. Lanczos, "An iteration method for the solution of the eigenvalue problem of linear
   differential and integral operators", *J. Res. Nat. Bur. Standards* 45(4), 1950.
.. [UCS17] S. Ubaru, J. Chen and Y. Saad, "Fast estimation of tr(f(A)) via stochastic Lanczos
   quadrature", *SIAM J. Matrix Anal. Appl.* 38(4), 2017.
.. [GKX19] B. Ghorbani, S. Krishnan and Y. Xiao, "An investigation into neural net optimization
   via Hessian eigenvalue density", ICML 2019.
.. [H89] M. F. Hutchinson, "A stochastic estimator of the trace of the influence matrix for
   Laplacian smoothing splines", *Comm. Statist. Simulation Comput.* 18(3), 1989.
.. [MMMW21] R. A. Meyer, C. Musco, C. Musco and D. P. Woodruff, "Hutch++: optimal stochastic trace
   estimation", SOSA 2021.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
import scipy.linalg
import torch
from torch import Tensor

from ._validation import check_count, check_positive, check_tensor, check_vector

MatVec = Callable[[Tensor], Tensor]
WHICH = ("LA", "SA", "LM")
DISTRIBUTIONS = ("rademacher", "gaussian")


def _operator(matvec: Any) -> MatVec:
    """Wrap ``matvec`` (callable or object with ``@``) so that every product is checked for shape.

    ``@`` wins when an object offers both, since that is how curvature operators spell the product.
    The checks read only metadata, so they cost no synchronisation on a GPU.
    """
    if hasattr(matvec, "__matmul__"):
        def apply(v: Tensor) -> Tensor:
            return matvec @ v
    elif callable(matvec):
        apply = matvec
    else:
        raise ValueError("matvec must be a callable v -> A v or an object supporting A @ v, "
                         f"got {type(matvec).__name__}")

    def checked(v: Tensor) -> Tensor:
        w = apply(v)
        if not isinstance(w, Tensor):
            raise ValueError(f"matvec must return a torch.Tensor, got {type(w).__name__}")
        if w.shape != v.shape or w.dtype != v.dtype or w.device != v.device:
            raise ValueError(f"matvec must return a tensor like its input (shape {tuple(v.shape)}, "
                             f"dtype {v.dtype}, device {v.device}); got shape {tuple(w.shape)}, "
                             f"dtype {w.dtype}, device {w.device}")
        return w

    return checked



def _probe(n: int, distribution: str, generator: torch.Generator | None, dtype: torch.dtype,
           device: torch.device | str) -> Tensor:
    r"""Draw one random probe of shape ``(n,)`` with :math:`E[z z^\top] = I`."""
    where = generator.device if generator is not None else device
    if distribution == "rademacher":
        z = torch.randint(0, 2, (n,), generator=generator, device=where).mul_(2).sub_(1)  # (n,) ±1
    else:
        z = torch.randn(n, generator=generator, device=where, dtype=dtype)  # (n,)
    return z.to(dtype=dtype, device=device)


def _resolve_dtype(dtype: torch.dtype | None) -> torch.dtype:
    return torch.get_default_dtype() if dtype is None else dtype


def power_iteration(matvec: Any, v0: Tensor, iters: int = 100, tol: float = 1e-6) -> tuple[Tensor, Tensor]:
    r"""Eigenvalue of largest magnitude of a symmetric operator, by power iteration.

    Starting from :math:`v_0 = v^{(0)} / \|v^{(0)}\|`, repeat

    .. math::

        w = A v_i, \qquad \lambda_i = v_i^\top w \ (\text{Rayleigh quotient}), \qquad
        v_{i+1} = w / \|w\|,

    until :math:`|\lambda_i - \lambda_{i-1}| \le \mathrm{tol}\, |\lambda_i|` or ``iters`` products.
    For symmetric :math:`A` with eigenvalues ordered :math:`|\lambda_1| > |\lambda_2| \ge \dots`, the
    Rayleigh quotient converges like :math:`(\lambda_2/\lambda_1)^{2i}` (Theorem 8.2.1 and §8.2.1 of
    [GVL]_), the vector like :math:`|\lambda_2/\lambda_1|^i`. The sign of :math:`\lambda_1` is kept:
    for a negative dominant eigenvalue the iterates alternate in sign and :math:`\lambda_i < 0`.
    If :math:`\lambda` and :math:`-\lambda` are both dominant the iteration does not settle; use
    :func:`lanczos` there.

    Each product costs one host synchronisation (the stopping test reads :math:`\lambda_i`); next
    to a Hessian-vector product that is negligible.

    Parameters
    ----------
    matvec : callable or object with ``@``
        The symmetric operator: ``matvec(v)`` or ``matvec @ v`` returns :math:`A v`, shape ``(n,)``.
    v0 : Tensor, shape (n,)
        Starting vector, nonzero and finite; it fixes ``n``, dtype and device. Not modified.
        A random start has a nonzero component along the top eigenvector with probability one.
    iters : int
        Maximum number of products with :math:`A`.
    tol : float
        Relative change of the estimate at which to stop; ``0`` runs all ``iters`` products.

    Returns
    -------
    eigenvalue : Tensor, 0-d
        :math:`\lambda = v^\top A v`, with the dtype and device of ``v0`` (``float(eigenvalue)`` for
        a number).
    eigenvector : Tensor, shape (n,)
        The unit vector :math:`v` whose Rayleigh quotient is ``eigenvalue``.

    Raises
    ------
    ValueError
        If ``v0`` is not a finite nonzero vector, ``matvec`` returns a tensor of another shape,
        dtype or device, or a non-finite value, or ``iters``/``tol`` are out of range.

    Examples
    --------
    >>> A = torch.diag(torch.tensor([1.0, -3.0, 2.0], dtype=torch.float64))
    >>> lam, v = power_iteration(A, torch.ones(3, dtype=torch.float64), tol=1e-12, iters=500)
    >>> round(float(lam), 6)
    -3.0
    """
    check_vector("v0", v0)
    iters = check_count("iters", iters)
    tol = check_positive("tol", tol, allow_zero=True)
    op = _operator(matvec)
    norm0 = torch.linalg.vector_norm(v0)
    if not float(norm0) > 0:
        raise ValueError("v0 must be a nonzero vector (its direction starts the iteration)")
    v = v0 / norm0  # (n,), a new tensor: v0 is untouched
    lam_prev = None
    for i in range(iters):
        w = op(v)  # (n,)
        lam = torch.dot(v, w)
        w_norm = torch.linalg.vector_norm(w)
        lam_h, w_norm_h = torch.stack([lam, w_norm]).tolist()  # one sync: the stopping test
        if not (math.isfinite(lam_h) and math.isfinite(w_norm_h)):
            raise ValueError("matvec returned a non-finite value during power iteration")
        if w_norm_h == 0.0:  # v lies in the null space: A v = 0 exactly, an eigenpair with λ = 0
            break
        if lam_prev is not None and abs(lam_h - lam_prev) <= tol * abs(lam_h):
            break
        lam_prev = lam_h
        if i + 1 < iters:  # on the last pass keep v paired with the λ we return
            v = w / w_norm
    return lam, v


class LanczosResult(NamedTuple):
    """What :func:`lanczos` returns; unpacks as ``eigenvalues, eigenvectors, T``."""

    eigenvalues: Tensor
    """Shape ``(k,)``: the wanted Ritz values, ordered as ``which`` asks."""
    eigenvectors: Tensor | None
    """Shape ``(n, k)``: the Ritz vectors (unit columns), or ``None`` unless requested."""
    T: Tensor
    """Shape ``(m, m)``: the Lanczos tridiagonal matrix :math:`T_m = Q_m^\\top A Q_m`."""


def _lanczos_steps(op: MatVec, q1: Tensor, iters: int, reorthogonalize: bool, keep_basis: bool,
                   tol: float = 0.0, k: int = 1, which: str = "LA"):
    r"""Run up to ``iters`` Lanczos steps from the unit vector ``q1``; the kernel of this module.

    Returns the host lists ``alpha`` (length m) and ``beta`` (length m, the last one being
    :math:`\beta_m`, the residual norm), and the basis :math:`Q_m` of shape ``(m, n)`` (rows) or
    ``None``. Stops early on breakdown (an invariant subspace) or, when ``tol > 0``, once the ``k``
    wanted Ritz pairs have residual bounds :math:`\beta_m |s_{mi}| \le \mathrm{tol}\,|\theta_i|`.
    """
    n = q1.shape[0]
    eps = torch.finfo(q1.dtype).eps
    Q = q1.new_empty((iters, n)) if keep_basis else None  # rows q_1 … q_m
    alpha, beta = [], []
    q_prev, q, beta_prev = torch.zeros_like(q1), q1, q1.new_zeros(())
    a_norm = 0.0
    for j in range(iters):
        if Q is not None:
            Q[j] = q
        w = op(q)  # (n,)
        a_j = torch.dot(q, w)
        w_in = torch.linalg.vector_norm(w)
        w = w - a_j * q - beta_prev * q_prev  # three-term recurrence, (10.1.5) in [GVL]
        if reorthogonalize:
            B = Q[: j + 1]  # (j+1, n)
            # Classical Gram–Schmidt applied twice ("twice is enough", [GVL] §5.2.8): keeps the
            # basis orthogonal to working precision, at O(n j) per step.
            w = w - B.T @ (B @ w)  # (n,)
            w = w - B.T @ (B @ w)  # (n,)
        b_j = torch.linalg.vector_norm(w)
        a_h, b_h, w_in_h = torch.stack([a_j, b_j, w_in]).tolist()  # one sync per step
        if not all(map(math.isfinite, (a_h, b_h, w_in_h))):
            raise ValueError("matvec returned a non-finite value during the Lanczos iteration")
        alpha.append(a_h)
        beta.append(b_h)
        a_norm = max(a_norm, w_in_h)
        # β_j ≈ 0: span(q_1 … q_j) is invariant and T_j holds exact eigenvalues of A. "≈ 0" is the
        # rounding level of one product, √n·ε·‖A‖, times 10: at an exact invariant subspace β_j came
        # out at 0.6–0.7 of that level with CPU float64 products and 0.6–1.25 of it with CUDA's.
        if b_h <= 10 * math.sqrt(n) * eps * a_norm or j + 1 == iters:
            break
        if tol > 0 and j + 1 >= k and _ritz_converged(alpha, beta, k, which, tol):
            break
        q_prev, q, beta_prev = q, w / b_j, b_j
    m = len(alpha)
    return alpha, beta, (Q[:m] if Q is not None else None)


def _tridiagonal(alpha: list[float], beta: list[float]) -> Tensor:
    """Dense :math:`T_m` in float64 on the CPU from the host lists (off-diagonal ``beta[:-1]``)."""
    a = torch.tensor(alpha, dtype=torch.float64)  # (m,)
    b = torch.tensor(beta[: len(alpha) - 1], dtype=torch.float64)  # (m-1,)
    return torch.diag(a) + torch.diag(b, 1) + torch.diag(b, -1)  # (m, m)


def _eigh_tridiagonal(alpha: list[float], beta: list[float]) -> tuple[Tensor, Tensor]:
    r"""Eigenpairs :math:`T_m = S \Theta S^\top` in float64 on the CPU, ascending.

    LAPACK's tridiagonal solver (through scipy) costs :math:`O(m^2)`: under a millisecond for
    :math:`m = 120`, where ``torch.linalg.eigh`` on the dense :math:`T_m` took 0.05–1.5 s on a
    2-core CPU with torch 2.13.
    """
    theta, S = scipy.linalg.eigh_tridiagonal(np.asarray(alpha, dtype=np.float64),
                                             np.asarray(beta[: len(alpha) - 1], dtype=np.float64))
    return torch.from_numpy(theta), torch.from_numpy(S)  # (m,), (m, m)


def _select(theta: Tensor, k: int, which: str) -> Tensor:
    """Return the indices of the ``k`` wanted Ritz values, in the order :func:`lanczos` returns them."""
    key = {"LA": -theta, "SA": theta, "LM": -theta.abs()}[which]
    return torch.argsort(key, stable=True)[:k]


def _ritz_converged(alpha, beta, k, which, tol) -> bool:
    theta, S = _eigh_tridiagonal(alpha, beta)  # (j,), (j, j)
    idx = _select(theta, k, which)
    # ‖A y_i − θ_i y_i‖ = β_j |e_jᵀ s_i| for the Ritz pair (θ_i, y_i = Q s_i), (10.1.9) in [GVL].
    residual = beta[-1] * S[-1, idx].abs()
    return bool((residual <= tol * theta[idx].abs()).all())


def lanczos(matvec: Any, v0: Tensor | None = None, *, n: int | None = None, k: int = 1,
            iters: int | None = None, which: str = "LA", reorthogonalize: bool = True,
            return_eigenvectors: bool = False, tol: float = 0.0, dtype: torch.dtype | None = None,
            device: torch.device | str = "cpu", generator: torch.Generator | None = None) -> LanczosResult:
    r"""Extreme eigenvalues of a symmetric operator by the Lanczos iteration.

    The Lanczos process [L50]_ builds an orthonormal basis :math:`Q_m = [q_1, \dots, q_m]` of the
    Krylov space :math:`\mathcal K_m(A, q_1)` in which :math:`A` is tridiagonal,

    .. math::

        A Q_m = Q_m T_m + \beta_m q_{m+1} e_m^\top, \qquad
        T_m = \begin{pmatrix} \alpha_1 & \beta_1 \\ \beta_1 & \ddots & \ddots \\
              & \ddots & \alpha_m \end{pmatrix},

    ((10.1.4) in [GVL]_). The eigenvalues :math:`\theta_i` of :math:`T_m` (Ritz values) approach the
    extreme eigenvalues of :math:`A` far faster than power iteration: after :math:`m` products the
    error in :math:`\lambda_1` falls roughly like :math:`T_{m-1}(1 + 2\gamma)^{-2}` with
    :math:`\gamma = (\lambda_1-\lambda_2)/(\lambda_2-\lambda_n)` (Kaniel–Paige theory, §10.1.5 of
    [GVL]_), i.e. with :math:`\sqrt{\gamma}` where power iteration has :math:`\gamma`.
    Ritz vectors are :math:`y_i = Q_m s_i` for :math:`T_m s_i = \theta_i s_i`, and
    :math:`\|A y_i - \theta_i y_i\| = \beta_m |e_m^\top s_i|` ((10.1.9) in [GVL]_).

    In floating point the basis loses orthogonality as soon as a Ritz value converges, and copies
    of converged eigenvalues ("ghosts") appear in :math:`T_m`. ``reorthogonalize=True`` (the
    default) removes this by full reorthogonalization: classical Gram–Schmidt against all previous
    :math:`q_j`, twice. It costs :math:`O(nm^2)` extra flops and :math:`m\,n` memory for the basis;
    without it the process keeps three vectors only (unless eigenvectors are requested) and costs
    :math:`O(nm)` besides the products.

    Parameters
    ----------
    matvec : callable or object with ``@``
        The symmetric operator, ``v -> A v`` for ``v`` of shape ``(n,)``.
    v0 : Tensor, shape (n,), optional
        Starting vector (finite, nonzero; not modified). Default: a Gaussian vector of length ``n``
        with ``dtype`` and ``device``, drawn from ``generator``.
    n : int, optional
        Size of the operator; required when ``v0`` is not given.
    k : int
        Number of eigenvalues wanted.
    iters : int, optional
        Maximum number of Lanczos steps (= products with :math:`A`); default
        :math:`\min(n, 2k + 20)`. At most ``n`` are useful.
    which : {"LA", "SA", "LM"}
        Largest algebraic (returned in descending order), smallest algebraic (ascending), or
        largest magnitude (descending magnitude), as in ARPACK.
    reorthogonalize : bool
        Full reorthogonalization (see above).
    return_eigenvectors : bool
        Also return the Ritz vectors.
    tol : float
        Stop early once the ``k`` wanted Ritz pairs have residual norm at most
        :math:`\mathrm{tol}\,|\theta_i|`; ``0`` (default) runs ``iters`` steps.
    dtype, device, generator
        For the random start when ``v0`` is not given (``dtype`` defaults to torch's default).

    Returns
    -------
    LanczosResult
        ``(eigenvalues (k,), eigenvectors (n, k) or None, T (m, m))``, in the dtype and device of the
        start vector. Fewer than ``k`` values come back if the iteration stopped at an invariant
        subspace of dimension below ``k``.

    Notes
    -----
    Every step reads :math:`\alpha_j, \beta_j` on the host (one synchronisation per product) to
    detect breakdown; :math:`T_m` is diagonalized in float64 on the CPU by LAPACK's tridiagonal
    solver, where an ``m × m`` eigenproblem is cheapest.
    """
    if which not in WHICH:
        raise ValueError(f"which must be one of {WHICH}, got {which!r}")
    k = check_count("k", k)
    tol = check_positive("tol", tol, allow_zero=True)
    if v0 is None:
        n = check_count("n", n)
        v0 = torch.randn(n, generator=generator, dtype=torch.float64,
                         device=generator.device if generator is not None else device)
        v0 = v0.to(dtype=_resolve_dtype(dtype), device=device)
    else:
        check_vector("v0", v0, n=n)
        n = v0.shape[0]
    iters = min(n, 2 * k + 20) if iters is None else check_count("iters", iters)
    op = _operator(matvec)
    norm0 = torch.linalg.vector_norm(v0)
    if not float(norm0) > 0:
        raise ValueError("v0 must be a nonzero vector (it spans the first Krylov space)")
    alpha, beta, Q = _lanczos_steps(op, v0 / norm0, iters, reorthogonalize,
                                    keep_basis=reorthogonalize or return_eigenvectors,
                                    tol=tol, k=k, which=which)
    T = _tridiagonal(alpha, beta)  # (m, m), float64 CPU
    theta, S = _eigh_tridiagonal(alpha, beta)  # (m,), (m, m)
    idx = _select(theta, k, which)
    eigenvalues = theta[idx].to(dtype=v0.dtype, device=v0.device)  # (k,)
    eigenvectors = None
    if return_eigenvectors:
        eigenvectors = Q.T @ S[:, idx].to(dtype=v0.dtype, device=v0.device)  # (n, m) @ (m, k)
    return LanczosResult(eigenvalues, eigenvectors, T.to(dtype=v0.dtype, device=v0.device))


def smoothed_density(nodes: Tensor, weights: Tensor, grid: Tensor, sigma: float) -> Tensor:
    r"""Spectral density smoothed by a Gaussian, from quadrature nodes and weights.

    .. math::

        \phi_\sigma(t) = \frac1L \sum_{l=1}^{L} \sum_{j=1}^{m} w_j^{(l)}\,
        \frac{1}{\sigma\sqrt{2\pi}} \exp\!\Bigl(-\frac{(t - \theta_j^{(l)})^2}{2\sigma^2}\Bigr),

    (3.1)–(3.2) of [GKX19]_. Each probe's weights sum to one, so :math:`\phi_\sigma` integrates to
    one; its mean is that of the nodes and its variance exceeds theirs by :math:`\sigma^2`.

    Parameters
    ----------
    nodes, weights : Tensor, shape (L, m)
        Ritz values :math:`\theta_j^{(l)}` and weights :math:`w_j^{(l)}` per probe (one row each).
    grid : Tensor, shape (G,)
        Where to evaluate the density.
    sigma : float
        Width of the Gaussian kernel, > 0.

    Returns
    -------
    Tensor, shape (G,)
        :math:`\phi_\sigma` on ``grid``.
    """
    check_tensor("nodes", nodes, ndim=2)
    check_tensor("weights", weights, ndim=2, like=nodes, like_name="nodes")
    if weights.shape != nodes.shape:
        raise ValueError(f"weights must have the shape of nodes {tuple(nodes.shape)}, "
                         f"got {tuple(weights.shape)}")
    check_vector("grid", grid, like=nodes, like_name="nodes")
    sigma = check_positive("sigma", sigma)
    z = (grid[:, None] - nodes.reshape(1, -1)) / sigma  # (G, L·m)
    kernel = torch.exp(-0.5 * z * z) / (sigma * math.sqrt(2 * math.pi))  # (G, L·m)
    return kernel @ weights.reshape(-1) / nodes.shape[0]  # (G,)


@dataclass
class SpectralDensity:
    r"""Result of :func:`slq_density`: Gauss quadrature rules for :math:`v_l^\top f(A)\, v_l`.

    Attributes
    ----------
    nodes : Tensor, shape (L, m)
        Ritz values :math:`\theta_j^{(l)}` of probe :math:`l` (ascending in each row).
    weights : Tensor, shape (L, m)
        :math:`w_j^{(l)} = (e_1^\top s_j^{(l)})^2`, each row summing to one. Rows of probes whose
        iteration stopped early are padded with weight zero.
    grid : Tensor or None, shape (G,)
        Where :attr:`density` was evaluated, if a grid was asked for.
    density : Tensor or None, shape (G,)
        :func:`smoothed_density` on :attr:`grid`.
    sigma : float or None
        The kernel width used for :attr:`density`.
    """

    nodes: Tensor
    weights: Tensor
    grid: Tensor | None = None
    density: Tensor | None = None
    sigma: float | None = None

    def quadrature(self, f: Callable[[Tensor], Tensor]) -> Tensor:
        r"""Per-probe estimates of :math:`\operatorname{tr} f(A) / n`, shape ``(L,)``.

        Probe :math:`l` gives :math:`\sum_j w_j^{(l)} f(\theta_j^{(l)}) \approx v_l^\top f(A) v_l`,
        exact for polynomials of degree below :math:`2m`. Their mean is the SLQ estimate (Algorithm 1
        of [UCS17]_); their standard deviation over :math:`\sqrt L` is its standard error.
        """
        return (self.weights * f(self.nodes)).sum(dim=1)  # (L,)

    def smooth(self, grid: Tensor, sigma: float) -> Tensor:
        """Evaluate the density on ``grid`` with kernel width ``sigma`` (:func:`smoothed_density`)."""
        return smoothed_density(self.nodes, self.weights, grid, sigma)


def slq_density(matvec: Any, n: int, num_probes: int = 10, iters: int = 30,
                grid: Tensor | int | None = None, sigma: float | None = None, *,
                reorthogonalize: bool = True, dtype: torch.dtype | None = None,
                device: torch.device | str = "cpu",
                generator: torch.Generator | None = None) -> SpectralDensity:
    r"""Spectral density of a symmetric operator by stochastic Lanczos quadrature (SLQ).

    The spectral density :math:`\phi(t) = \frac1n \sum_i \delta(t - \lambda_i)` satisfies
    :math:`\int f\,d\phi = \operatorname{tr} f(A) / n = E[v^\top f(A)\, v]` for a probe
    :math:`v = z/\sqrt n` with Rademacher :math:`z`. For each of :math:`L` probes, :math:`m` Lanczos
    steps from :math:`q_1 = v_l` give :math:`T_m = S \Theta S^\top`, and

    .. math::

        v_l^\top f(A)\, v_l \approx \sum_{j=1}^{m} w_j^{(l)} f(\theta_j^{(l)}), \qquad
        w_j^{(l)} = (e_1^\top s_j)^2,

    the :math:`m`-point Gauss quadrature of the measure :math:`\sum_i (q_i^\top v_l)^2
    \delta_{\lambda_i}` ([GVL]_ §10.1, Algorithm 1 of [UCS17]_); it is exact for polynomials of
    degree up to :math:`2m - 1`. Averaging over probes and smoothing each node by a Gaussian gives
    the density plots of [GKX19]_ (:func:`smoothed_density`).

    Parameters
    ----------
    matvec : callable or object with ``@``
        The symmetric operator, ``v -> A v`` for ``v`` of shape ``(n,)``.
    n : int
        Size of the operator.
    num_probes : int
        Number of Rademacher probes :math:`L`.
    iters : int
        Lanczos steps per probe :math:`m` (capped at ``n``); cost :math:`L\,m` products.
    grid : Tensor of shape (G,), or int, optional
        Where to evaluate the smoothed density; an int asks for that many points spanning the nodes
        plus :math:`5\sigma` on each side. ``None`` returns nodes and weights only.
    sigma : float, optional
        Kernel width; default 1% of the span of the nodes.
    reorthogonalize : bool
        Full reorthogonalization in each Lanczos run (see :func:`lanczos`).
    dtype, device, generator
        Where the probes live and where they come from.

    Returns
    -------
    SpectralDensity
        Nodes and weights ``(L, m)``, and the density on the grid when one was given.
    """
    n = check_count("n", n)
    num_probes = check_count("num_probes", num_probes)
    iters = min(check_count("iters", iters), n)
    dtype = _resolve_dtype(dtype)
    op = _operator(matvec)
    nodes = torch.zeros(num_probes, iters, dtype=torch.float64)  # (L, m), CPU: built from host lists
    weights = torch.zeros(num_probes, iters, dtype=torch.float64)  # (L, m)
    for l in range(num_probes):
        v = _probe(n, "rademacher", generator, dtype, device) / math.sqrt(n)  # (n,), unit norm
        alpha, beta, _ = _lanczos_steps(op, v, iters, reorthogonalize, keep_basis=reorthogonalize)
        theta, S = _eigh_tridiagonal(alpha, beta)  # (m_l,), (m_l, m_l)
        m_l = theta.shape[0]
        nodes[l, :m_l], nodes[l, m_l:] = theta, theta[-1]
        weights[l, :m_l] = S[0] ** 2
    result = SpectralDensity(nodes.to(dtype=dtype, device=device), weights.to(dtype=dtype, device=device))
    if grid is not None:
        lo, hi = float(nodes.min()), float(nodes.max())
        if sigma is None:
            sigma = 0.01 * (hi - lo) if hi > lo else 1e-3 * max(abs(hi), 1.0)
        if isinstance(grid, int):
            grid = torch.linspace(lo - 5 * sigma, hi + 5 * sigma, check_count("grid", grid, 2),
                                  dtype=dtype, device=device)  # (G,)
        result.grid, result.sigma = grid, float(sigma)
        result.density = result.smooth(grid, sigma)
    return result


def _check_distribution(distribution: str) -> None:
    if distribution not in DISTRIBUTIONS:
        raise ValueError(f"distribution must be one of {DISTRIBUTIONS}, got {distribution!r}")


def hutchinson_trace(matvec: Any, n: int, num_samples: int = 10, distribution: str = "rademacher",
                     generator: torch.Generator | None = None, *, dtype: torch.dtype | None = None,
                     device: torch.device | str = "cpu", return_samples: bool = False):
    r"""Hutchinson's stochastic estimate of :math:`\operatorname{tr} A`.

    .. math::

        \widehat{\operatorname{tr}}(A) = \frac1N \sum_{i=1}^{N} z_i^\top A z_i, \qquad
        E[z z^\top] = I \;\Rightarrow\; E[z^\top A z] = \operatorname{tr} A,

    [H89]_. Rademacher probes (:math:`z_j = \pm 1`) give the smallest variance among i.i.d. probes,
    :math:`\operatorname{Var}[z^\top A z] = 2 \sum_{i \ne j} A_{ij}^2`; Gaussian ones give
    :math:`2\|A\|_F^2`. The error falls like :math:`1/\sqrt N`.

    Parameters
    ----------
    matvec : callable or object with ``@``
        The operator (symmetric or not: only :math:`z^\top A z` is used).
    n : int
        Size of the operator.
    num_samples : int
        Number of probes :math:`N` (= products with :math:`A`).
    distribution : {"rademacher", "gaussian"}
        Distribution of the probe entries.
    generator : torch.Generator, optional
        Source of the probes, for repeatable estimates.
    dtype, device
        Of the probes (``dtype`` defaults to torch's default).
    return_samples : bool
        Also return the :math:`N` values :math:`z_i^\top A z_i` (for error bars: their standard
        deviation over :math:`\sqrt N` is the standard error).

    Returns
    -------
    Tensor, 0-d, or (Tensor, Tensor of shape (N,))
        The estimate, and the per-probe values when ``return_samples``.
    """
    n = check_count("n", n)
    num_samples = check_count("num_samples", num_samples)
    _check_distribution(distribution)
    dtype = _resolve_dtype(dtype)
    op = _operator(matvec)
    samples = []
    for _ in range(num_samples):
        z = _probe(n, distribution, generator, dtype, device)  # (n,)
        samples.append(torch.dot(z, op(z)))
    samples = torch.stack(samples)  # (N,)
    estimate = samples.mean()
    return (estimate, samples) if return_samples else estimate


def _apply_columns(op: MatVec, X: Tensor) -> Tensor:
    """:math:`A X` column by column, shape ``(n, c)``."""
    return torch.stack([op(x) for x in X.T], dim=1)  # (n, c)


def hutchpp_trace(matvec: Any, n: int, num_matvecs: int = 30, distribution: str = "rademacher",
                  generator: torch.Generator | None = None, *, dtype: torch.dtype | None = None,
                  device: torch.device | str = "cpu", return_samples: bool = False):
    r"""Hutch++ estimate of :math:`\operatorname{tr} A`: exact on a sketched subspace, Hutchinson on the rest.

    With :math:`m` products split in three (Algorithm 1 of [MMMW21]_): draw :math:`S \in
    \mathbb{R}^{n \times m/3}`, take an orthonormal basis :math:`Q` of :math:`AS`, and estimate

    .. math::

        \widehat{\operatorname{tr}}(A) = \operatorname{tr}(Q^\top A Q)
        + \frac{3}{m} \operatorname{tr}\bigl(G^\top (I - QQ^\top) A (I - QQ^\top) G\bigr),

    with a fresh :math:`G \in \mathbb{R}^{n \times m/3}`. The sketch captures the top eigenvalues,
    so only the small remainder is estimated stochastically: for positive semidefinite :math:`A` the
    error is :math:`O(\operatorname{tr}(A)/m)` instead of Hutchinson's :math:`O(\operatorname{tr}(A)
    /\sqrt m)`, and much less when :math:`A` is dominated by a few eigenvalues.

    Parameters
    ----------
    matvec : callable or object with ``@``
        The symmetric operator.
    n : int
        Size of the operator.
    num_matvecs : int
        Total products with :math:`A`, at least 3: ``num_matvecs // 3`` for :math:`AS` and for
        :math:`AQ`, the rest for the Hutchinson part.
    distribution, generator, dtype, device
        As in :func:`hutchinson_trace`.
    return_samples : bool
        Also return :math:`\operatorname{tr}(Q^\top A Q) + g_i^\top (I - QQ^\top) A (I - QQ^\top)
        g_i`, one value per Hutchinson probe: their mean is the estimate, their spread the error
        of the stochastic part.

    Returns
    -------
    Tensor, 0-d, or (Tensor, Tensor of shape (num_matvecs - 2 * (num_matvecs // 3),))
    """
    n = check_count("n", n)
    num_matvecs = check_count("num_matvecs", num_matvecs, minimum=3)
    _check_distribution(distribution)
    dtype = _resolve_dtype(dtype)
    op = _operator(matvec)
    c = num_matvecs // 3

    def probes(count: int) -> Tensor:
        return torch.stack([_probe(n, distribution, generator, dtype, device) for _ in range(count)],
                           dim=1)  # (n, count)

    S = probes(c)  # (n, c)
    Q, _ = torch.linalg.qr(_apply_columns(op, S))  # (n, c), orthonormal columns
    sketch_trace = torch.sum(Q * _apply_columns(op, Q))  # tr(Qᵀ A Q)
    G = probes(num_matvecs - 2 * c)  # (n, N)
    G = G - Q @ (Q.T @ G)  # (I − Q Qᵀ) G, (n, N)
    samples = sketch_trace + torch.sum(G * _apply_columns(op, G), dim=0)  # (N,)
    estimate = samples.mean()
    return (estimate, samples) if return_samples else estimate
