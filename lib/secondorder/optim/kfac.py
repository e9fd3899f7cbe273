r"""K-FAC for the ``nn.Linear`` layers of a model, as a ``torch.optim`` optimizer.

The optimizer only wires state; the mathematics lives in the kernels of :mod:`secondorder.kfac`
(:func:`~secondorder.kfac.kfac_factors`, :func:`~secondorder.kfac.kfac_precondition_eigh`, ...).
A typical loop, with the true Fisher (labels sampled from the model's own predictions)::

    optimizer = KFAC(model, lr=0.05)
    for inputs, targets in batches:
        optimizer.zero_grad()
        logits = model(inputs)              # hooks record every Linear's input a and output z
        optimizer.update_factors(logits)    # sample y ~ p(y | logits), update A and G
        F.cross_entropy(logits, targets).backward()
        optimizer.step()

``update_factors`` may be called on only some iterations (every few steps, say); ``step`` then
reuses the running factors. Call it between the forward and the backward: it backpropagates
through the same graph (keeping it for your backward) but writes no ``.grad``. The hooks keep
each recorded activation until the next ``update_factors`` or ``step``, so run evaluation forwards
under ``torch.no_grad()`` (they are then not recorded).

References
----------
.. [MG15] J. Martens and R. Grosse, "Optimizing neural networks with Kronecker-factored approximate
   curvature", *ICML* 2015.
.. [BGM17] J. Ba, R. Grosse and J. Martens, "Distributed second-order optimization using
   Kronecker-factored approximations", *ICLR* 2017.
.. [KB15] D. P. Kingma and J. Ba, "Adam: a method for stochastic optimization", *ICLR* 2015.
"""

from __future__ import annotations

import functools
import weakref
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from secondorder._validation import check_positive
from secondorder.kfac import _factor_eigh, _factors, _precondition_eigh, _running_average, append_ones

LIKELIHOODS = ("categorical", "gaussian")
FALLBACKS = ("adam", "sgd")


def sample_targets(output: Tensor, likelihood: str = "categorical",
                   generator: torch.Generator | None = None) -> Tensor:
    r"""Draw targets from the model's predictive distribution :math:`y \sim p(y \mid \text{output})`.

    ``"categorical"``: ``output`` holds logits of shape ``(..., C)``; returns class indices
    ``(...,)`` drawn from :math:`\operatorname{softmax}`. ``"gaussian"``: returns
    ``output + noise`` with standard normal noise, the model behind the loss
    :math:`\tfrac12 \lVert f - y \rVert^2`. ``generator`` must live on ``output``'s device.
    """
    out = output.detach()
    if likelihood == "categorical":
        probs = out.reshape(-1, out.shape[-1]).softmax(dim=-1)              # (N, C)
        return torch.multinomial(probs, 1, generator=generator).view(out.shape[:-1])  # (...,)
    noise = torch.randn(out.shape, generator=generator, dtype=out.dtype, device=out.device)
    return out + noise                                                       # (..., C)


def summed_nll(output: Tensor, targets: Tensor, likelihood: str = "categorical") -> Tensor:
    r"""Negative log-likelihood summed (not averaged) over all examples and positions.

    Summing makes the gradient at a layer output the per-example :math:`g_n` that
    :func:`~secondorder.kfac.kfac_factors` expects, with no rescaling by the batch size.
    """
    if likelihood == "categorical":
        return F.cross_entropy(output.reshape(-1, output.shape[-1]), targets.reshape(-1), reduction="sum")
    return 0.5 * (output - targets).square().sum()


