r"""Kronecker-factored approximate curvature (K-FAC): pure kernels, tensor in and tensor out.

Notation (the course's notation page): a linear layer maps inputs :math:`a_n \in \mathbb{R}^{d_{in}}`
to outputs :math:`z_n = W a_n`, :math:`W \in \mathbb{R}^{d_{out} \times d_{in}}`; the training loss is
the mean :math:`L(W) = \frac1N \sum_n \ell_n(z_n)` of per-example losses, and
:math:`g_n = \partial \ell_n / \partial z_n` is the gradient of example :math:`n`'s *own* loss with
respect to the layer output. A bias is folded in by appending a 1 to every :math:`a_n`
(:func:`append_ones`) and the bias column to :math:`W`.

**Vectorization convention.** Parameters are flattened row by row, as ``W.flatten()`` does:
:math:`\operatorname{vec}(W)_{i d_{in} + j} = W_{ij}`. Then the per-example gradient
:math:`\nabla_W \ell_n = g_n a_n^\top` flattens to :math:`g_n \otimes a_n` and the Fisher block of the
layer is approximated by :math:`F \approx G \otimes A` (``torch.kron(G, A)``). Martens & Grosse
[MG15]_ stack columns instead, which gives the same matrix written as :math:`A \otimes G`.

Inputs are never modified.

References
----------
.. [MG15] J. Martens and R. Grosse, "Optimizing neural networks with Kronecker-factored approximate
   curvature", *ICML* 2015 (arXiv:1503.05671).
"""

from __future__ import annotations

import torch
from torch import Tensor

from ._validation import check_positive, check_square, check_tensor


def _factors(a: Tensor, g: Tensor) -> tuple[Tensor, Tensor]:
    """:func:`kfac_factors` without the argument checks (the optimizer calls it on every update)."""
    N = a.shape[0]
    A = a.T @ a / N                                           # (d_in, d_in)
    G = g.T @ g / N                                           # (d_out, d_out)
    return A, G


def kfac_factors(a: Tensor, g: Tensor) -> tuple[Tensor, Tensor]:
    r"""Compute the Kronecker factors of one linear layer's Fisher block from a batch.

    .. math::

        A = \frac1N \sum_{n=1}^N a_n a_n^\top = \frac1N a^\top a, \qquad
        G = \frac1N \sum_{n=1}^N g_n g_n^\top = \frac1N g^\top g,

    the factors :math:`\bar A` and :math:`G` of Section 3 of [MG15]_. The layer's block of the Fisher
    of the mean loss, :math:`F = \frac1N \sum_n \mathbb{E}_{y \sim p(y \mid x_n)}
    [\operatorname{vec}(\nabla_W \ell_n) \operatorname{vec}(\nabla_W \ell_n)^\top]
    = \frac1N \sum_n (g_n g_n^\top) \otimes (a_n a_n^\top)` (a mean of Kronecker products, row-major
    ``vec``), is approximated by the Kronecker product of the means, :math:`F \approx G \otimes A`
    (:func:`kfac_block`). For :math:`N = 1` the approximation is exact.

    **Scaling of g.** Each row :math:`g_n` must be the gradient of example :math:`n`'s own loss
    :math:`\ell_n`. Autograd on a *mean*-reduced loss :math:`\frac1N \sum_n \ell_n` delivers
    :math:`g_n / N` at the layer output, so multiply those rows by :math:`N` first (or backpropagate
    the *sum*-reduced loss). With labels :math:`y` sampled from the model's predictive distribution
    this estimates the true Fisher; with the training labels it gives the empirical Fisher.

    Parameters
    ----------
    a : Tensor, shape (N, d_in)
        Layer inputs, one row per example (append a column of ones for a bias, :func:`append_ones`).
    g : Tensor, shape (N, d_out)
        Per-example gradients of each example's loss with respect to the layer outputs.

    Returns
    -------
    A : Tensor, shape (d_in, d_in)
        Uncentred second moment of the inputs; symmetric positive semidefinite.
    G : Tensor, shape (d_out, d_out)
        Uncentred second moment of the output gradients; symmetric positive semidefinite.
    """
    check_tensor("a", a, ndim=2)
    check_tensor("g", g, ndim=2, like=a, like_name="a")
    if a.shape[0] != g.shape[0] or a.shape[0] == 0:
        raise ValueError(f"a and g must have the same positive number of rows (one per example), "
                         f"got a of shape {tuple(a.shape)} and g of shape {tuple(g.shape)}")
    return _factors(a, g)


