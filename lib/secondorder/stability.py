r"""Numerical safeguards for curvature matrices: a Cholesky factorization that repairs its input.

References
----------
.. [NW] J. Nocedal and S. J. Wright, *Numerical Optimization*, 2nd ed., Springer, 2006.
.. [Higham] N. J. Higham, *Accuracy and Stability of Numerical Algorithms*, 2nd ed., SIAM, 2002.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ._validation import check_positive, check_square


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
