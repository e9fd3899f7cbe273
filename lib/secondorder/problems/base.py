r"""Test problems as plain objects: an objective over a flat parameter vector and where to start.

Every optimizer in the course sees the same interface, whatever the problem: a function
:math:`f:\mathbb{R}^n \to \mathbb{R}` of one flat vector ``x`` of shape ``(n,)``, a starting point
``x0``, and where known the minimizer ``x_star`` and the optimal value ``f_star``. Neural-network
problems (:class:`ModelProblem`) keep an ``nn.Module`` beside ``f`` so that ``torch.optim`` code can
train the module directly while second-order code works on the flat vector; both see the same loss.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn
from torch.func import functional_call, grad, jacrev

from secondorder._validation import check_vector


@contextmanager
def seeded_initialization(seed: int, dtype: torch.dtype = torch.float64) -> Iterator[None]:
    """Draw a model's initial parameters from ``seed`` on the CPU's generator, in ``dtype``.

    Inside the block the global generator is seeded and the default dtype is ``dtype``; both are
    restored afterwards. So a problem starts from the same point whatever the caller's default dtype
    (``nn.Linear`` draws its weights in the default dtype, and a float32 draw is another sequence
    than a float64 one) and whatever the generator's state; the model is cast to the problem's
    dtype afterwards. The course's notebooks run with float64 as the default, hence the default.
    """
    if dtype not in (torch.float32, torch.float64):
        raise ValueError(f"init_dtype must be torch.float32 or torch.float64, got {dtype!r}")
    default = torch.get_default_dtype()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        torch.set_default_dtype(dtype)
        try:
            yield
        finally:
            torch.set_default_dtype(default)


#: Largest ``n`` for which :meth:`Problem.hessian` builds a dense matrix (5000² float64 is 200 MB).
MAX_DENSE_HESSIAN = 5000

Batch = tuple[Tensor, ...]


def _value_and_grad(fun: Callable[[Tensor], Tensor], x: Tensor) -> tuple[Tensor, Tensor]:
    """Evaluate ``fun`` and its gradient at a detached copy of ``x`` (``x`` itself is untouched)."""
    x = x.detach().requires_grad_(True)
    with torch.enable_grad():
        value = fun(x)  # ()
        (g,) = torch.autograd.grad(value, x)  # (n,)
    return value.detach(), g


@dataclass(eq=False, repr=False)
class Problem:
    r"""An unconstrained minimization problem :math:`\min_{x \in \mathbb{R}^n} f(x)`.

    Parameters
    ----------
    name : str
        Short description used in plots and tables, e.g. ``"rosenbrock(n=2)"``.
    f : callable
        Objective: maps a vector of shape ``(n,)`` to a scalar tensor, differentiable by autograd
        (and by ``torch.func``) with respect to that vector.
    x0 : Tensor
        Standard starting point, shape ``(n,)``. Its dtype and device are the problem's.
    x_star : Tensor or None
        A minimizer, shape ``(n,)``, when it is known in closed form; otherwise ``None``.
    f_star : float or None
        The optimal value :math:`f(x^\star)` when known; otherwise ``None``.
    """

    name: str
    f: Callable[[Tensor], Tensor]
    x0: Tensor
    x_star: Tensor | None = None
    f_star: float | None = None

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r}, n={self.n}, dtype={self.dtype}, device={self.device})"

    @property
    def n(self) -> int:
        """Number of variables."""
        return self.x0.numel()

    @property
    def dtype(self) -> torch.dtype:
        """Floating-point type of ``x0`` (and of every tensor the problem holds)."""
        return self.x0.dtype

    @property
    def device(self) -> torch.device:
        """Device of ``x0`` (and of every tensor the problem holds)."""
        return self.x0.device

    def value_and_grad(self, x: Tensor) -> tuple[Tensor, Tensor]:
        r"""Return :math:`f(x)` and :math:`\nabla f(x)`, both detached from any graph.

        ``x`` is not modified, and may or may not require grad.
        """
        check_vector("x", x, self.n, like=self.x0, like_name="x0", finite=False)
        return _value_and_grad(self.f, x)

    def grad(self, x: Tensor) -> Tensor:
        r"""Return :math:`\nabla f(x)`, shape ``(n,)``."""
        return self.value_and_grad(x)[1]

    def hessian(self, x: Tensor) -> Tensor:
        r"""Return the dense Hessian :math:`\nabla^2 f(x)`, shape ``(n, n)``.

        Built column by column with ``torch.func`` (reverse over reverse, vectorized in chunks), so
        it is meant for small problems and for checking curvature operators against a dense oracle.

        Raises
        ------
        ValueError
            If ``n`` exceeds :data:`MAX_DENSE_HESSIAN`; use Hessian-vector products instead.
        """
        return self._dense_hessian(self.f, x)

    def _dense_hessian(self, fun: Callable[[Tensor], Tensor], x: Tensor) -> Tensor:
        if self.n > MAX_DENSE_HESSIAN:
            raise ValueError(f"hessian: n = {self.n} is too large for a dense Hessian "
                             f"(limit {MAX_DENSE_HESSIAN}); use Hessian-vector products instead")
        check_vector("x", x, self.n, like=self.x0, like_name="x0", finite=False)
        H = jacrev(grad(fun), chunk_size=256)(x.detach())  # (n, n)
        # Reverse-over-reverse is symmetric only up to rounding; symmetry checks and Cholesky want it exact.
        return 0.5 * (H + H.T)


def flat_params(model: nn.Module) -> Tensor:
    """Concatenate ``model.parameters()`` into one detached vector, shape ``(n,)``.

    The order is that of ``model.named_parameters()``, the order :meth:`ModelProblem.unflatten`
    undoes.
    """
    return torch.cat([p.detach().reshape(-1) for p in model.parameters()])  # (n,)


class _WithParameters:
    """``module`` called with ``params`` in place of its own parameters (``functional_call``).

    Attribute access falls through to ``module``, so a loss written as ``loss(model, batch)`` for a
    real ``nn.Module`` works unchanged on a flat parameter vector.
    """

    def __init__(self, module: nn.Module, params: dict[str, Tensor]):
        self.module = module
        self.params = params

    def __call__(self, *args, **kwargs):
        return functional_call(self.module, self.params, args, kwargs)

    def __getattr__(self, name: str):
        if name in ("module", "params"):  # not yet set (copying, unpickling): avoid endless recursion
            raise AttributeError(name)
        return getattr(self.module, name)


@dataclass(eq=False, repr=False, kw_only=True)
class ModelProblem(Problem):
    r"""A neural-network training problem seen both as a module and as a function of a flat vector.

    :math:`f(x) = \ell(\text{model with parameters } x,\ \text{batch})`, where ``x`` concatenates
    the parameters in ``model.named_parameters()`` order and ``batch`` is a fixed batch (the whole
    data set where it is small). ``f`` is built with ``torch.func.functional_call``, so evaluating it
    never writes to the module; ``x0`` is the module's initial parameter vector.

    Parameters
    ----------
    name : str
        Short description.
    model : nn.Module
        The network, already on the problem's dtype and device.
    loss : callable
        ``loss(model, batch) -> scalar``; ``model`` is anything callable like the module.
    batch : tuple of Tensor
        The batch that defines ``f``.
    sample_batch : callable, optional
        ``sample_batch(batch_size, generator) -> batch`` draws a random minibatch. By default rows
        of ``batch`` are drawn without replacement (all its tensors share the first dimension).
    validation_batch : tuple of Tensor, optional
        Held-out data for :meth:`validation_loss`.
    x_star, f_star : None
        Unknown for neural networks; kept for the common interface.
    """

    f: Callable[[Tensor], Tensor] = field(init=False, repr=False)
    x0: Tensor = field(init=False, repr=False)
    model: nn.Module
    loss: Callable[[Callable, Batch], Tensor]
    batch: Batch
    sample_batch: Callable[[int, torch.Generator | None], Batch] | None = None
    validation_batch: Batch | None = None

    def __post_init__(self):
        self._names = [name for name, _ in self.model.named_parameters()]
        self._shapes = [p.shape for _, p in self.model.named_parameters()]
        self.x0 = flat_params(self.model)  # (n,)
        self.f = self.loss_at

    def unflatten(self, x: Tensor) -> dict[str, Tensor]:
        """Split a flat vector of shape ``(n,)`` into ``{name: tensor}`` with the parameters' shapes.

        The tensors are views of ``x``, so gradients flow back to ``x``.
        """
        check_vector("x", x, self.n, finite=False)
        sizes = [shape.numel() for shape in self._shapes]
        return {name: chunk.view(shape)
                for name, chunk, shape in zip(self._names, x.split(sizes), self._shapes, strict=True)}

    def bind(self, x: Tensor | nn.Module | None = None) -> Callable:
        """Return something callable like the model: the model itself, or the model at vector ``x``."""
        if x is None or isinstance(x, nn.Module):
            return self.model if x is None else x
        return _WithParameters(self.model, self.unflatten(x))

    def loss_at(self, x: Tensor | nn.Module | None = None, batch: Batch | None = None) -> Tensor:
        """Loss at parameters ``x`` (flat vector, module, or ``None`` for ``model``) on ``batch``.

        ``batch`` defaults to :attr:`batch`, so ``loss_at(x)`` is ``f(x)``.
        """
        return self.loss(self.bind(x), self.batch if batch is None else batch)

    def value_and_grad(self, x: Tensor, batch: Batch | None = None) -> tuple[Tensor, Tensor]:
        """Loss and its gradient with respect to the flat vector ``x``, on ``batch`` (default: ``f``)."""
        check_vector("x", x, self.n, like=self.x0, like_name="x0", finite=False)
        return _value_and_grad(lambda z: self.loss_at(z, batch), x)

    def hessian(self, x: Tensor, batch: Batch | None = None) -> Tensor:
        """Dense Hessian of the loss on ``batch`` (default: ``f``); small networks only."""
        return self._dense_hessian(lambda z: self.loss_at(z, batch), x)

    def load(self, x: Tensor) -> None:
        """Copy the flat vector ``x`` into the module's parameters."""
        with torch.no_grad():
            for p, value in zip(self.model.parameters(), self.unflatten(x).values(), strict=True):
                p.copy_(value)

    def batches(self, batch_size: int, generator: torch.Generator | None = None) -> Iterator[Batch]:
        """Endless iterator of random minibatches; ``generator`` (CPU) makes the sequence repeatable.

        Use ``for step, batch in zip(range(steps), problem.batches(32, g))``.
        """
        if batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
        sample = self.sample_batch or self._sample_rows
        while True:
            yield sample(batch_size, generator)

    def _sample_rows(self, batch_size: int, generator: torch.Generator | None) -> Batch:
        m = self.batch[0].shape[0]
        if batch_size > m:
            raise ValueError(f"batch_size must be at most the {m} examples, got {batch_size}")
        # Indices are drawn on the CPU generator's device and moved once: one small transfer per batch.
        idx = torch.randperm(m, generator=generator)[:batch_size].to(self.device)  # (B,)
        return tuple(t[idx] for t in self.batch)

    def validation_loss(self, x: Tensor | nn.Module | None = None) -> Tensor:
        """Loss on :attr:`validation_batch`, without building a graph.

        ``x`` is a flat vector, a module, or ``None`` for the current ``model``.
        """
        if self.validation_batch is None:
            raise ValueError(f"{self.name} has no validation_batch")
        with torch.no_grad():
            return self.loss_at(x, self.validation_batch)