class KFAC(torch.optim.Optimizer):
    r"""Kronecker-factored natural gradient for ``nn.Linear`` layers; Adam or SGD for the rest.

    For every ``nn.Linear`` with input :math:`a` and weight :math:`W` (bias :math:`b` folded in as an
    extra input column of ones, so :math:`[W\ b]` is one matrix), the step is

    .. math::

        \Delta = (G + \sqrt\lambda I)^{-1}\, \nabla_{[W\,b]} L\, (A + \sqrt\lambda I)^{-1},
        \qquad [W\ b] \leftarrow [W\ b] - \eta\, \nu\, \Delta ,

    with running averages of the factors :math:`A, G` (:func:`~secondorder.kfac.running_average`,
    Section 5 of [MG15]_), factored Tikhonov damping :math:`\lambda` (Section 6.3 of [MG15]_,
    :math:`\pi = 1`), and :math:`\nu = 1` unless KL clipping is on. The factors' eigendecompositions
    are recomputed every ``inv_period`` steps of each layer and applied with
    :func:`~secondorder.kfac.kfac_precondition_eigh` in between, so a new ``damping`` takes effect
    at once. Inputs with leading dimensions ``(B, T, d_in)`` (sequences) contribute one row per
    position (the "expand" setting for weight sharing).

    Parameters outside ``nn.Linear`` layers (embeddings, LayerNorm, convolutions) form a second
    parameter group updated by the fallback: Adam [KB15]_ (``"adam"``: bias-corrected moments with
    ``betas``, ``eps``) or SGD (``"sgd"``, with ``momentum``), with learning rate ``fallback_lr``;
    ``weight_decay`` is decoupled (applied to the parameters, not the gradient) in both groups.

    Parameters
    ----------
    model : nn.Module
        The model; hooks are registered on its ``nn.Linear`` layers (see :meth:`remove_hooks`).
    lr : float
        Learning rate :math:`\eta` of the K-FAC group, default 0.05 (stable on ``tiny_mlp`` with the
        default damping; larger steps want more damping or ``kl_clip``).
    damping : float
        :math:`\lambda > 0`, default 1e-3. Each factor gets :math:`\sqrt\lambda` on its diagonal.
    decay : float
        Factor decay :math:`\varepsilon \in [0, 1]`, default 0.95 (1 keeps the plain mean).
    inv_period : int
        Recompute the eigendecompositions every this many steps of a layer, default 10.
    momentum : float
        Heavy-ball momentum on the update :math:`\Delta` (K-FAC group and SGD fallback), default 0.
    weight_decay : float
        Decoupled weight decay: every parameter is multiplied by :math:`1 - \eta \cdot` this.
    kl_clip : float or None
        If set to :math:`\kappa`, scale all K-FAC updates by :math:`\nu = \min(1, \sqrt{\kappa / S})`,
        :math:`S = \eta^2 \sum_\ell \langle \Delta_\ell, \nabla_\ell L \rangle` [BGM17]_, which bounds
        the KL divergence the quadratic model predicts for the step.
    fallback : {"adam", "sgd"}
        Update rule for parameters that are not in an ``nn.Linear``.
    fallback_lr : float or None
        Learning rate of the fallback group; ``None`` uses ``lr``.
    betas, eps
        Adam's :math:`(\beta_1, \beta_2)` and :math:`\epsilon` for the fallback.

    Notes
    -----
    State on each ``nn.Linear`` weight (``self.state[layer.weight]``), for the bias-augmented layer
    of shape ``(d_out, d_in + 1)`` (``d_in`` without a bias):

    =====================  ===================================================================
    ``A``                  :math:`\bar A`, running average of :math:`a a^\top`, ``(d_in+1, d_in+1)``
    ``G``                  :math:`G`, running average of :math:`g g^\top`, ``(d_out, d_out)``
    ``factor_updates``     :math:`k`, the number of :meth:`update_factors` calls that reached it
    ``lambda_A``, ``Q_A``  :math:`A = Q_A \operatorname{diag}(\lambda_A) Q_A^\top`, from the last recompute
    ``lambda_G``, ``Q_G``  the same for :math:`G`
    ``step``               steps taken by the layer (drives ``inv_period``)
    =====================  ===================================================================

    ``momentum_buffer`` (every parameter, when ``momentum > 0``) and Adam's ``step``, ``exp_avg``
    (:math:`m`), ``exp_avg_sq`` (:math:`v`) for fallback parameters complete the state.
    """

    def __init__(self, model: nn.Module, lr: float = 0.05, damping: float = 1e-3, decay: float = 0.95,
                 inv_period: int = 10, momentum: float = 0.0, weight_decay: float = 0.0,
                 kl_clip: float | None = None, fallback: str = "adam", fallback_lr: float | None = None,
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8):
        defaults = _check_hyperparameters(lr=lr, damping=damping, decay=decay, inv_period=inv_period,
                                          momentum=momentum, weight_decay=weight_decay, kl_clip=kl_clip,
                                          fallback=fallback, betas=betas, eps=eps)
        self._layers = {name: m for name, m in model.named_modules()
                        if isinstance(m, nn.Linear) and m.weight.requires_grad}
        if not self._layers:
            raise ValueError("model must contain an nn.Linear layer with a trainable weight for KFAC")
        kfac_params = list({id(p): p for m in self._layers.values() for p in _layer_params(m)}.values())
        kfac_ids = {id(p) for p in kfac_params}
        others = [p for p in model.parameters() if p.requires_grad and id(p) not in kfac_ids]
        groups = [{"params": kfac_params, "kfac": True}]
        if others:
            lr_other = lr if fallback_lr is None else check_positive("fallback_lr", fallback_lr)
            groups.append({"params": others, "kfac": False, "lr": lr_other})
        super().__init__(groups, defaults)
        self._records: dict[nn.Module, list[tuple[Tensor, Tensor]]] = {}
        # The hooks hold the optimizer weakly: a replaced optimizer (a notebook cell run twice) is
        # collected instead of recording, and keeping graphs alive, forever.
        hook = functools.partial(_record_hook, weakref.ref(self))
        self._handles = [m.register_forward_hook(hook) for m in self._layers.values()]

    def _record(self, module: nn.Module, inputs: tuple[Tensor, ...], output: Tensor) -> None:
        # Only forwards that build a graph can feed update_factors; evaluation passes are skipped.
        if torch.is_grad_enabled() and output.requires_grad:
            self._records.setdefault(module, []).append((inputs[0].detach(), output))

    def remove_hooks(self) -> None:
        """Detach the optimizer's forward hooks from the model (it can then no longer update factors)."""
        for handle in self._handles:
            handle.remove()
        self._handles = []

    def update_factors(self, output: Tensor, targets: Tensor | None = None, *,
                       likelihood: str = "categorical", generator: torch.Generator | None = None) -> None:
        r"""Update the running factors :math:`A, G` of every ``nn.Linear`` that produced ``output``.

        Call it after the forward that produced ``output`` and before your ``backward``. It
        backpropagates :func:`summed_nll` of ``output`` to the recorded layer outputs only (no
        ``.grad`` is written, the graph is kept), forms the batch factors with
        :func:`~secondorder.kfac.kfac_factors` and folds them into the running averages.

        Parameters
        ----------
        output : Tensor, shape (..., C)
            The model's output (logits for ``"categorical"``), still attached to its graph.
        targets : Tensor or None
            ``None`` (default): draw targets with :func:`sample_targets`, which estimates the true
            Fisher (one Monte Carlo sample per example). The training targets instead give the
            empirical Fisher.
        likelihood : {"categorical", "gaussian"}
            Model behind the loss: cross-entropy on logits, or :math:`\tfrac12\lVert f - y\rVert^2`.
        generator : torch.Generator, optional
            Random source for the sampled targets, on ``output``'s device.
        """
        if likelihood not in LIKELIHOODS:
            raise ValueError(f"likelihood must be one of {LIKELIHOODS}, got {likelihood!r}")
        if not isinstance(output, Tensor) or output.ndim < 2 or not output.requires_grad:
            raise ValueError("output must be the model's output of shape (..., C), attached to the graph "
                             f"of the forward, got {_describe(output)}")
        records = list(self._records.items())  # [(module, [(a, z), ...]), ...]
        if not records:
            raise RuntimeError("update_factors found no recorded nn.Linear forward: call it after the "
                               "forward that produced output (with gradients enabled), before step()")
        with torch.enable_grad():
            y = sample_targets(output, likelihood, generator) if targets is None else targets
            loss = summed_nll(output, y, likelihood)
        outs = [z for _, recs in records for _, z in recs]
        grads = iter(torch.autograd.grad(loss, outs, retain_graph=True, allow_unused=True))
        self._records.clear()
        updated = False
        with torch.no_grad():
            for module, recs in records:
                # A None gradient marks a forward that did not lead to output (an earlier pass).
                pairs = [(a, g) for (a, _), g in zip(recs, [next(grads) for _ in recs]) if g is not None]
                if pairs:
                    self._accumulate(module, pairs)
                    updated = True
        if not updated:
            raise RuntimeError("output does not depend on any recorded nn.Linear output: pass the "
                               "output of the forward that ran just before update_factors")

    def _accumulate(self, module: nn.Linear, pairs: list[tuple[Tensor, Tensor]]) -> None:
        W = module.weight                                                    # (d_out, d_in)
        a = _rows([x for x, _ in pairs]).to(W.dtype)                        # (N, d_in)
        g = _rows([gz for _, gz in pairs]).to(W.dtype)                       # (N, d_out)
        if _bias(module) is not None:
            a = append_ones(a)                                               # (N, d_in + 1)
        A_batch, G_batch = _factors(a, g)                                    # (d_in+1)², (d_out)²
        state, group = self.state[W], self._group_of(W)
        k = state.get("factor_updates", 0) + 1
        state["A"] = A_batch if k == 1 else _running_average(state["A"], A_batch, group["decay"], k)
        state["G"] = G_batch if k == 1 else _running_average(state["G"], G_batch, group["decay"], k)
        state["factor_updates"] = k

    def kronecker_factors(self) -> dict[str, tuple[Tensor, Tensor]]:
        """Return the running factors ``{layer name: (A, G)}`` (the state's own tensors; do not modify)."""
        return {name: (self.state[m.weight]["A"], self.state[m.weight]["G"])
                for name, m in self._layers.items() if "A" in self.state[m.weight]}

    @torch.no_grad()
    def step(self, closure: Callable[[], Tensor] | None = None) -> Tensor | None:
        """Take one step: K-FAC on the ``nn.Linear`` group, the fallback on the rest.

        ``closure`` (optional) re-evaluates the model and returns the loss; it runs first, with
        gradients enabled.
        """
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            if group["kfac"]:
                self._kfac_step(group)
            else:
                self._fallback_step(group)
        self._records.clear()  # a forward not used by update_factors must not leak into the next one
        return loss

    def _kfac_step(self, group: dict) -> None:
        members = {id(p) for p in group["params"]}
        layers = [(name, m) for name, m in self._layers.items()
                  if id(m.weight) in members and m.weight.grad is not None]
        grads = [_layer_grad(m) for _, m in layers]                          # (d_out, d_in + 1) each
        deltas = [self._natural_gradient(name, m, grad, group) for (name, m), grad in zip(layers, grads)]
        if group["kl_clip"] is not None and deltas:
            nu = _kl_clip_scale(deltas, grads, group["lr"], group["kl_clip"])  # ()
            deltas = [nu * delta for delta in deltas]
        for (_, m), delta in zip(layers, deltas):
            d_in = m.weight.shape[1]
            self._apply(m.weight, delta[:, :d_in], group, group["momentum"])  # (d_out, d_in)
            if _bias(m) is not None:
                self._apply(m.bias, delta[:, d_in], group, group["momentum"])  # (d_out,)

    def _natural_gradient(self, name: str, module: nn.Linear, grad: Tensor, group: dict) -> Tensor:
        state = self.state[module.weight]
        if "A" not in state:
            raise RuntimeError(f"layer {name!r} has no Kronecker factors yet: call "
                               "optimizer.update_factors(output) between the forward and the backward")
        step = state.get("step", 0)
        if step % group["inv_period"] == 0 or "Q_A" not in state:
            state["lambda_A"], state["Q_A"] = _factor_eigh(state["A"])     # (d_in+1,), (d_in+1, d_in+1)
            state["lambda_G"], state["Q_G"] = _factor_eigh(state["G"])     # (d_out,), (d_out, d_out)
        state["step"] = step + 1
        return _precondition_eigh(grad, state["lambda_A"], state["Q_A"], state["lambda_G"], state["Q_G"],
                                  group["damping"])                          # (d_out, d_in + 1)

    def _fallback_step(self, group: dict) -> None:
        for p in group["params"]:
            if p.grad is None:
                continue
            if group["fallback"] == "adam":
                self._apply(p, self._adam_direction(p, group), group, momentum=0.0)
            else:
                self._apply(p, p.grad, group, group["momentum"])

    def _adam_direction(self, p: Tensor, group: dict) -> Tensor:
        state = self.state[p]
        if "exp_avg" not in state:
            state["step"] = 0
            state["exp_avg"] = torch.zeros_like(p)                           # m, like p
            state["exp_avg_sq"] = torch.zeros_like(p)                        # v, like p
        state["step"] += 1
        t, (beta1, beta2) = state["step"], group["betas"]
        m, v = state["exp_avg"], state["exp_avg_sq"]
        m.lerp_(p.grad, 1 - beta1)
        v.mul_(beta2).addcmul_(p.grad, p.grad, value=1 - beta2)
        v_hat = v / (1 - beta2 ** t)
        return (m / (1 - beta1 ** t)) / (v_hat.sqrt() + group["eps"])

    def _apply(self, p: Tensor, delta: Tensor, group: dict, momentum: float) -> None:
        """``p ← (1 − η·wd)·p − η·d`` with ``d = delta`` or its momentum buffer."""
        if group["weight_decay"]:
            p.mul_(1 - group["lr"] * group["weight_decay"])
        if momentum:
            state = self.state[p]
            if "momentum_buffer" not in state:
                state["momentum_buffer"] = delta.clone()
            else:
                state["momentum_buffer"].mul_(momentum).add_(delta)
            delta = state["momentum_buffer"]
        p.add_(delta, alpha=-group["lr"])

    def _group_of(self, p: Tensor) -> dict:
        return next(group for group in self.param_groups if any(q is p for q in group["params"]))


