"""Regularized linear classifiers on two small real data sets: smooth, strictly convex, not quadratic.

The data files ship with the package (see ``data/README.md`` for provenance and licences); nothing is
downloaded.
"""

from __future__ import annotations

import functools
import gzip
import io
from dataclasses import dataclass
from importlib.resources import files

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from secondorder._validation import check_positive
from secondorder.problems.base import Problem

_DATA = files("secondorder.problems") / "data"

#: Class names of the breast cancer labels, in label order (0 = malignant, 1 = benign).
BREAST_CANCER_CLASSES = ("malignant", "benign")


@functools.cache
def _breast_cancer_table() -> tuple[np.ndarray, np.ndarray]:
    """Features (569, 30) and labels (569,) as read-only numpy arrays, parsed once."""
    header, body = (_DATA / "breast_cancer.csv").read_text().split("\n", 1)
    m, d, *names = header.split(",")
    if tuple(names) != BREAST_CANCER_CLASSES:
        raise RuntimeError(f"breast_cancer.csv: unexpected class names {names}")
    table = np.loadtxt(io.StringIO(body), delimiter=",", ndmin=2)  # (m, d + 1)
    if table.shape != (int(m), int(d) + 1):
        raise RuntimeError(f"breast_cancer.csv: expected {m} rows of {int(d) + 1} values, got {table.shape}")
    return _frozen(table[:, :-1]), _frozen(table[:, -1].astype(np.int64))


@functools.cache
def _digits_table() -> tuple[np.ndarray, np.ndarray]:
    """Pixels (1797, 64) in 0..16 and labels (1797,) as read-only numpy arrays, parsed once."""
    text = gzip.decompress((_DATA / "digits.csv.gz").read_bytes()).decode("ascii")
    table = np.loadtxt(io.StringIO(text), delimiter=",", dtype=np.int64, ndmin=2)  # (1797, 65)
    return _frozen(table[:, :-1]), _frozen(table[:, -1])


def _frozen(a: np.ndarray) -> np.ndarray:
    a = np.ascontiguousarray(a)
    a.flags.writeable = False
    return a


def _tensors(X: np.ndarray, y: np.ndarray, dtype: torch.dtype, device) -> tuple[Tensor, Tensor]:
    return (torch.tensor(X, dtype=dtype, device=device),
            torch.tensor(y, dtype=torch.int64, device=device))


def load_breast_cancer(dtype: torch.dtype = torch.float64,
                       device: torch.device | str = "cpu") -> tuple[Tensor, Tensor]:
    """Breast Cancer Wisconsin (Diagnostic): 569 tumours, 30 real features, 2 classes.

    Features describe cell nuclei in a digitized fine-needle aspirate image (mean, standard error
    and worst value of ten measurements). Source: W. H. Wolberg, W. N. Street and O. L. Mangasarian,
    UCI Machine Learning Repository, CC BY 4.0.

    Returns
    -------
    X : Tensor
        Raw (unscaled) features, shape ``(569, 30)``, in ``dtype`` on ``device``.
    y : Tensor
        Labels, int64, shape ``(569,)``: 0 = malignant (212), 1 = benign (357); see
        :data:`BREAST_CANCER_CLASSES`.
    """
    return _tensors(*_breast_cancer_table(), dtype, device)


def load_digits(dtype: torch.dtype = torch.float64,
                device: torch.device | str = "cpu") -> tuple[Tensor, Tensor]:
    """Optical Recognition of Handwritten Digits (test set): 1797 images of 8×8 pixels, 10 classes.

    Each pixel counts the set pixels in a 4×4 block of a 32×32 bitmap, so values are 0..16.
    Source: E. Alpaydin and C. Kaynak, UCI Machine Learning Repository, CC BY 4.0.

    Returns
    -------
    X : Tensor
        Pixel values 0..16, shape ``(1797, 64)`` (row-major 8×8 images), in ``dtype`` on ``device``.
    y : Tensor
        Digit labels 0..9, int64, shape ``(1797,)``.
    """
    return _tensors(*_digits_table(), dtype, device)


