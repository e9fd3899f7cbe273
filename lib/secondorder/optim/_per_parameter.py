"""The ``torch.optim`` step loop shared by the optimizers that update each parameter on its own."""

from __future__ import annotations

import torch
from torch import Tensor
from torch.optim import Optimizer


class PerParameterOptimizer(Optimizer):
    r"""Closure, state creation, step count and decoupled weight decay, written once.

    For every parameter with a gradient, ``step`` creates its state on first use
    (``state["step"] = 0``, then :meth:`_init_state`), counts the step, asks :meth:`_direction` for
    the update :math:`U` and its learning rate :math:`\eta_p`, and applies

    .. math:: p \leftarrow (1 - \eta\lambda)\, p - \eta_p\, U ,

    with :math:`\eta` = ``lr`` and :math:`\lambda` = ``weight_decay`` of the group (decoupled weight
    decay, as AdamW).
    """

    def _init_state(self, p: Tensor, state: dict, group: dict) -> None:
        raise NotImplementedError

    def _direction(self, p: Tensor, state: dict, group: dict) -> tuple[Tensor, float]:
        """Return the update for ``p`` (any shape with ``p``'s number of entries) and its learning rate."""
        raise NotImplementedError

    @torch.no_grad()
    def step(self, closure=None):
        """Perform one optimization step; ``closure`` re-evaluates the loss (optional)."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if not state:
                    state["step"] = 0
                    self._init_state(p, state, group)
                state["step"] += 1
                update, lr = self._direction(p, state, group)
                if group["weight_decay"]:
                    p.mul_(1 - group["lr"] * group["weight_decay"])
                p.add_(update.view_as(p), alpha=-lr)
        return loss