def _record_hook(optimizer_ref: weakref.ref, module: nn.Module, inputs: tuple[Tensor, ...],
                 output: Tensor) -> None:
    optimizer = optimizer_ref()
    if optimizer is not None:
        optimizer._record(module, inputs, output)


def _rows(tensors: list[Tensor]) -> Tensor:
    """Stack activations of shapes ``(..., d)`` from one or more calls into rows ``(N, d)``."""
    rows = [t.reshape(-1, t.shape[-1]) for t in tensors]
    return rows[0] if len(rows) == 1 else torch.cat(rows)


def _bias(module: nn.Linear) -> Tensor | None:
    """Return the layer's bias if it is trained (then the inputs get a column of ones), else ``None``."""
    return module.bias if module.bias is not None and module.bias.requires_grad else None


def _layer_params(module: nn.Linear) -> list[Tensor]:
    return [module.weight] + ([module.bias] if _bias(module) is not None else [])


def _layer_grad(module: nn.Linear) -> Tensor:
    """Return the weight gradient with the bias gradient appended as a column: ``(d_out, d_in + 1)``."""
    grad = module.weight.grad                                                # (d_out, d_in)
    b = _bias(module)
    if b is None:
        return grad
    grad_b = b.grad if b.grad is not None else torch.zeros_like(b)          # (d_out,)
    return torch.cat([grad, grad_b[:, None]], dim=1)                         # (d_out, d_in + 1)


