r"""Matrix functions behind Shampoo, SOAP and Muon: pure kernels, tensor in and tensor out.

=========================================  ===========================================================
:func:`matrix_inverse_root`                :math:`M^{-1/p}` of a symmetric PSD matrix (Shampoo's
                                           :math:`L^{-1/4}`, :math:`R^{-1/4}`)
:func:`newton_schulz`                      approximate orthogonal polar factor :math:`U V^\top` of
                                           :math:`G = U \Sigma V^\top` (Muon)
:func:`singular_value_map`                 what :func:`newton_schulz` does to each singular value:
                                           the scalar polynomial, iterated
:func:`eigenbasis`                         eigenvectors of a symmetric matrix, largest eigenvalue first
                                           (SOAP's first basis)
:func:`refresh_eigenbasis`                 one step of subspace iteration towards that basis (SOAP's
                                           cheap refresh)
=========================================  ===========================================================

Notation follows the course's notation page: :math:`G` is a gradient viewed as an
:math:`m \times n` matrix, :math:`L = \sum G G^\top` (:math:`m \times m`) and
:math:`R = \sum G^\top G` (:math:`n \times n`) are its Kronecker factors, :math:`Q` an orthogonal
eigenbasis. Inputs are never modified.

References
----------
.. [GKS] V. Gupta, T. Koren and Y. Singer, "Shampoo: Preconditioned stochastic tensor optimization",
   ICML 2018.
.. [ANIL] R. Anil, V. Gupta, T. Koren, K. Regan and Y. Singer, "Scalable second order optimization
   for deep learning", arXiv:2002.09018, 2020.
.. [SOAP] N. Vyas, D. Morwani, R. Zhao, I. Shapira, D. Brandfonbrener, L. Janson and S. Kakade,
   "SOAP: Improving and stabilizing Shampoo using Adam", arXiv:2409.11321, 2024.
.. [MUON] K. Jordan, Y. Jin, V. Boza, J. You, F. Cesista, L. Newhouse and J. Bernstein, "Muon: An
   optimizer for hidden layers in neural networks", https://kellerjordan.github.io/posts/muon/, 2024.
.. [BN] J. Bernstein and L. Newhouse, "Old optimizer, new norm: An anthology", arXiv:2409.20325, 2024.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence

import torch
from torch import Tensor

from ._validation import check_count, check_positive, check_square, check_tensor

#: Coefficients :math:`(a, b, c)` of Muon's quintic Newton–Schulz iteration [MUON]_.
MUON_COEFFICIENTS = (3.4445, -4.7750, 2.0315)

# How many times matrix_inverse_root multiplies eps by 10 before giving up (1e-12 reaches 1e+8).
_MAX_EPS_GROWTH = 20


def _check_symmetric(name: str, M: Tensor) -> None:
    # Tolerance sqrt(machine epsilon) of M's dtype, relative to ‖M‖_F: rounding in sums of G Gᵀ
    # stays far below it, a missing transpose or a non-symmetric matrix far above it.
    tol = math.sqrt(torch.finfo(M.dtype).eps)
    asym = torch.linalg.matrix_norm(M - M.mT)
    if bool(asym > tol * torch.linalg.matrix_norm(M)):
        raise ValueError(f"{name} must be symmetric: ‖{name} − {name}ᵀ‖_F / ‖{name}‖_F = "
                         f"{float(asym / torch.linalg.matrix_norm(M)):.1e} exceeds {tol:.1e}")


def matrix_inverse_root(M: Tensor, p: float, eps: float = 1e-12) -> Tensor:
    r"""Inverse :math:`p`-th root of a symmetric positive semi-definite matrix.

    With the eigendecomposition :math:`M = Q \operatorname{diag}(\lambda) Q^\top`,

    .. math::

        M^{-1/p} \approx Q \operatorname{diag}\bigl((\max(\lambda_i, 0) + \varepsilon)^{-1/p}\bigr) Q^\top .

    Shampoo preconditions a matrix gradient as :math:`L^{-1/4} G R^{-1/4}` (Algorithm 1 of [GKS]_,
    :math:`p = 4`) and a vector gradient with :math:`p = 2`; [ANIL]_ compute these roots with
    an eigendecomposition (or a coupled Newton iteration) every few hundred steps. Clamping at 0
    removes the small negative eigenvalues that rounding gives a rank-deficient :math:`M`; the
    :math:`\varepsilon` keeps the root finite on the null space.

    The decomposition runs in float64 whatever ``M``'s dtype and the result is cast back:
    ``eigh``'s error is relative to the largest eigenvalue, so in float32 the smallest eigenvalues,
    which the negative root amplifies most, would be mostly rounding.

    Parameters
    ----------
    M : Tensor, shape (n, n)
        Symmetric positive semi-definite matrix; symmetry is checked to a relative tolerance of
        :math:`\sqrt{\epsilon_\text{mach}}` of its dtype.
    p : float
        Order of the root, positive (usually 2 or 4).
    eps : float
        :math:`\varepsilon > 0`, added to the clamped eigenvalues (default 1e-12, as in [ANIL]_).

    Returns
    -------
    Tensor, shape (n, n)
        :math:`M^{-1/p}`, symmetric, with ``M``'s dtype and device.

    Raises
    ------
    ValueError
        If ``M`` is not a finite, square, symmetric matrix, or ``p`` or ``eps`` is not positive.

    Warns
    -----
    RuntimeWarning
        Once per call, if the decomposition fails or the root is not finite in ``M``'s dtype
        (e.g. :math:`\varepsilon^{-1/p}` overflows float16); ``eps`` is then multiplied by 10
        (and added to the diagonal before decomposing) until the result is finite.
    """
    check_square("M", M)
    p = check_positive("p", p)
    eps = check_positive("eps", eps)
    _check_symmetric("M", M)
    return _inverse_root(M, p, eps)


def _inverse_root(M: Tensor, p: float, eps: float) -> Tensor:
    """:func:`matrix_inverse_root` without the argument checks (the optimizers' hot path)."""
    M64 = M.to(torch.float64)                                    # (n, n)
    M64 = 0.5 * (M64 + M64.mT)                                   # eigh reads one triangle: make both agree
    eye = torch.eye(M.shape[0], dtype=torch.float64, device=M.device)
    shift = 0.0
    for attempt in range(_MAX_EPS_GROWTH + 1):
        try:
            lam, Q = torch.linalg.eigh(M64 + shift * eye)        # (n,), (n, n)
        except torch.linalg.LinAlgError:
            lam = None
        if lam is not None:
            root = ((Q * (lam.clamp(min=0) + eps).pow(-1.0 / p)) @ Q.mT).to(M.dtype)  # (n, n)
            if bool(torch.isfinite(root).all()):
                return root
        if attempt == 0:
            if not bool(torch.isfinite(M64).all()):
                raise ValueError(f"the {tuple(M.shape)} matrix contains NaN or infinite values (for an "
                                 "optimizer's factor: the iterates diverged; lower the learning rate)")
            warnings.warn(f"matrix_inverse_root: the root of a {tuple(M.shape)} {M.dtype} matrix is not "
                          f"finite with eps = {eps:.1e}; increasing eps tenfold until it is",
                          RuntimeWarning, stacklevel=3)
        eps *= 10.0
        shift = eps
    raise RuntimeError(f"matrix_inverse_root: no finite root even with eps = {eps:.1e}")


def newton_schulz(G: Tensor, steps: int = 5, coefficients: Sequence[float] = MUON_COEFFICIENTS,
                  eps: float = 1e-7) -> Tensor:
    r"""Approximate the orthogonal polar factor :math:`U V^\top` of :math:`G = U \Sigma V^\top`.

    Start from :math:`X_0 = G / (\|G\|_F + \varepsilon)`, whose singular values lie in
    :math:`[0, 1]`, and iterate the odd matrix polynomial

    .. math::

        A_k = X_k X_k^\top, \qquad X_{k+1} = a X_k + (b A_k + c A_k^2)\, X_k ,

    which maps every singular value through :math:`\phi(\sigma) = a\sigma + b\sigma^3 + c\sigma^5`
    and leaves the singular vectors alone. Muon's coefficients :math:`(3.4445, -4.7750, 2.0315)`
    [MUON]_ were tuned for a large slope :math:`\phi'(0) = a` so that small singular values grow fast;
    the price is that after five steps the singular values of :math:`G / \|G\|_F` from about 0.005 up
    land in about :math:`[0.68, 1.2]` instead of converging to 1 (:math:`U S' V^\top` with
    :math:`S' \approx I`), which does not hurt training; much smaller ones stay below 0.68.
    :math:`U V^\top` is the steepest-descent direction under the spectral norm [BN]_.

    A tall :math:`G` (more rows than columns) is transposed first, so the Gram matrix
    :math:`A_k` is the smaller of the two (:math:`r \times r`, :math:`r = \min(m, n)`); the cost is
    :math:`\text{steps} \cdot (4 r^2 c + 2 r^3)` flops with :math:`c = \max(m, n)`.

    Parameters
    ----------
    G : Tensor, shape (m, n)
        The matrix to orthogonalize (for Muon: the momentum of a weight's gradient). Computed in
        its dtype; pass ``G.bfloat16()`` for the fast low-precision variant Muon uses on GPUs.
    steps : int
        Number of iterations, :math:`\ge 0` (default 5).
    coefficients : (a, b, c)
        Polynomial coefficients (default :data:`MUON_COEFFICIENTS`). ``(1.5, -0.5, 0)`` is the
        classical cubic Newton–Schulz iteration, which converges to :math:`U V^\top` but slowly.
    eps : float
        :math:`\varepsilon \ge 0` in the normalization, so that :math:`G = 0` gives 0 (default 1e-7).

    Returns
    -------
    Tensor, shape (m, n)
        :math:`X_{\text{steps}}`, with ``G``'s dtype and device.

    Raises
    ------
    ValueError
        If ``G`` is not a finite 2-D floating tensor, ``steps`` is not a non-negative integer,
        ``coefficients`` does not hold three numbers or ``eps`` is negative.
    """
    check_tensor("G", G, ndim=2)
    check_count("steps", steps, minimum=0)
    if len(coefficients) != 3:
        raise ValueError(f"coefficients must be three numbers (a, b, c), got {coefficients!r}")
    eps = check_positive("eps", eps, allow_zero=True)
    return _newton_schulz(G, steps, tuple(float(v) for v in coefficients), eps)


def _newton_schulz(G: Tensor, steps: int, coefficients: tuple[float, float, float], eps: float) -> Tensor:
    """:func:`newton_schulz` without the argument checks (no host synchronisation: Muon's hot path)."""
    a, b, c = coefficients
    tall = G.shape[0] > G.shape[1]
    X = G.mT if tall else G                                      # (r, c), r <= c
    X = X / (torch.linalg.matrix_norm(X) + eps)                  # ‖X‖₂ <= ‖X‖_F <= 1
    for _ in range(steps):
        A = X @ X.mT                                             # (r, r)
        B = torch.addmm(A, A, A, beta=b, alpha=c)                # (r, r) = bA + cA²
        X = torch.addmm(X, B, X, beta=a)                         # (r, c) = aX + BX
    return X.mT if tall else X                                   # (m, n)


def singular_value_map(sigma: Tensor, steps: int = 5, coefficients: Sequence[float] = MUON_COEFFICIENTS) -> Tensor:
    r"""The map :math:`\sigma \mapsto \phi^{\circ k}(\sigma)` that :func:`newton_schulz` applies to singular values.

    With :math:`\phi(\sigma) = a\sigma + b\sigma^3 + c\sigma^5` and :math:`X_0 = U \Sigma_0 V^\top`,
    every iterate is :math:`X_k = U \phi^{\circ k}(\Sigma_0) V^\top` because
    :math:`(X X^\top)^j X = U \Sigma^{2j+1} V^\top`; so the singular values of
    ``newton_schulz(G, steps, coefficients, eps)`` are ``singular_value_map(σ / (‖G‖_F + eps), steps,
    coefficients)`` for the singular values :math:`\sigma` of :math:`G` ([MUON]_). The fixed band
    of Muon's coefficients is read off this map: after five steps every input in
    :math:`[0.005, 1]` lands in :math:`[0.68, 1.16]`, while inputs below about :math:`0.0015` stay
    below 0.68 (:math:`\phi^{\circ 5}(\sigma) \approx a^5 \sigma \approx 484\, \sigma` there).

    Parameters
    ----------
    sigma : Tensor
        Values in :math:`[0, 1]` (any shape), e.g. normalized singular values.
    steps : int
        Number of iterations :math:`k \ge 0` (default 5).
    coefficients : (a, b, c)
        As in :func:`newton_schulz`.

    Returns
    -------
    Tensor
        :math:`\phi^{\circ k}(\sigma)`, elementwise, with ``sigma``'s shape and dtype.
    """
    check_tensor("sigma", sigma)
    check_count("steps", steps, minimum=0)
    if len(coefficients) != 3:
        raise ValueError(f"coefficients must be three numbers (a, b, c), got {coefficients!r}")
    a, b, c = (float(v) for v in coefficients)
    for _ in range(steps):
        s2 = sigma * sigma
        sigma = sigma * (a + s2 * (b + c * s2))
    return sigma


def eigenbasis(M: Tensor) -> Tensor:
    r"""Orthonormal eigenvectors of a symmetric matrix, columns ordered by decreasing eigenvalue.

    SOAP's first basis: :math:`Q_L` with :math:`L = Q_L \operatorname{diag}(\lambda) Q_L^\top`,
    :math:`\lambda_1 \ge \dots \ge \lambda_n` ([SOAP]_). The decomposition runs in
    float64, as in :func:`matrix_inverse_root`.

    Parameters
    ----------
    M : Tensor, shape (n, n)
        Symmetric matrix (for SOAP: a Kronecker factor :math:`L` or :math:`R`).

    Returns
    -------
    Tensor, shape (n, n)
        :math:`Q`, orthogonal, with ``M``'s dtype and device.
    """
    check_square("M", M)
    _check_symmetric("M", M)
    return _eigenbasis(M)


def _eigenbasis(M: Tensor) -> Tensor:
    M64 = M.to(torch.float64)                                    # (n, n)
    _, Q = torch.linalg.eigh(0.5 * (M64 + M64.mT))               # ascending eigenvalues
    return Q.flip(-1).to(M.dtype)                                # (n, n), descending


def refresh_eigenbasis(M: Tensor, Q: Tensor) -> tuple[Tensor, Tensor]:
    r"""One step of subspace (power) iteration that moves an eigenbasis estimate towards ``M``'s.

    Sort the columns of :math:`Q` by their Rayleigh quotients :math:`q_j^\top M q_j`, largest first,
    then orthonormalize :math:`M Q` by a QR decomposition:

    .. math::

        \pi = \operatorname{argsort}_{\downarrow} \operatorname{diag}(Q^\top M Q), \qquad
        Q_{+} R = M\, Q_{:, \pi} .

    This is SOAP's refresh ([SOAP]_): one matrix product and one QR,
    :math:`\approx 3.3 n^3` flops instead of an eigendecomposition, and column :math:`j` of
    :math:`Q_+` continues column :math:`\pi_j` of :math:`Q`, so per-coordinate statistics kept in
    the old basis can be permuted with :math:`\pi` and reused. Sorting first keeps the columns
    aligned with the eigenvalue order that subspace iteration converges to. Computed in float64.

    Parameters
    ----------
    M : Tensor, shape (n, n)
        Symmetric matrix.
    Q : Tensor, shape (n, n)
        Current orthogonal estimate of its eigenbasis.

    Returns
    -------
    Q_new : Tensor, shape (n, n)
        The refreshed orthogonal basis, with ``M``'s dtype and device.
    order : Tensor, shape (n,)
        :math:`\pi` (int64): column ``j`` of ``Q_new`` continues column ``order[j]`` of ``Q``.

    Raises
    ------
    ValueError
        If ``M`` is not symmetric, or ``Q`` is not a matrix of ``M``'s shape, dtype and device.
    """
    check_square("M", M)
    _check_symmetric("M", M)
    check_square("Q", Q, n=M.shape[0], like=M, like_name="M")
    return _refresh_eigenbasis(M, Q)


def _refresh_eigenbasis(M: Tensor, Q: Tensor) -> tuple[Tensor, Tensor]:
    M64, Q64 = M.to(torch.float64), Q.to(torch.float64)          # (n, n), (n, n)
    MQ = M64 @ Q64                                               # (n, n)
    rayleigh = (Q64 * MQ).sum(0)                                 # (n,) = diag(Qᵀ M Q)
    order = torch.argsort(rayleigh, descending=True)             # (n,)
    Q_new, _ = torch.linalg.qr(MQ[:, order])                     # (n, n): M Q_π = Q_new R
    return Q_new.to(M.dtype), order