def append_ones(a: Tensor) -> Tensor:
    """Append a column of ones to layer inputs ``a`` (N, d_in), giving (N, d_in + 1) for a bias."""
    check_tensor("a", a, ndim=2, finite=False)
    return torch.cat([a, a.new_ones(a.shape[0], 1)], dim=1)  # (N, d_in + 1)


def kfac_block(A: Tensor, G: Tensor) -> Tensor:
    r"""Build the dense K-FAC approximation :math:`G \otimes A` of a layer's Fisher block.

    Rows and columns follow the row-major flattening ``W.flatten()`` of the weight
    :math:`W \in \mathbb{R}^{d_{out} \times d_{in}}` (module docstring), so for any ``V`` of that shape
    ``kfac_block(A, G) @ V.flatten()`` equals ``(G @ V @ A).flatten()``. Meant for tests, small
    examples and heatmaps: the result has :math:`(d_{out} d_{in})^2` entries.

    Parameters
    ----------
    A : Tensor, shape (d_in, d_in)
    G : Tensor, shape (d_out, d_out)

    Returns
    -------
    Tensor, shape (d_out * d_in, d_out * d_in)
    """
    check_square("A", A)
    check_square("G", G, like=A, like_name="A")
    # torch.kron fails on some non-contiguous inputs (an einsum result, a transpose): copy those first.
    return torch.kron(G.contiguous(), A.contiguous())         # (d_out·d_in, d_out·d_in)


def _check_symmetric(name: str, M: Tensor) -> None:
    # A relative tolerance of sqrt(eps) accepts the rounding of a^T a computed by any BLAS.
    tol = torch.finfo(M.dtype).eps ** 0.5
    if not bool(torch.linalg.matrix_norm(M - M.mT) <= tol * torch.linalg.matrix_norm(M)):
        raise ValueError(f"{name} must be symmetric (a Kronecker factor is a second-moment matrix), "
                         f"got ‖{name} − {name}ᵀ‖ > {tol:.0e}·‖{name}‖ for shape {tuple(M.shape)}")


def _damped_cholesky(name: str, M: Tensor, shift: float) -> Tensor:
    eye = torch.eye(M.shape[0], dtype=M.dtype, device=M.device)
    L, info = torch.linalg.cholesky_ex(M + shift * eye)       # (d, d) lower triangular
    if bool(info != 0):
        raise ValueError(f"{name} + √damping·I is not positive definite (Cholesky failed): {name} must "
                         f"be positive semidefinite and damping > 0 when {name} is singular; "
                         f"got shape {tuple(M.shape)}, damping = {shift ** 2:.3g}")
    return L