def _kl_clip_scale(deltas: list[Tensor], grads: list[Tensor], lr: float, kl_clip: float) -> Tensor:
    r"""KL-clipping factor :math:`\nu = \min(1, \sqrt{\kappa / S})` of [BGM17]_ (see :class:`KFAC`)."""
    vg = torch.stack([(d * g).sum() for d, g in zip(deltas, grads)]).sum() * lr ** 2  # ()
    # A tensor expression avoids a host synchronisation; vg ≥ 0 because the preconditioner is PD.
    return torch.sqrt(kl_clip / vg.clamp_min(torch.finfo(vg.dtype).tiny)).clamp(max=1.0)


def _describe(x: object) -> str:
    if isinstance(x, Tensor):
        return f"shape {tuple(x.shape)}, requires_grad={x.requires_grad}"
    return type(x).__name__


def _check_hyperparameters(*, lr, damping, decay, inv_period, momentum, weight_decay, kl_clip, fallback,
                           betas, eps) -> dict:
    if isinstance(inv_period, bool) or not isinstance(inv_period, int) or inv_period < 1:
        raise ValueError(f"inv_period must be a positive integer, got {inv_period!r}")
    for name, value in (("decay", decay), ("momentum", momentum), ("betas[0]", betas[0]),
                        ("betas[1]", betas[1])):
        check_positive(name, value, allow_zero=True)
        if not (value <= 1 if name == "decay" else value < 1):
            raise ValueError(f"{name} must lie in [0, 1{']' if name == 'decay' else ')'}, got {value!r}")
    if fallback not in FALLBACKS:
        raise ValueError(f"fallback must be one of {FALLBACKS}, got {fallback!r}")
    return dict(lr=check_positive("lr", lr), damping=check_positive("damping", damping), decay=float(decay),
                inv_period=inv_period, momentum=float(momentum),
                weight_decay=check_positive("weight_decay", weight_decay, allow_zero=True),
                kl_clip=None if kl_clip is None else check_positive("kl_clip", kl_clip),
                fallback=fallback, betas=(float(betas[0]), float(betas[1])), eps=check_positive("eps", eps))
