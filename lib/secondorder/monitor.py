r"""Watch the curvature a training loop meets: norms, secant pairs, sharpness, Fisher trace.

:class:`CurvatureMonitor` attaches to any ``torch`` training loop without changing it::

    monitor = CurvatureMonitor(model, loss_fn, lr=0.1, sharpness_every=10, batch=fixed_batch)
    for batch in batches:
        optimizer.zero_grad()
        loss = loss_fn(model, batch)
        loss.backward()
        optimizer.step()
        monitor.step(loss)          # after optimizer.step(), before the next zero_grad()
    monitor.plot()
    monitor.to_csv("run.csv")

Per recorded step :math:`k` (the step that moved :math:`\theta_k` to :math:`\theta_{k+1}` with the
gradient :math:`g_k = \nabla f(\theta_k)` of the batch) it stores, in the course's notation:

=======================  ==========================================================================
``step``                 :math:`k`, the index of the call to :meth:`CurvatureMonitor.step` (from 0)
``loss``                 the loss passed in, :math:`f(\theta_k)` on the batch
``grad_norm``            :math:`\|g_k\|`
``update_norm``          :math:`\|\theta_{k+1} - \theta_{\text{last record}}\|` (the step when every=1)
``param_norm``           :math:`\|\theta_{k+1}\|`
``update_ratio``         ``update_norm / param_norm``
``sy``                   :math:`s^\top y`, :math:`s = \theta_k - \theta_{k-1}`, :math:`y = g_k - g_{k-1}`
``sy_cos``               :math:`s^\top y / (\|s\|\,\|y\|)`: 1 when :math:`y \parallel s` (a secant pair
                         of a quadratic along an eigenvector), :math:`\le 0` when the curvature
                         condition fails
``y_over_s``             :math:`\|y\| / \|s\|`, the curvature seen along :math:`s` (between the
                         smallest and largest absolute eigenvalue of the Hessian averaged along
                         :math:`s`, since :math:`y = \int_0^1 \nabla^2 f(\theta_{k-1} + t s)\,dt\; s`)
``lr``                   the step size :math:`\eta`
``eos_threshold``        :math:`2/\eta`, the edge of stability
``sharpness``            top Hessian eigenvalue :math:`\lambda_{\max}` at :math:`\theta_{k+1}` on the
                         curvature batch (every ``sharpness_every`` steps, else NaN)
``sharpness_ratio``      :math:`\lambda_{\max}\,\eta / 2`; above 1 gradient descent is unstable
``fisher_trace``         :math:`\operatorname{tr} \hat F` of the empirical Fisher on the batch
                         (every ``fisher_every`` steps, else NaN)
=======================  ==========================================================================

Gradient descent with step :math:`\eta` on a quadratic diverges along every eigenvector with
:math:`\lambda > 2/\eta`; Cohen et al. [CKLKT21]_ found that full-batch training of networks drives
:math:`\lambda_{\max}` up to :math:`2/\eta` and then hovers there ("edge of stability"), which the
sharpness panel of :meth:`CurvatureMonitor.plot` shows against the :math:`2/\eta` line.

References
----------
.. [CKLKT21] J. Cohen, S. Kaur, Y. Li, J. Z. Kolter and A. Talwalkar, "Gradient descent on neural
   networks typically occurs at the edge of stability", ICLR 2021.
.. [KHB19] F. Kunstner, P. Hennig and L. Balles, "Limitations of the empirical Fisher approximation
   for natural gradient descent", NeurIPS 2019.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.func import functional_call, grad, jvp, vmap

from ._validation import check_count, check_positive
from .curvature.hvp import hvp_at
from .spectral import power_iteration

COLUMNS = ("step", "loss", "grad_norm", "update_norm", "param_norm", "update_ratio", "sy", "sy_cos",
           "y_over_s", "lr", "eos_threshold", "sharpness", "sharpness_ratio", "fisher_trace")
FISHER_METHODS = ("empirical", "hutchinson")
NAN = float("nan")

Batch = Any  # whatever loss_fn(model, batch) accepts; a tuple of tensors for the Fisher trace


def _flat(tensors: Sequence[Tensor]) -> Tensor:
    return torch.cat([t.detach().reshape(-1) for t in tensors])  # (n,)


def _parameter_hvp(loss_fn: Callable, model: nn.Module, params: Sequence[Tensor],
                   batch: Batch) -> Callable[[Tensor], Tensor]:
    r"""Hessian-vector products :math:`v \mapsto \nabla^2 f(\theta)\, v`, one backward pass each (:func:`hvp_at`)."""
    return hvp_at(lambda: loss_fn(model, batch), params)


class _Bound:
    """``module`` called with the tensors ``params`` in place of its own (``functional_call``)."""

    def __init__(self, module: nn.Module, params: dict[str, Tensor]):
        self.module, self.params = module, params

    def __call__(self, *args, **kwargs):
        return functional_call(self.module, self.params, args, kwargs)

    def __getattr__(self, name: str):
        return getattr(self.module, name)


class CurvatureMonitor:
    r"""Record loss, norms, secant-pair statistics, sharpness and Fisher trace during training.

    Cheap by default: with ``sharpness_every = fisher_every = 0`` a recorded step costs a few
    vector copies and norms and one host synchronisation; no extra forward or backward pass.

    Parameters
    ----------
    model : nn.Module
        The network being trained; its parameters with ``requires_grad`` form :math:`\theta`.
    loss_fn : callable, optional
        ``loss_fn(model, batch) -> scalar``, the training loss (e.g. ``ModelProblem.loss``). Needed
        only for sharpness and Fisher trace.
    batch : optional
        Default curvature batch for sharpness and Fisher trace; a fixed batch makes successive
        values comparable (as in [CKLKT21]_). :meth:`step` can pass another one. ``None`` is passed
        on to ``loss_fn`` as is (for full-batch objectives that ignore it); the Fisher trace needs a
        tuple of tensors.
    every : int
        Record a row every ``every`` calls of :meth:`step` (the first call is always recorded).
    sharpness_every : int
        Compute the sharpness every this many calls (a multiple of ``every``); 0 turns it off.
    fisher_every : int
        Compute the Fisher trace every this many calls (a multiple of ``every``); 0 turns it off.
    lr : float, optional
        Step size :math:`\eta` for the :math:`2/\eta` line. Default: read from ``optimizer``.
    optimizer : torch.optim.Optimizer, optional
        Source of the current ``lr`` (its first parameter group), so schedules are followed.
    power_iters, power_tol : int, float
        Budget and tolerance of :func:`~secondorder.spectral.power_iteration` per sharpness value;
        it starts from the previous eigenvector, so later calls converge in a few products.
    fisher : {"empirical", "hutchinson"}
        ``"empirical"`` gives :math:`\operatorname{tr}\hat F = \frac1B\sum_i \|\nabla \ell_i\|^2`
        exactly from per-example gradients (memory :math:`B \times n`); ``"hutchinson"`` estimates it
        as :math:`\frac1N\sum_j \frac1B\sum_i (\nabla \ell_i^\top z_j)^2` with ``fisher_samples``
        Rademacher probes, each one forward-mode pass over the batch (memory of a forward pass).
        This is the empirical Fisher (observed labels), not the Fisher of the model's predictive
        distribution; the two can differ widely [KHB19]_.
    fisher_samples : int
        Probes for ``fisher="hutchinson"``.
    seed : int
        Seed of the first power-iteration start and of the Fisher probes.

    Attributes
    ----------
    rows : list of dict
        One dict per recorded step with the keys in :data:`COLUMNS` (NaN where not computed).
    """

    def __init__(self, model: nn.Module, loss_fn: Callable | None = None, *, batch: Batch = None,
                 every: int = 1, sharpness_every: int = 0, fisher_every: int = 0,
                 lr: float | None = None, optimizer: torch.optim.Optimizer | None = None,
                 power_iters: int = 20, power_tol: float = 1e-3, fisher: str = "empirical",
                 fisher_samples: int = 1, seed: int = 0):
        if not isinstance(model, nn.Module):
            raise ValueError(f"model must be an nn.Module, got {type(model).__name__}")
        for name, value in (("every", every), ("sharpness_every", sharpness_every),
                            ("fisher_every", fisher_every), ("power_iters", power_iters),
                            ("fisher_samples", fisher_samples)):
            check_count(name, value, 1 if name in ("every", "power_iters", "fisher_samples") else 0)
        for name, value in (("sharpness_every", sharpness_every), ("fisher_every", fisher_every)):
            if value % every:
                raise ValueError(f"{name} = {value} must be a multiple of every = {every} "
                                 "(values are stored in the recorded rows)")
            if value and loss_fn is None:
                raise ValueError(f"{name} > 0 needs loss_fn to evaluate the loss on a batch")
        if fisher not in FISHER_METHODS:
            raise ValueError(f"fisher must be one of {FISHER_METHODS}, got {fisher!r}")
        if lr is not None:
            check_positive("lr", lr)
        self.model, self.loss_fn, self.batch, self.optimizer = model, loss_fn, batch, optimizer
        self.every, self.sharpness_every, self.fisher_every = every, sharpness_every, fisher_every
        self.lr, self.power_iters, self.power_tol = lr, power_iters, check_positive("power_tol", power_tol,
                                                                                allow_zero=True)
        self.fisher, self.fisher_samples = fisher, fisher_samples
        self.rows: list[dict] = []
        self._named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
        self._params = [p for _, p in self._named]
        if not self._params:
            raise ValueError("model has no parameters that require grad")
        self._generator = torch.Generator().manual_seed(seed)
        self._eigvec: Tensor | None = None  # warm start of the next power iteration, (n,)
        self._calls = 0
        theta0 = _flat(self._params).clone()  # (n,) θ_0, where the first gradient is evaluated
        self._points = {0: theta0}  # j -> θ_j, the last two kept
        self._grads: dict[int, Tensor] = {}  # j -> g_j, the last one kept
        self._record_point = theta0

    # ----------------------------------------------------------------------------------- recording
    def _current_lr(self, lr: float | None) -> float:
        if lr is not None:
            return check_positive("lr", lr)
        if self.optimizer is not None:
            return float(self.optimizer.param_groups[0]["lr"])
        return NAN if self.lr is None else float(self.lr)

    def _gradient(self) -> Tensor:
        grads = [p.grad for p in self._params]
        if all(g is None for g in grads):
            raise ValueError("no gradients found: call monitor.step(loss) after loss.backward() and "
                             "optimizer.step(), before the next optimizer.zero_grad()")
        return _flat([torch.zeros_like(p) if g is None else g for p, g in zip(self._params, grads)])

    def step(self, loss: Tensor | float, batch: Batch = None, lr: float | None = None) -> dict | None:
        r"""Record the training step that just happened; call it after ``optimizer.step()``.

        Parameters
        ----------
        loss : Tensor or float
            The loss whose gradient the optimizer used (:math:`f(\theta_k)` on the batch).
        batch : optional
            Curvature batch for this step's sharpness and Fisher trace; default: the constructor's.
        lr : float, optional
            Step size used, overriding the constructor's ``lr`` and ``optimizer``.

        Returns
        -------
        dict or None
            The new row when this call was recorded, else ``None``.
        """
        t, every = self._calls, self.every
        self._calls += 1
        due = (-t) % every  # calls until the next recorded one; 0 means this one
        if due > 2:  # neither recorded nor needed for the next row's secant pair
            return None
        theta = _flat(self._params)  # (n,) θ_{t+1}, after the optimizer's step
        g = self._gradient() if due <= 1 else None  # (n,) g_t, evaluated at θ_t
        row = self._record(t, loss, theta, g, batch, self._current_lr(lr)) if due == 0 else None
        # Keep θ_t, θ_{t+1} (x_{k-1}, x_k of the next secant pair) and g_t when it is g_{k-1}.
        self._points = {j: x for j, x in self._points.items() if j >= t} | {t + 1: theta}
        self._grads = {t: g} if (t + 1) % every == 0 else {}
        return row

    def _record(self, t: int, loss, theta: Tensor, g: Tensor, batch: Batch, lr: float) -> dict:
        loss = torch.as_tensor(loss).detach().reshape(()).to(dtype=theta.dtype, device=theta.device)
        step = theta - self._record_point  # (n,)
        values = [loss, torch.linalg.vector_norm(g), torch.linalg.vector_norm(step),
                  torch.linalg.vector_norm(theta)]
        have_pair = t - 1 in self._grads and t in self._points and t - 1 in self._points
        if have_pair:
            s = self._points[t] - self._points[t - 1]  # (n,) θ_t − θ_{t−1}
            y = g - self._grads[t - 1]  # (n,) g_t − g_{t−1}
            values += [torch.dot(s, y), torch.linalg.vector_norm(s), torch.linalg.vector_norm(y)]
        host = torch.stack(values).tolist()  # the one synchronisation of a cheap row
        loss_h, g_norm, u_norm, p_norm = host[:4]
        sy, s_norm, y_norm = host[4:] if have_pair else (NAN, NAN, NAN)
        row = dict.fromkeys(COLUMNS, NAN)
        row.update(step=t, loss=loss_h, grad_norm=g_norm, update_norm=u_norm, param_norm=p_norm,
                   update_ratio=u_norm / p_norm if p_norm > 0 else NAN, sy=sy,
                   sy_cos=sy / (s_norm * y_norm) if s_norm * y_norm > 0 else NAN,
                   y_over_s=y_norm / s_norm if s_norm > 0 else NAN,
                   lr=lr, eos_threshold=2.0 / lr if lr > 0 else NAN)
        batch = self.batch if batch is None else batch
        if self.sharpness_every and t % self.sharpness_every == 0:
            row["sharpness"] = self.sharpness(batch)
            row["sharpness_ratio"] = row["sharpness"] * lr / 2.0
        if self.fisher_every and t % self.fisher_every == 0:
            row["fisher_trace"] = self.fisher_trace(batch)
        self._record_point = theta
        self.rows.append(row)
        return row

    # ------------------------------------------------------------------------------------ curvature
    def sharpness(self, batch: Batch = None) -> float:
        r"""Top Hessian eigenvalue of ``loss_fn(model, batch)`` at the current parameters.

        Power iteration (:func:`~secondorder.spectral.power_iteration`) on double-backward
        Hessian-vector products, warm-started from the previous eigenvector. It returns the
        eigenvalue of largest magnitude with its sign; during training that is the top positive
        one unless negative curvature dominates (then the value is negative).
        """
        batch = self.batch if batch is None else batch
        hvp = _parameter_hvp(self.loss_fn, self.model, self._params, batch)
        if self._eigvec is None:
            v0 = torch.randn(sum(p.numel() for p in self._params), generator=self._generator,
                             dtype=torch.float64)  # CPU draw: the same start on every device
            v0 = v0.to(dtype=self._params[0].dtype, device=self._params[0].device)
        else:
            v0 = self._eigvec
        lam, self._eigvec = power_iteration(hvp, v0, iters=self.power_iters, tol=self.power_tol)
        return float(lam)

    def _per_example_losses(self, batch: Batch) -> Callable[[dict[str, Tensor]], Tensor]:
        """Map parameters ``{name: tensor}`` to the ``(B,)`` losses of the batch's examples."""
        if not (isinstance(batch, (tuple, list)) and batch and all(isinstance(t, Tensor) for t in batch)):
            raise ValueError("the Fisher trace needs a batch: a tuple of tensors sharing dimension 0, "
                             "passed to CurvatureMonitor(batch=...) or to step(batch=...)")

        def losses(params: dict[str, Tensor]) -> Tensor:
            return vmap(self._single_loss, in_dims=(None, 0))(params, tuple(batch))  # (B,)

        return losses

    def fisher_trace(self, batch: Batch = None) -> float:
        r"""Trace of the empirical Fisher :math:`\hat F = \frac1B \sum_i \nabla\ell_i \nabla\ell_i^\top`.

        ``fisher="empirical"``: per-example gradients by ``torch.func.vmap`` and
        :math:`\operatorname{tr}\hat F = \frac1B \sum_i \|\nabla\ell_i\|^2`. ``fisher="hutchinson"``:
        :math:`z^\top \hat F z = \frac1B \sum_i (\nabla\ell_i^\top z)^2`, where the :math:`B`
        directional derivatives come from one forward-mode pass (``torch.func.jvp``), averaged over
        ``fisher_samples`` Rademacher probes (Hutchinson's estimator, as in
        :func:`~secondorder.spectral.hutchinson_trace`).
        """
        batch = self.batch if batch is None else batch
        losses = self._per_example_losses(batch)
        params = {n: p.detach() for n, p in self._named}
        if self.fisher == "empirical":
            per_grads = vmap(grad(self._single_loss), in_dims=(None, 0))(params, tuple(batch))
            return float(sum(g.pow(2).sum() for g in per_grads.values()) / batch[0].shape[0])
        p0 = self._params[0]
        samples = []
        for _ in range(self.fisher_samples):
            # Rademacher probe z per parameter, drawn on the CPU: the same probes on every device.
            tangent = {n: torch.randint(0, 2, p.shape, generator=self._generator).mul_(2).sub_(1)
                       .to(dtype=p0.dtype, device=p0.device) for n, p in params.items()}
            _, directional = jvp(losses, (params,), (tangent,))  # (B,): ∇ℓ_iᵀ z
            samples.append(directional.pow(2).mean())  # zᵀ F̂ z
        return float(torch.stack(samples).mean())

    def _single_loss(self, params: dict[str, Tensor], example: tuple[Tensor, ...]) -> Tensor:
        """Loss of one example (tensors without their batch dimension) at parameters ``params``."""
        single = tuple(t.unsqueeze(0) for t in example)  # a batch of one
        return self.loss_fn(_Bound(self.model, params), single)

    # -------------------------------------------------------------------------------------- export
    def __len__(self) -> int:
        return len(self.rows)

    def column(self, name: str) -> list[float]:
        """All recorded values of one column, e.g. ``monitor.column("sharpness")``."""
        if name not in COLUMNS:
            raise ValueError(f"name must be one of {COLUMNS}, got {name!r}")
        return [row[name] for row in self.rows]

    def to_csv(self, path: str | Path) -> None:
        """Write the rows to ``path`` as CSV with a header line (NaN written as ``nan``)."""
        with open(path, "w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=COLUMNS)
            writer.writeheader()
            writer.writerows(self.rows)

    @staticmethod
    def read_csv(path: str | Path) -> list[dict]:
        """Read rows written by :meth:`to_csv` back (``step`` as int, the rest as float)."""
        with open(path, newline="") as fh:
            return [{k: int(v) if k == "step" else float(v) for k, v in row.items()}
                    for row in csv.DictReader(fh)]

    def plot(self, axes=None):
        r"""Plot loss, norms and sharpness against :math:`2/\eta` (and the Fisher trace if recorded).

        Parameters
        ----------
        axes : sequence of matplotlib Axes, optional
            One per panel (3, or 4 with Fisher traces); default: a new figure with one row.

        Returns
        -------
        matplotlib.figure.Figure
        """
        import matplotlib.pyplot as plt  # imported here so that the library does not need a display

        has_fisher = any(not math.isnan(r["fisher_trace"]) for r in self.rows)
        panels = 4 if has_fisher else 3
        if axes is None:
            fig, axes = plt.subplots(1, panels, figsize=(4.2 * panels, 3.4), constrained_layout=True)
        elif len(axes) < panels:
            raise ValueError(f"axes must hold {panels} Axes for these rows, got {len(axes)}")
        fig = axes[0].figure
        steps = self.column("step")

        def positive(values):  # log axes cannot show zero, negative or NaN values
            return [v if v > 0 else NAN for v in values]

        axes[0].plot(steps, self.column("loss"))
        axes[0].set(title="loss", xlabel="step")
        if all(v > 0 for v in self.column("loss")):
            axes[0].set_yscale("log")
        for name, label in (("grad_norm", r"$\|g\|$"), ("update_norm", r"$\|\Delta\theta\|$"),
                            ("param_norm", r"$\|\theta\|$")):
            axes[1].plot(steps, positive(self.column(name)), label=label)
        axes[1].set(title="norms", xlabel="step", yscale="log")
        axes[1].legend()
        sharp = [(s, v) for s, v in zip(steps, self.column("sharpness")) if not math.isnan(v)]
        if sharp:
            axes[2].plot(*zip(*sharp), "o-", ms=3, label=r"sharpness $\lambda_{\max}$")
        axes[2].plot(steps, self.column("eos_threshold"), "k--", label=r"$2/\eta$")
        axes[2].set(title="sharpness vs. edge of stability", xlabel="step")
        axes[2].legend()
        if has_fisher:
            fisher = [(s, v) for s, v in zip(steps, self.column("fisher_trace")) if not math.isnan(v)]
            axes[3].plot(*zip(*fisher), "o-", ms=3)
            axes[3].set(title=r"tr $\hat F$ (empirical Fisher)", xlabel="step")
        return fig

    def __repr__(self) -> str:
        return (f"CurvatureMonitor({len(self.rows)} rows, every={self.every}, "
                f"sharpness_every={self.sharpness_every}, fisher_every={self.fisher_every})")