def standardize_columns(X: Tensor) -> Tensor:
    """Shift and scale each column to mean 0 and standard deviation 1 (constant columns: shift only)."""
    std = X.std(dim=0, correction=0)  # (d,)
    return (X - X.mean(dim=0)) / torch.where(std > 0, std, torch.ones_like(std))  # (m, d)


@dataclass(eq=False, repr=False, kw_only=True)
class LinearClassificationProblem(Problem):
    r"""A linear classifier's regularized training loss; ``x`` packs the weights, then the biases.

    Parameters
    ----------
    X : Tensor
        Preprocessed features, shape ``(m, d)``.
    y : Tensor
        Labels, int64, shape ``(m,)``.
    l2 : float
        Regularization strength :math:`\lambda`.
    num_classes : int
        2 for logistic regression (one weight vector), ``k`` for softmax regression.
    """

    X: Tensor
    y: Tensor
    l2: float
    num_classes: int

    def unpack(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Split ``x`` into weights and biases: ``(d,), ()`` for logistic, ``(k, d), (k,)`` for softmax."""
        d = self.X.shape[1]
        if self.num_classes == 2:
            return x[:d], x[d]  # (d,), ()
        k = self.num_classes
        return x[: k * d].view(k, d), x[k * d :]  # (k, d), (k,)


def logistic_regression(l2: float = 1e-3, standardize: bool = True, *, dtype: torch.dtype = torch.float64,
                        device: torch.device | str = "cpu") -> LinearClassificationProblem:
    r"""L2-regularized logistic regression on :func:`load_breast_cancer` (``n = 31``).

    With :math:`x = (w, b) \in \mathbb{R}^{30} \times \mathbb{R}`, margins :math:`z_i = w^\top a_i + b`
    and labels :math:`y_i \in \{0, 1\}` (1 = benign),

    .. math::

        f(x) = \frac1m \sum_{i=1}^m \bigl[\log(1 + e^{z_i}) - y_i z_i\bigr]
               + \frac{\lambda}{2} \lVert w \rVert^2,

    the mean binary cross-entropy; the bias is not penalized. The gradient and Hessian are
    :math:`\nabla f = \tfrac1m \tilde A^\top(\sigma(z) - y) + \lambda (w, 0)` and
    :math:`\nabla^2 f = \tfrac1m \tilde A^\top D \tilde A + \lambda \operatorname{diag}(I, 0)`
    with :math:`\tilde A = [A\ \mathbf 1]`, :math:`D = \operatorname{diag}(\sigma(z_i)(1-\sigma(z_i)))`
    (Hastie, Tibshirani & Friedman, *The Elements of Statistical Learning*, 2nd ed., §4.4.1).
    For ``l2 > 0`` the Hessian is positive definite everywhere, so the minimizer is unique; it has
    no closed form, so ``x_star`` and ``f_star`` are ``None`` (compute them with
    :func:`newton_reference`). ``x0`` is the origin, where :math:`f = \log 2`.

    Parameters
    ----------
    l2 : float
        :math:`\lambda \ge 0`. With 0 the data may be separable and the infimum not attained.
    standardize : bool
        Scale each feature to mean 0 and standard deviation 1 (the raw features span five orders of
        magnitude, which makes the Hessian badly conditioned).
    dtype, device
        Where every tensor of the problem lives.
    """
    l2 = check_positive("l2", l2, allow_zero=True)
    X, y = load_breast_cancer(dtype, device)  # (m, d), (m,)
    if standardize:
        X = standardize_columns(X)
    d = X.shape[1]
    target = y.to(dtype)  # (m,)

    def f(x: Tensor) -> Tensor:
        w, b = x[:d], x[d]  # (d,), ()
        z = X @ w + b  # (m,)
        return F.binary_cross_entropy_with_logits(z, target) + 0.5 * l2 * (w @ w)

    return LinearClassificationProblem(
        name=f"logistic_regression(l2={l2:g})", f=f, x0=torch.zeros(d + 1, dtype=dtype, device=device),
        X=X, y=y, l2=l2, num_classes=2)


def softmax_regression(l2: float = 1e-3, standardize: bool = False, *, dtype: torch.dtype = torch.float64,
                       device: torch.device | str = "cpu") -> LinearClassificationProblem:
    r"""L2-regularized multinomial logistic (softmax) regression on :func:`load_digits` (``n = 650``).

    With weights :math:`W \in \mathbb{R}^{10 \times 64}`, biases :math:`b \in \mathbb{R}^{10}`,
    :math:`x = (\operatorname{vec} W, b)` (``W`` flattened row by row) and logits
    :math:`z_i = W a_i + b`,

    .. math::

        f(x) = \frac1m \sum_{i=1}^m \Bigl[\log \sum_{c} e^{z_{ic}} - z_{i y_i}\Bigr]
               + \frac{\lambda}{2} \lVert x \rVert^2 .

    Here the biases are penalized too: adding the same constant to every :math:`b_c` leaves the
    cross-entropy unchanged, so without that term :math:`f` would be flat along
    :math:`(0, \mathbf 1)`. With ``l2 > 0``, :math:`f` is :math:`\lambda`-strongly convex; the
    minimizer has no closed form, so ``x_star`` and ``f_star`` are ``None`` (see
    :func:`newton_reference`). ``x0`` is the origin, where :math:`f = \log 10`.

    Parameters
    ----------
    l2 : float
        :math:`\lambda \ge 0`.
    standardize : bool
        Standardize each pixel instead of the default scaling of pixels to :math:`[0, 1]`.
    dtype, device
        Where every tensor of the problem lives.
    """
    l2 = check_positive("l2", l2, allow_zero=True)
    X, y = load_digits(dtype, device)  # (m, d), (m,)
    X = standardize_columns(X) if standardize else X / 16.0
    d, k = X.shape[1], 10

    def f(x: Tensor) -> Tensor:
        W, b = x[: k * d].view(k, d), x[k * d :]  # (k, d), (k,)
        logits = X @ W.T + b  # (m, k)
        return F.cross_entropy(logits, y) + 0.5 * l2 * (x @ x)

    return LinearClassificationProblem(
        name=f"softmax_regression(l2={l2:g})", f=f, x0=torch.zeros(k * d + k, dtype=dtype, device=device),
        X=X, y=y, l2=l2, num_classes=k)


def newton_reference(problem: Problem, tol: float = 1e-10, max_iter: int = 50) -> tuple[Tensor, float]:
    r"""Minimize a smooth strictly convex ``problem`` accurately with damped Newton: a test oracle.

    Iterates :math:`x_{k+1} = x_k - t_k \nabla^2 f(x_k)^{-1} \nabla f(x_k)` with the dense Hessian
    and Armijo backtracking (:math:`c_1 = 10^{-4}`, halving), Algorithm 3.1 with the Newton direction
    in Nocedal & Wright (2006). Near the solution the convergence is quadratic, so a few iterations
    reach machine precision in float64. Meant to supply ``x_star`` for tests and plots of
    :func:`logistic_regression` and :func:`softmax_regression`, not as a course method.

    Parameters
    ----------
    problem : Problem
        With a positive definite Hessian and ``n`` small enough for :meth:`Problem.hessian`.
    tol : float
        Stop when :math:`\lVert \nabla f(x) \rVert_\infty \le` ``tol``.
    max_iter : int
        Iteration limit.

    Returns
    -------
    x_star : Tensor
        Shape ``(n,)``.
    f_star : float
        :math:`f(x^\star)`.

    Raises
    ------
    RuntimeError
        If the gradient tolerance is not met within ``max_iter`` iterations.
    """
    x = problem.x0.clone()  # (n,)
    for _ in range(max_iter):
        fx, g = problem.value_and_grad(x)  # (), (n,)
        if float(g.abs().max()) <= tol:
            return x, float(fx)
        p = -torch.linalg.solve(problem.hessian(x), g)  # (n,) Newton direction
        slope = float(g @ p)
        t = 1.0
        while float(problem.f(x + t * p)) > float(fx) + 1e-4 * t * slope and t > 1e-12:
            t *= 0.5
        x = x + t * p
    raise RuntimeError(f"newton_reference: {problem.name} not solved to tol={tol} in {max_iter} iterations")
