r"""Sharpness and the edge of stability of gradient descent.

The *sharpness* of :math:`f` at :math:`x` is the largest Hessian eigenvalue
:math:`\lambda_{\max}(\nabla^2 f(x))`. Gradient descent :math:`x_{k+1} = x_k - \eta \nabla f(x_k)` on a
quadratic multiplies the error along an eigenvector of eigenvalue :math:`\lambda` by
:math:`1 - \eta\lambda`, so it converges only if every :math:`\lambda < 2/\eta`. On neural networks,
full-batch gradient descent first *sharpens* (:math:`\lambda_{\max}` grows) until it reaches about
:math:`2/\eta`, and then hovers there while the loss keeps decreasing, non-monotonically: the *edge
of stability* ([CKLKT21]_). The ratio :math:`\eta\,\lambda_{\max}/2` is therefore the number to log:
it approaches 1 long before anything diverges.

======================================  ==============================================================
:func:`sharpness`                       :math:`\lambda_{\max}` by power iteration on Hessian-vector products
:func:`gradient_descent_with_sharpness`  full-batch GD at step :math:`\eta`, logging loss and sharpness
:func:`squared_loss_mlp`                a small tanh network with squared loss on the digits: the
                                        setting of [CKLKT21]_ in miniature
======================================  ==============================================================

References
----------
.. [CKLKT21] J. M. Cohen, S. Kaur, Y. Li, J. Z. Kolter and A. Talwalkar, "Gradient descent on neural
   networks typically occurs at the edge of stability", ICLR 2021.
.. [P94] B. A. Pearlmutter, "Fast exact multiplication by the Hessian", *Neural Computation* 6(1), 1994.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from ._validation import check_positive, check_vector
from .curvature.hvp import hvp_at
from .matrix_functions import check_count
from .problems.base import ModelProblem, seeded_initialization
from .problems.classification import load_digits
from .problems.mlp import build_mlp
from .spectral import power_iteration


def sharpness(f: Callable[[Tensor], Tensor], x: Tensor, v0: Tensor | None = None, iters: int = 20,
              tol: float = 1e-3, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
    r"""The dominant Hessian eigenvalue :math:`\lambda` of ``f`` at ``x`` and its unit eigenvector.

    Power iteration (:func:`~secondorder.spectral.power_iteration`) on the operator
    :math:`v \mapsto \nabla^2 f(x)\, v`, each product by double backward ([P94]_): ``iters``
    Hessian-vector products at most, no Hessian. Power iteration finds the eigenvalue of largest
    *magnitude*; it is :math:`\lambda_{\max}` whenever the positive end of the spectrum dominates, as it
    does along gradient-descent trajectories of the networks in this course (a saddle with
    :math:`|\lambda_{\min}| > \lambda_{\max}` would return :math:`\lambda_{\min} < 0`; use
    :func:`~secondorder.spectral.lanczos` with ``which="LA"`` there). Passing the previous
    eigenvector as ``v0`` along a trajectory makes each new estimate converge in a few products.

    Parameters
    ----------
    f : callable
        ``x -> scalar``, twice differentiable.
    x : Tensor, shape (n,)
        Where the Hessian is taken. Not modified.
    v0 : Tensor, shape (n,), optional
        Starting vector (default: standard normal from ``generator``).
    iters, tol : int, float
        As in :func:`~secondorder.spectral.power_iteration`.
    generator : torch.Generator, optional
        Source of the random start.

    Returns
    -------
    (Tensor, Tensor)
        The eigenvalue (0-d) and the unit eigenvector (shape ``(n,)``).
    """
    check_vector("x", x, finite=False)
    if v0 is None:
        v0 = torch.randn(x.shape[0], generator=generator, dtype=x.dtype, device="cpu").to(x.device)
    check_vector("v0", v0, x.shape[0], like=x, like_name="x")
    point = x.detach().requires_grad_(True)
    return power_iteration(hvp_at(lambda: f(point), [point]), v0, iters=iters, tol=tol)


@dataclass
class SharpnessRun:
    r"""What :func:`gradient_descent_with_sharpness` records.

    Attributes
    ----------
    lr : float
        The step size :math:`\eta`.
    loss : Tensor, shape (T + 1,)
        :math:`f(x_k)` for :math:`k = 0, \dots, T` (a diverged run stops early: shorter).
    sharpness_steps : Tensor, shape (K,)
        The steps :math:`k` at which the sharpness was measured (every ``every`` steps).
    sharpness : Tensor, shape (K,)
        :math:`\lambda_{\max}(\nabla^2 f(x_k))` at those steps.
    x : Tensor, shape (n,)
        The last iterate.
    eigenvector : Tensor, shape (n,)
        The last top eigenvector (start of the next power iteration).
    diverged : bool
        The loss became non-finite or exceeded ``divergence`` times its initial value.
    hvps : int
        Hessian-vector products spent on the sharpness.
    """

    lr: float
    loss: Tensor
    sharpness_steps: Tensor
    sharpness: Tensor
    x: Tensor
    eigenvector: Tensor
    diverged: bool
    hvps: int

    @property
    def threshold(self) -> float:
        r"""The stability threshold :math:`2/\eta` of gradient descent."""
        return 2.0 / self.lr

    @property
    def ratio(self) -> Tensor:
        r""":math:`\eta\,\lambda_{\max}/2` at the measured steps: 1 is the edge of stability."""
        return self.sharpness * self.lr / 2.0


def gradient_descent_with_sharpness(f: Callable[[Tensor], Tensor], x0: Tensor, lr: float, steps: int,
                                    every: int = 10, power_iters: int = 20, power_tol: float = 1e-3,
                                    seed: int = 0, divergence: float = 1e3) -> SharpnessRun:
    r"""Full-batch gradient descent :math:`x_{k+1} = x_k - \eta \nabla f(x_k)`, logging loss and sharpness.

    Every ``every`` steps (and at step 0) the sharpness :math:`\lambda_{\max}(\nabla^2 f(x_k))` is
    measured by :func:`sharpness`, warm-started from the previous eigenvector, so its cost is a few
    Hessian-vector products per measurement. Comparing it with :math:`2/\eta` shows the two regimes of
    [CKLKT21]_: *progressive sharpening* while :math:`\lambda_{\max} < 2/\eta`, then the *edge of
    stability*, where :math:`\lambda_{\max}` hovers around :math:`2/\eta` and the loss decreases
    non-monotonically.

    Parameters
    ----------
    f : callable
        The full-batch loss ``x -> scalar``.
    x0 : Tensor, shape (n,)
        Start. Not modified.
    lr : float
        :math:`\eta > 0`.
    steps : int
        Number of gradient steps :math:`T`.
    every : int
        Measure the sharpness every this many steps.
    power_iters, power_tol : int, float
        Budget and relative tolerance of each power iteration.
    seed : int
        Seed of the first power-iteration start.
    divergence : float
        Stop when :math:`f(x_k)` exceeds this multiple of :math:`f(x_0)` (or is not finite).

    Returns
    -------
    SharpnessRun
    """
    check_vector("x0", x0)
    lr = check_positive("lr", lr)
    steps = check_count("steps", steps, 0)
    every = check_count("every", every, 1)
    power_iters = check_count("power_iters", power_iters, 1)
    power_tol = check_positive("power_tol", power_tol, allow_zero=True)
    divergence = check_positive("divergence", divergence)
    generator = torch.Generator().manual_seed(seed)
    v = torch.randn(x0.shape[0], generator=generator, dtype=x0.dtype).to(x0.device)  # (n,)
    hvps = 0

    def counted_hvp(point: Tensor) -> Callable[[Tensor], Tensor]:
        point = point.detach().requires_grad_(True)
        reused = hvp_at(lambda: f(point), [point])   # the gradient graph, built once per estimate

        def product(u: Tensor) -> Tensor:
            nonlocal hvps
            hvps += 1
            return reused(u)
        return product

    x = x0.detach().clone()
    losses, marks, values = [], [], []
    diverged = False
    for k in range(steps + 1):
        z = x.detach().requires_grad_(True)
        with torch.enable_grad():
            loss = f(z)
            (g,) = torch.autograd.grad(loss, z)
        value = float(loss.detach())  # one host read per step: the divergence test needs it
        losses.append(value)
        if not math.isfinite(value) or value > divergence * max(losses[0], 1e-300):
            diverged = True
            break
        if k % every == 0:
            lam, v = power_iteration(counted_hvp(x), v, iters=power_iters, tol=power_tol)
            marks.append(k)
            values.append(float(lam))
        if k < steps:
            x = x - lr * g
    dtype = torch.float64
    return SharpnessRun(lr=float(lr), loss=torch.tensor(losses, dtype=dtype),
                        sharpness_steps=torch.tensor(marks, dtype=torch.int64),
                        sharpness=torch.tensor(values, dtype=dtype), x=x, eigenvector=v, diverged=diverged,
                        hvps=hvps)


def squared_loss(model, batch: tuple[Tensor, Tensor]) -> Tensor:
    r"""Half the mean squared error summed over outputs, :math:`\frac{1}{2m}\sum_i \|h(a_i) - t_i\|^2`."""
    inputs, targets = batch  # (m, d), (m, c)
    return 0.5 * (model(inputs) - targets).pow(2).sum(dim=1).mean()


def squared_loss_mlp(num_examples: int = 500, hidden: Sequence[int] = (32,), seed: int = 0, *,
                     dtype: torch.dtype = torch.float64, device: torch.device | str = "cpu") -> ModelProblem:
    r"""A tanh network fitted to one-hot digit labels by squared loss: edge-of-stability in miniature.

    .. math::

        f(x) = \frac{1}{2m} \sum_{i=1}^{m} \bigl\| h_x(a_i) - e_{y_i} \bigr\|^2, \qquad
        h_x = \text{Linear} \circ \tanh \circ \dots \circ \text{Linear},

    on the first ``num_examples`` digits (pixels scaled to :math:`[0, 1]`): a small version of the
    squared-loss experiments of [CKLKT21]_ (fully connected networks on a 5000-image subset of
    CIFAR-10). With cross-entropy the sharpness also falls late in training, as the margins grow, which
    hides the plateau at :math:`2/\eta`. With the defaults ``n = 2410``; a gradient step costs about a
    millisecond on a CPU.

    Parameters
    ----------
    num_examples : int
        How many digits (1 to 1797) make up the full batch.
    hidden : sequence of int
        Hidden widths.
    seed : int
        Seed of the initialization: PyTorch's default ``nn.Linear`` one, drawn in float32 on the CPU
        whatever the default dtype, then converted, so ``x0`` is the same in every setting.
    dtype, device
        Where the model and data live.
    """
    num_examples = check_count("num_examples", num_examples, 1)
    hidden = tuple(hidden)
    if not all(isinstance(h, int) and not isinstance(h, bool) and h >= 1 for h in hidden):
        raise ValueError(f"hidden must be a sequence of positive integers, got {hidden!r}")
    X, y = load_digits(dtype, device)  # (1797, 64), (1797,)
    if num_examples > X.shape[0]:
        raise ValueError(f"num_examples must be at most {X.shape[0]}, got {num_examples}")
    X, y = X[:num_examples] / 16.0, y[:num_examples]  # (m, 64), (m,)
    targets = F.one_hot(y, 10).to(dtype)  # (m, 10)
    # The same x0 whatever the caller's default dtype: drawn in float32, the point section 05's
    # edge-of-stability runs start from.
    with seeded_initialization(seed, torch.float32):
        model = build_mlp((X.shape[1], *hidden, 10))
    model = model.to(dtype=dtype, device=device)
    widths = "-".join(str(s) for s in (X.shape[1], *hidden, 10))
    return ModelProblem(name=f"squared_loss_mlp({widths}, m={num_examples})", model=model, loss=squared_loss,
                        batch=(X, targets))


__all__ = ["SharpnessRun", "gradient_descent_with_sharpness", "sharpness", "squared_loss", "squared_loss_mlp"]