def kfac_precondition(grad_W: Tensor, A: Tensor, G: Tensor, damping: float) -> Tensor:
    r"""Apply the inverse of the damped K-FAC block to a weight gradient.

    .. math::

        \Delta = (G + \sqrt{\lambda} I)^{-1}\, \nabla_W L\, (A + \sqrt{\lambda} I)^{-1},

    which is :math:`\bigl[(G + \sqrt\lambda I) \otimes (A + \sqrt\lambda I)\bigr]^{-1}
    \operatorname{vec}(\nabla_W L)` reshaped (row-major ``vec``), because
    :math:`(G \otimes A) \operatorname{vec}(V) = \operatorname{vec}(G V A)` for symmetric ``A``.
    Adding :math:`\sqrt\lambda I` to each factor is the factored Tikhonov damping of Section 6.3 of
    [MG15]_ with :math:`\pi = 1`: the product differs from :math:`G \otimes A + \lambda I` by the
    cross terms :math:`\sqrt\lambda (G \otimes I + I \otimes A)`. Both systems are solved with a
    Cholesky factorization; no inverse is formed. Cost :math:`O(d_{in}^3 + d_{out}^3)` instead of
    the :math:`O(d_{in}^3 d_{out}^3)` of the dense block.

    Parameters
    ----------
    grad_W : Tensor, shape (d_out, d_in)
        Gradient of the loss with respect to the weight (include the bias column if ``A`` does).
    A : Tensor, shape (d_in, d_in)
        Input factor, symmetric positive semidefinite.
    G : Tensor, shape (d_out, d_out)
        Output-gradient factor, symmetric positive semidefinite.
    damping : float
        :math:`\lambda \ge 0`; must be positive when a factor is singular.

    Returns
    -------
    Tensor, shape (d_out, d_in)
        :math:`\Delta`, the K-FAC (natural-gradient) direction; step with :math:`W - \eta \Delta`.

    Raises
    ------
    ValueError
        On mismatched shapes, dtypes or devices, a non-symmetric factor, negative damping, or a
        damped factor that is not positive definite.
    """
    check_tensor("grad_W", grad_W, ndim=2)
    d_out, d_in = grad_W.shape
    for name, M, d, side in (("A", A, d_in, "columns"), ("G", G, d_out, "rows")):
        check_tensor(name, M, ndim=2, like=grad_W, like_name="grad_W")
        if M.shape != (d, d):
            raise ValueError(f"{name} must be {d}×{d} to match the {d} {side} of grad_W "
                             f"(shape {tuple(grad_W.shape)}), got shape {tuple(M.shape)}")
        _check_symmetric(name, M)
    shift = check_positive("damping", damping, allow_zero=True) ** 0.5
    L_A = _damped_cholesky("A", A, shift)                     # (d_in, d_in)
    L_G = _damped_cholesky("G", G, shift)                     # (d_out, d_out)
    left = torch.cholesky_solve(grad_W, L_G)                  # (d_out, d_in) = (G + √λI)⁻¹ ∇W
    # Right division by the symmetric (A + √λI): solve on the transpose and transpose back.
    return torch.cholesky_solve(left.mT, L_A).mT              # (d_out, d_in)


def factor_eigh(M: Tensor) -> tuple[Tensor, Tensor]:
    r"""Eigendecomposition :math:`M = Q \operatorname{diag}(\lambda) Q^\top` of a Kronecker factor.

    Eigenvalues that rounding made slightly negative are clamped to 0, so a damped inverse
    :math:`(\lambda + \sqrt{\text{damping}})^{-1}` stays finite for any positive damping.

    Parameters
    ----------
    M : Tensor, shape (d, d)
        Symmetric positive semidefinite (``A`` or ``G``).

    Returns
    -------
    lam : Tensor, shape (d,)
        Eigenvalues in ascending order, all :math:`\ge 0`.
    Q : Tensor, shape (d, d)
        Orthonormal eigenvectors in the columns.
    """
    check_square("M", M)
    return _factor_eigh(M)


def _factor_eigh(M: Tensor) -> tuple[Tensor, Tensor]:
    lam, Q = torch.linalg.eigh(M)                             # (d,), (d, d)
    return lam.clamp_min(0), Q


def _precondition_eigh(grad_W: Tensor, lam_A: Tensor, Q_A: Tensor, lam_G: Tensor, Q_G: Tensor,
                       damping: float) -> Tensor:
    shift = damping ** 0.5
    V = Q_G.mT @ grad_W @ Q_A                                 # (d_out, d_in) in the eigenbases
    V = V / torch.outer(lam_G + shift, lam_A + shift)         # (d_out, d_in)
    return Q_G @ V @ Q_A.mT                                   # (d_out, d_in)


