"""A tiny tanh multilayer perceptron on the digits: the smallest non-convex network problem."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from secondorder.problems.base import ModelProblem, seeded_initialization
from secondorder.problems.classification import load_digits


def build_mlp(sizes: Sequence[int]) -> nn.Sequential:
    """``Linear → tanh → … → Linear`` through the layer widths ``sizes`` (input first, classes last)."""
    layers: list[nn.Module] = []
    for i, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
        if i > 0:
            layers.append(nn.Tanh())
        layers.append(nn.Linear(fan_in, fan_out))
    return nn.Sequential(*layers)


def cross_entropy_loss(model, batch: tuple[Tensor, Tensor]) -> Tensor:
    """Mean cross-entropy of ``model(inputs)`` (logits) against integer ``targets``."""
    inputs, targets = batch  # (B, d), (B,)
    return F.cross_entropy(model(inputs), targets)


def tiny_mlp(hidden: Sequence[int] = (32,), seed: int = 0, *, dtype: torch.dtype = torch.float64,
             device: torch.device | str = "cpu", init_dtype: torch.dtype = torch.float64) -> ModelProblem:
    r"""Build a ``64 → 32 → 10`` tanh network on :func:`~secondorder.problems.classification.load_digits`.

    .. math::

        f(x) = \frac1m \sum_{i=1}^m -\log \operatorname{softmax}\bigl(
               W_2 \tanh(W_1 a_i + b_1) + b_2\bigr)_{y_i},
        \qquad x = (\operatorname{vec} W_1, b_1, \operatorname{vec} W_2, b_2),

    over all 1797 images (pixels scaled to :math:`[0, 1]`), so ``f`` is deterministic and full-batch
    methods apply; :meth:`~secondorder.problems.base.ModelProblem.batches` draws minibatches of the
    same data. With one hidden layer of 32 units, ``n = 2410``: small enough for a dense Hessian,
    large enough to be non-convex (indefinite Hessian at ``x0``). ``x0`` is PyTorch's default
    ``nn.Linear`` initialization drawn with ``seed`` on the CPU in ``init_dtype``, so it is the same on
    every device and for every default dtype.

    Parameters
    ----------
    hidden : sequence of int
        Widths of the hidden layers.
    seed : int
        Seed of the initialization.
    dtype, device
        Where the model and data live.
    init_dtype : torch.dtype
        The dtype the initialization is drawn in; the model is cast to ``dtype`` afterwards.
    """
    hidden = tuple(hidden)
    if not all(isinstance(h, int) and h >= 1 for h in hidden):
        raise ValueError(f"hidden must be a sequence of positive integers, got {hidden!r}")
    X, y = load_digits(dtype, device)  # (m, 64), (m,)
    X = X / 16.0
    with seeded_initialization(seed, init_dtype):
        model = build_mlp((X.shape[1], *hidden, 10))
    model = model.to(dtype=dtype, device=device)
    widths = "-".join(str(s) for s in (X.shape[1], *hidden, 10))
    return ModelProblem(name=f"tiny_mlp({widths})", model=model, loss=cross_entropy_loss, batch=(X, y))