def kfac_precondition_eigh(grad_W: Tensor, lam_A: Tensor, Q_A: Tensor, lam_G: Tensor, Q_G: Tensor,
                           damping: float) -> Tensor:
    r""":func:`kfac_precondition` from cached eigendecompositions of the factors (:func:`factor_eigh`).

    With :math:`A = Q_A \Lambda_A Q_A^\top`, :math:`G = Q_G \Lambda_G Q_G^\top` and
    :math:`\pi = \sqrt{\lambda}`,

    .. math::

        \Delta = Q_G \Bigl[ \bigl(Q_G^\top \nabla_W L\, Q_A\bigr) \oslash
                 \bigl((\lambda_G + \pi)(\lambda_A + \pi)^\top\bigr) \Bigr] Q_A^\top ,

    where :math:`\oslash` divides elementwise. The result equals :func:`kfac_precondition`; the
    decompositions are reused over many steps and the damping may change between them at no cost,
    which is why the optimizer uses this form (cost per step :math:`O(d_{out} d_{in} (d_{out} + d_{in}))`).

    Parameters
    ----------
    grad_W : Tensor, shape (d_out, d_in)
    lam_A, Q_A : Tensor, shapes (d_in,), (d_in, d_in)
    lam_G, Q_G : Tensor, shapes (d_out,), (d_out, d_out)
    damping : float
        :math:`\lambda \ge 0`.

    Returns
    -------
    Tensor, shape (d_out, d_in)
    """
    check_tensor("grad_W", grad_W, ndim=2)
    d_out, d_in = grad_W.shape
    check_square("Q_A", Q_A, n=d_in, like=grad_W, like_name="grad_W")
    check_square("Q_G", Q_G, n=d_out, like=grad_W, like_name="grad_W")
    check_tensor("lam_A", lam_A, ndim=1, like=grad_W, like_name="grad_W")
    check_tensor("lam_G", lam_G, ndim=1, like=grad_W, like_name="grad_W")
    if lam_A.shape[0] != d_in or lam_G.shape[0] != d_out:
        raise ValueError(f"lam_A and lam_G must have lengths {d_in} and {d_out} to match grad_W "
                         f"(shape {tuple(grad_W.shape)}), got {lam_A.shape[0]} and {lam_G.shape[0]}")
    damping = check_positive("damping", damping, allow_zero=True)
    return _precondition_eigh(grad_W, lam_A, Q_A, lam_G, Q_G, damping)


def running_average(M: Tensor, M_batch: Tensor, decay: float, k: int) -> Tensor:
    r"""Exponential moving average of a Kronecker factor with the warm start of [MG15]_, Section 5.

    .. math::

        M_k = \varepsilon_k M_{k-1} + (1 - \varepsilon_k) M_{\text{batch}}, \qquad
        \varepsilon_k = \min(1 - 1/k,\ \text{decay}),

    so the first estimate (:math:`k = 1`) is the batch value, early ones are plain means of all
    batches so far, and later ones forget old batches at rate ``decay``. ``decay = 1`` keeps the
    plain mean of all batches.

    Parameters
    ----------
    M, M_batch : Tensor, same shape
        Previous average (ignored when ``k = 1``) and the new batch estimate.
    decay : float
        In :math:`[0, 1]`.
    k : int
        Number of this update, starting at 1.

    Returns
    -------
    Tensor
        A new tensor with the average.
    """
    check_tensor("M_batch", M_batch)
    check_tensor("M", M, like=M_batch, like_name="M_batch", finite=False)
    if M.shape != M_batch.shape:
        raise ValueError(f"M must have the shape of M_batch {tuple(M_batch.shape)}, got {tuple(M.shape)}")
    if not 0.0 <= float(decay) <= 1.0:
        raise ValueError(f"decay must lie in [0, 1], got {decay!r}")
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ValueError(f"k must be a positive integer (the number of this update), got {k!r}")
    return _running_average(M, M_batch, decay, k)


def _running_average(M: Tensor, M_batch: Tensor, decay: float, k: int) -> Tensor:
    eps = min(1.0 - 1.0 / k, decay)
    return torch.lerp(M_batch, M, eps)                        # eps·M + (1 − eps)·M_batch
