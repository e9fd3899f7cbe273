r"""Curvature matrices of a model, a loss and a batch of data, as linear operators.

Every operator here represents an :math:`n \times n` matrix over the model's parameters
:math:`\theta` (``n`` of them, concatenated in ``model.parameters()`` order, the order of
:meth:`~secondorder.problems.ModelProblem.unflatten`) and applies it with a few passes through the
model, never forming it. All accept ``A @ v`` for ``v`` of shape ``(n,)`` or ``(n, k)``.

**Convention.** ``batch = (inputs, targets)``, outputs :math:`o = \text{model}(\text{inputs})`
(first dimension: the ``B`` examples), and the loss is ``loss_fn(output, targets)``: an
``nn.CrossEntropyLoss`` (logits of shape ``(B, C)``, class indices or probabilities as targets),
``nn.MSELoss`` or ``nn.BCEWithLogitsLoss`` instance, or one of the strings ``"cross_entropy"``,
``"mse"``, ``"bce_with_logits"`` (reduction ``"mean"``). With :math:`\ell_i` the loss of example
:math:`i` summed over its output entries, all three losses are

.. math::

    L(\theta) = c \sum_{i=1}^{B} \ell_i(\theta), \qquad
    c = \begin{cases} 1 & \text{reduction "sum"} \\ 1/B & \text{"mean", cross-entropy} \\
    1/\text{numel}(o) & \text{"mean", MSE and BCE (they average over every entry)} \end{cases}

and every operator carries the same factor :math:`c`, so the Hessian, GGN, Fisher and empirical
Fisher are on one scale and :math:`L`'s Hessian is exactly :class:`HessianOperator`.
:class:`HessianOperator` (and :func:`model_hvp`) accept any other ``loss_fn(output, targets)``
returning a scalar too.

**State.** Operators read the model's parameters when they are applied, so an in-place update of
the model changes the matrix; nothing is copied. The Monte Carlo Fisher draws its labels once (see
:meth:`FisherOperator.resample`). Applying an operator twice to the same input gives the same result.
Models must be deterministic functions of their parameters (``model.eval()`` for dropout).

References
----------
.. [P94] B. A. Pearlmutter, "Fast exact multiplication by the Hessian", *Neural Computation*, 1994.
.. [S02] N. N. Schraudolph, "Fast curvature matrix-vector products for second-order gradient
   descent", *Neural Computation* 14(7), 2002.
.. [M10] J. Martens, "Deep learning via Hessian-free optimization", ICML 2010.
.. [M20] J. Martens, "New insights and perspectives on the natural gradient method", *JMLR* 21, 2020.
.. [K19] F. Kunstner, L. Balles and P. Hennig, "Limitations of the empirical Fisher approximation
   for natural gradient descent", NeurIPS 2019.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call, grad, grad_and_value, jvp, vjp, vmap

from .._validation import check_tensor
from ..problems.base import MAX_DENSE_HESSIAN
from .hvp import backward_through, check_method, double_backward_at, gradient_graph, hvp_tuple

Tensors = tuple[Tensor, ...]

#: Names of the losses with a known output curvature (needed by GGN and Fisher operators).
LOSSES = ("cross_entropy", "mse", "bce_with_logits")

_LOSS_CLASSES = {nn.CrossEntropyLoss: "cross_entropy", nn.MSELoss: "mse",
                 nn.BCEWithLogitsLoss: "bce_with_logits"}
_SUM_LOSSES = {"cross_entropy": F.cross_entropy, "mse": F.mse_loss,
               "bce_with_logits": F.binary_cross_entropy_with_logits}


class OutputLoss:
    r"""A loss :math:`L(o, t) = c \sum_i \ell(o_i, t_i)` of the outputs, with its curvature in :math:`o`.

    For the three supported losses :math:`\ell = -\log p(t \mid o)` + const for a distribution
    :math:`p(\cdot \mid o)` whose natural parameter is :math:`o` (softmax categorical, Bernoulli,
    Gaussian :math:`\mathcal N(o, \tfrac12 I)`), so the output Hessian equals the output Fisher
    ([M20]_): :math:`\nabla_o^2 \ell = \mathbb E_{\hat t \sim p(\cdot|o)}[\nabla_o \ell(o, \hat t)
    \nabla_o \ell(o, \hat t)^\top]`, which is why :class:`FisherOperator` (exact) equals the GGN.

    Parameters
    ----------
    kind : {"cross_entropy", "mse", "bce_with_logits", "callable"}
        ``"callable"`` wraps any ``fn(output, targets) -> scalar`` (Hessian only).
    reduction : {"mean", "sum"}
    fn : callable, optional
        The loss for ``"callable"``.
    """

    def __init__(self, kind: str, reduction: str = "mean", fn: Callable | None = None):
        self.kind, self.reduction, self._fn = kind, reduction, fn

    def __call__(self, output: Tensor, targets: Tensor) -> Tensor:
        """The loss :math:`L(o, t)`, a scalar."""
        if self.kind == "callable":
            return self._fn(output, targets)
        return _SUM_LOSSES[self.kind](output, targets, reduction=self.reduction)

    def per_example(self, output: Tensor, targets: Tensor) -> Tensor:
        r""":math:`\sum_i \ell(o_i, t_i)`, the unscaled sum (one example in, its :math:`\ell_i` out)."""
        return _SUM_LOSSES[self.kind](output, targets, reduction="sum")

    def scale(self, output: Tensor) -> float:
        """The factor :math:`c` of the reduction for outputs shaped like ``output``."""
        if self.reduction == "sum":
            return 1.0
        return 1.0 / (output.shape[0] if self.kind == "cross_entropy" else output.numel())

    def hessian_matvec(self, output: Tensor, U: Tensor) -> Tensor:
        r""":math:`\nabla_o^2 L\, u` for each of the ``k`` vectors ``U`` of shape ``(k, *output.shape)``.

        Cross-entropy: :math:`c\,(\operatorname{diag}(p_i) - p_i p_i^\top)` per example with
        :math:`p_i = \operatorname{softmax}(o_i)`; MSE: :math:`2c\,I`; BCE with logits:
        :math:`c\,\sigma(o)(1 - \sigma(o))` elementwise.
        """
        c = self.scale(output)
        if self.kind == "cross_entropy":
            p = output.softmax(dim=1)  # (B, C)
            return c * (p * U - p * (p * U).sum(dim=-1, keepdim=True))  # (k, B, C)
        if self.kind == "mse":
            return (2 * c) * U
        s = output.sigmoid()  # shape of output
        return c * s * (1 - s) * U

    def sample_labels(self, output: Tensor, mc_samples: int, generator: torch.Generator) -> Tensor:
        r"""``mc_samples`` draws :math:`\hat t \sim p(\cdot \mid o)`, shape ``(S, *target shape)``.

        Drawn on the CPU with ``generator`` (a CPU generator), so a seed gives the same labels on
        every device; this runs once per :meth:`FisherOperator.resample`, not per product.
        """
        o = output.detach().to("cpu")  # one transfer per draw, for device-independent samples
        if self.kind == "cross_entropy":
            labels = torch.multinomial(o.softmax(dim=1), mc_samples, replacement=True,
                                       generator=generator).T  # (S, B)
        elif self.kind == "mse":
            noise = torch.randn((mc_samples, *o.shape), generator=generator, dtype=o.dtype)  # (S, *o)
            labels = o + noise / 2**0.5  # variance 1/2: ℓ = ‖o - t‖² is -log N(t; o, I/2) + const
        else:
            labels = torch.bernoulli(o.sigmoid().expand(mc_samples, *o.shape),
                                     generator=generator)  # (S, *o)
        return labels.to(output.device)

    def output_gradients(self, output: Tensor, labels: Tensor) -> Tensor:
        r""":math:`\nabla_o \ell(o_i, \hat t_i)` for each sampled label set, shape ``(S, *output.shape)``."""
        if self.kind == "cross_entropy":
            one_hot = F.one_hot(labels, output.shape[1]).to(output.dtype)  # (S, B, C)
            return output.softmax(dim=1) - one_hot
        if self.kind == "mse":
            return 2 * (output - labels)
        return output.sigmoid() - labels


def resolve_loss(loss_fn: object, *, structured: bool = True) -> OutputLoss:
    """Turn ``loss_fn`` (a supported ``nn`` loss, a name in :data:`LOSSES`) into an :class:`OutputLoss`.

    With ``structured=False`` any callable is accepted as well (for the Hessian).
    """
    if isinstance(loss_fn, OutputLoss):
        kind, loss = loss_fn.kind, loss_fn
    elif isinstance(loss_fn, str):
        if loss_fn not in LOSSES:
            raise ValueError(f"loss_fn must be one of {LOSSES} when given by name, got {loss_fn!r}")
        kind, loss = loss_fn, OutputLoss(loss_fn)
    elif type(loss_fn) in _LOSS_CLASSES:
        kind = _LOSS_CLASSES[type(loss_fn)]
        extras = {"weight": getattr(loss_fn, "weight", None),
                  "pos_weight": getattr(loss_fn, "pos_weight", None),
                  "label_smoothing": getattr(loss_fn, "label_smoothing", 0.0) or None}
        used = [name for name, value in extras.items() if value is not None]
        if used or loss_fn.reduction not in ("mean", "sum"):
            raise ValueError(f"loss_fn: {type(loss_fn).__name__} is supported with reduction 'mean' or "
                             f"'sum' and without {', '.join(extras)}; got reduction="
                             f"{loss_fn.reduction!r}" + (f" and {', '.join(used)}" if used else ""))
        loss = OutputLoss(kind, loss_fn.reduction)
    elif callable(loss_fn):
        kind, loss = "callable", OutputLoss("callable", fn=loss_fn)
    else:
        raise ValueError(f"loss_fn must be a loss module, a name in {LOSSES} or a callable, "
                         f"got {type(loss_fn).__name__}")
    if structured and kind == "callable":
        raise ValueError(f"loss_fn: this curvature needs the loss's output curvature, known for "
                         f"nn.CrossEntropyLoss, nn.MSELoss, nn.BCEWithLogitsLoss or {LOSSES}; "
                         "got an arbitrary callable (HessianOperator accepts it)")
    return loss


class CurvatureOperator:
    r"""Base class: an :math:`n \times n` curvature matrix of ``loss_fn(model(inputs), targets)``.

    Subclasses implement :meth:`_matmat` on an ``(n, k)`` matrix.

    Parameters
    ----------
    model : nn.Module
        The network; its parameters all share one dtype and device.
    loss_fn : nn.Module, str or callable
        See the module docstring.
    batch : (Tensor, Tensor)
        ``(inputs, targets)`` on the parameters' device.
    params : sequence of Tensor, optional
        The parameters (of ``model``) the matrix is over, in that order. Default: those of
        ``model.parameters()`` that require grad. The others stay fixed.

    Raises
    ------
    ValueError
        On a ``model``, ``loss_fn``, ``batch`` or ``params`` that does not fit. Operators that need
        the loss's structure run one forward pass here to check the output shape and find the
        reduction factor :math:`c` (:attr:`scale`).

    Attributes
    ----------
    parameters : list of Tensor
        The parameters, in the order of the flat vectors.
    shape : (int, int)
        ``(n, n)``.
    loss : OutputLoss
        The loss, resolved from ``loss_fn``.
    scale : float
        The reduction factor :math:`c` (operators other than :class:`HessianOperator`).
    """

    _structured = True

    def __init__(self, model: nn.Module, loss_fn, batch: Sequence[Tensor],
                 params: Sequence[Tensor] | None = None):
        if not isinstance(model, nn.Module):
            raise ValueError(f"model must be an nn.Module, got {type(model).__name__}")
        names = {id(p): name for name, p in model.named_parameters()}
        if params is None:
            params = [p for p in model.parameters() if p.requires_grad]
        params = list(params)
        if not params or any(id(p) not in names for p in params):
            raise ValueError("params must be a non-empty list of the model's own parameters")
        p0 = params[0]
        if any(p.dtype != p0.dtype or p.device != p0.device for p in params):
            raise ValueError("model: all parameters must share one dtype and device")
        if (not isinstance(batch, (tuple, list)) or len(batch) != 2
                or not all(isinstance(t, Tensor) for t in batch)):
            raise ValueError("batch must be a pair (inputs, targets) of tensors")
        if any(t.device != p0.device for t in batch):
            raise ValueError(f"batch must be on the parameters' device {p0.device}, got "
                             f"{batch[0].device} and {batch[1].device}")
        self.model, self.parameters = model, params
        self.inputs, self.targets = batch
        self.loss = resolve_loss(loss_fn, structured=self._structured)
        self._names = [names[id(p)] for p in params]
        self._shapes = [p.shape for p in params]
        self._sizes = [p.numel() for p in params]
        n = sum(self._sizes)
        self.shape = (n, n)
        if self._structured:
            with torch.no_grad():
                output = self._output(self._params())  # (B, ...)
            if self.loss.kind == "cross_entropy" and output.ndim != 2:
                raise ValueError(f"model: cross-entropy curvature needs logits of shape (B, C), "
                                 f"got output shape {tuple(output.shape)}")
            #: The reduction factor c of the loss (see the module docstring).
            self.scale = self.loss.scale(output)

    @property
    def dtype(self) -> torch.dtype:
        """The parameters' dtype (that of every input and output vector)."""
        return self.parameters[0].dtype

    @property
    def device(self) -> torch.device:
        """The parameters' device."""
        return self.parameters[0].device

    # ---- the model as a function of a tuple of parameter tensors -------------------------------
    def _params(self) -> Tensors:
        return tuple(p.detach() for p in self.parameters)

    def _output(self, params: Tensors, inputs: Tensor | None = None) -> Tensor:
        inputs = self.inputs if inputs is None else inputs
        return functional_call(self.model, dict(zip(self._names, params)), (inputs,))

    def _loss(self, params: Tensors) -> Tensor:
        return self.loss(self._output(params), self.targets)

    # ---- flat vectors ---------------------------------------------------------------------------
    def flatten(self, tensors: Sequence[Tensor]) -> Tensor:
        """Concatenate tensors shaped like :attr:`parameters` into one vector, shape ``(n,)``."""
        return torch.cat([t.reshape(-1) for t in tensors])  # (n,)

    def unflatten(self, x: Tensor) -> list[Tensor]:
        """Split a vector of shape ``(n,)`` into views shaped like :attr:`parameters`."""
        return [c.view(s) for c, s in zip(x.split(self._sizes), self._shapes)]

    def _columns(self, V: Tensor) -> Tensors:
        """``(n, k)`` → one ``(k, *p.shape)`` tensor per parameter."""
        k = V.shape[1]
        return tuple(c.T.reshape(k, *s) for c, s in zip(V.split(self._sizes), self._shapes))

    def _join(self, cols: Sequence[Tensor]) -> Tensor:
        """Inverse of :meth:`_columns`: ``(k, *p.shape)`` per parameter → ``(n, k)``."""
        return torch.cat([c.reshape(c.shape[0], -1) for c in cols], dim=1).T  # (n, k)

    # ---- the operator interface -----------------------------------------------------------------
    def _matmat(self, V: Tensor) -> Tensor:
        raise NotImplementedError

    def _matvec(self, v: Tensor) -> Tensor:
        return self._matmat(v[:, None])[:, 0]  # (n,)

    def matvec(self, v: Tensor) -> Tensor:
        """Apply the matrix to ``v`` of shape ``(n,)`` or ``(n, k)``; same shape out.

        Raises
        ------
        ValueError
            If ``v`` has the wrong shape, dtype or device (NaN and infinity propagate).
        """
        # No finiteness check here: it would cost a host synchronisation per product inside CG.
        check_tensor("v", v, like=self.parameters[0], like_name="the model's parameters", finite=False)
        n = self.shape[0]
        if v.ndim not in (1, 2) or v.shape[0] != n:
            raise ValueError(f"v must have shape ({n},) or ({n}, k), got {tuple(v.shape)}")
        return self._matvec(v) if v.ndim == 1 else self._matmat(v)  # (n,) or (n, k)

    def __matmul__(self, v: Tensor) -> Tensor:
        if not isinstance(v, Tensor):
            return NotImplemented
        return self.matvec(v)

    def to_dense(self, chunk_size: int = 256) -> Tensor:
        """The matrix itself, shape ``(n, n)``, built ``chunk_size`` columns at a time (small models).

        Raises
        ------
        ValueError
            If ``n`` exceeds :data:`~secondorder.problems.MAX_DENSE_HESSIAN`.
        """
        n = self.shape[0]
        if n > MAX_DENSE_HESSIAN:
            raise ValueError(f"to_dense: n = {n} is too large (limit {MAX_DENSE_HESSIAN}); "
                             "apply the operator to vectors instead")
        eye = torch.eye(n, dtype=self.dtype, device=self.device)  # (n, n)
        return torch.cat([self._matmat(eye[:, j:j + chunk_size]) for j in range(0, n, chunk_size)], dim=1)

    def to_scipy(self):
        """A ``scipy.sparse.linalg.LinearOperator`` view, float64 numpy in and out.

        Each product converts the numpy input to a tensor of :attr:`dtype` on :attr:`device`
        (rounding to float32 when that is the dtype), applies the operator, and copies the result
        back to a float64 numpy array: use float64 models for accurate eigenvalues. The matrix is
        symmetric, so ``rmatvec`` is ``matvec``.
        """
        from scipy.sparse.linalg import LinearOperator

        def apply(x):
            x = np.asarray(x, dtype=np.float64)
            v = torch.from_numpy(x).to(device=self.device, dtype=self.dtype)
            # Host transfer by design: scipy works on numpy arrays in main memory.
            return self.matvec(v).to(device="cpu", dtype=torch.float64).numpy().reshape(x.shape)

        return LinearOperator(self.shape, matvec=apply, rmatvec=apply, matmat=apply, rmatmat=apply,
                              dtype=np.float64)

    def loss_and_gradient(self) -> tuple[Tensor, Tensor]:
        r"""The loss :math:`L(\theta)` and its gradient, shape ``(n,)``, both detached."""
        g, value = grad_and_value(self._loss)(self._params())
        return value.detach(), self.flatten(g)  # (), (n,)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(n={self.shape[0]}, loss={self.loss.kind}, dtype={self.dtype})"


class HessianOperator(CurvatureOperator):
    r"""The Hessian :math:`\nabla_\theta^2 L(\theta)` of the loss on the batch.

    Each column costs one Hessian-vector product by ``method``
    (:func:`~secondorder.curvature.hessian_vector_product`; [P94]_); the exact methods vectorize
    over the columns of an ``(n, k)`` input with ``vmap``. Indefinite in general.
    ``loss_fn`` may be any ``fn(output, targets) -> scalar``.

    With ``method="double_backward"`` and ``keep_graph=True`` (the defaults) the operator keeps the
    graph of :math:`\nabla L` between products while the point is unchanged, so every product after
    the first is one backward pass, as :func:`~secondorder.curvature.hvp_at`: on ~1M-parameter MLPs
    1.3–1.8 gradients per product on a CPU and 1.5–2.3 on an H200, instead of 2.3–2.8 and 2.5–4.0
    (``python -m bench.hvp``), so conjugate gradients, power iteration and Lanczos run about a third
    faster. "Unchanged" means the same storage and version counter for every parameter, the
    batch and the model's buffers (an optimizer step, ``load_state_dict`` or an in-place edit bumps
    them) and the same ``train()``/``eval()`` mode of every submodule; any change rebuilds the graph
    at the next product. The price is the memory of that graph (the activations of one forward and
    backward pass) for as long as the operator lives; :meth:`release` frees it now. A model whose
    output is random (dropout in training mode) keeps one draw for all products at a point, which
    makes the operator one fixed matrix.

    Parameters
    ----------
    model, loss_fn, batch, params
        See :class:`CurvatureOperator`.
    method : {"double_backward", "forward_over_reverse", "finite_difference"}
        How each product is computed.
    eps : float, optional
        Finite-difference step (``method="finite_difference"`` only).
    keep_graph : bool
        Keep the gradient's graph between products (``double_backward`` only; default True).
    """

    _structured = False

    def __init__(self, model, loss_fn, batch, params=None, method: str = "double_backward",
                 eps: float | None = None, keep_graph: bool = True):
        super().__init__(model, loss_fn, batch, params)
        self.eps = check_method(method, eps)
        self.method = method
        self.keep_graph = bool(keep_graph)
        self._graph = None  # (point, gradient blocks, live indices) while the point is unchanged
        self._modules = list(model.modules())  # the structure is fixed here, as the parameters are

    def _direct_loss(self) -> Tensor:
        return self.loss(self.model(self.inputs), self.targets)

    def _point(self) -> tuple:
        """What the kept graph depends on: storage and version of every tensor read, and the modes."""
        tensors = [t for m in self._modules for t in (*m._parameters.values(), *m._buffers.values())
                   if t is not None]
        tensors += [self.inputs, self.targets]
        return tuple([(t.data_ptr(), t._version) for t in tensors]), tuple([m.training for m in self._modules])

    def release(self) -> None:
        """Free the kept gradient graph (the next product builds it again)."""
        self._graph = None

    def _apply(self, vs: Sequence[Tensor], batched: bool = False) -> Tensors:
        """The product on tensors shaped like :attr:`parameters` (``(k, *p.shape)`` if ``batched``)."""
        if self.method == "double_backward" and all(p.is_leaf and p.requires_grad for p in self.parameters):
            # Differentiate in the model's own parameters, calling the model directly: the same
            # graph as functional_call on detached copies, without its per-call overhead.
            # autograd.grad leaves the .grad fields alone.
            if not self.keep_graph:
                return double_backward_at(self._direct_loss, self.parameters, vs, batched)
            point = self._point()
            if self._graph is None or self._graph[0] != point:
                self._graph = None  # free the old graph before building the new one
                self._graph = (point, *gradient_graph(self._direct_loss, self.parameters))
            _, grads, live = self._graph
            return backward_through(grads, live, self.parameters, vs, batched, retain_graph=True)
        return hvp_tuple(self._loss, self._params(), tuple(vs), self.method, self.eps, batched)

    def _matvec(self, v: Tensor) -> Tensor:
        return self.flatten(self._apply(self.unflatten(v)))  # (n,), without vmap's overhead

    def _matmat(self, V: Tensor) -> Tensor:
        if V.shape[1] == 1:
            return self._matvec(V[:, 0])[:, None]  # (n, 1)
        return self._join(self._apply(self._columns(V), batched=True))  # (n, k)


class GGNOperator(CurvatureOperator):
    r"""The generalized Gauss–Newton matrix :math:`G = J^\top H_L J` ([S02]_, [M10]_).

    .. math::

        G(\theta) = \sum_{i=1}^{B} J_i^\top \bigl(\nabla_{o}^2 L\bigr)_{i} J_i, \qquad
        J_i = \partial o_i / \partial \theta,

    the Hessian with the second derivatives of the model dropped; positive semi-definite because
    the losses are convex in the outputs. A product :math:`Gv` is a Jacobian-vector product
    (forward mode), the closed-form output curvature of :meth:`OutputLoss.hessian_matvec`, and a
    vector-Jacobian product (reverse mode) — about the cost of two gradients; no Jacobian is formed.
    For a model linear in :math:`\theta` it equals the Hessian.
    """

    def _output_curvature(self, output: Tensor, JV: Tensor) -> Tensor:
        return self.loss.hessian_matvec(output, JV)  # (k, *output.shape)

    def _matmat(self, V: Tensor) -> Tensor:
        params = self._params()
        output, vjp_fn = vjp(self._output, params)  # (B, ...)
        JV = vmap(lambda t: jvp(self._output, (params,), (t,))[1])(self._columns(V))  # (k, B, ...)
        U = self._output_curvature(output.detach(), JV)  # (k, B, ...)
        (JtU,) = vmap(vjp_fn)(U)  # per parameter: (k, *p.shape)
        return self._join(JtU)  # (n, k)


class FisherOperator(GGNOperator):
    r"""The Fisher information of the model's predictive distribution (the "true" Fisher; [M20]_).

    .. math::

        F(\theta) = c \sum_{i=1}^{B} \mathbb E_{\hat t \sim p(\cdot \mid o_i)}
        \bigl[\nabla_\theta \ell(o_i, \hat t)\, \nabla_\theta \ell(o_i, \hat t)^\top\bigr]
        = \sum_i J_i^\top \Bigl(c\, \mathbb E\bigl[\nabla_o \ell\, \nabla_o \ell^\top\bigr]\Bigr) J_i,

    with :math:`p(\cdot \mid o)` the distribution whose negative log-likelihood the loss is (see
    :class:`OutputLoss`); the targets are not used.

    ``mode="exact"`` takes the expectation in closed form. For these losses it equals the output
    Hessian, so :math:`F = G` ([M20]_); MSE's Gaussian has variance 1/2 per entry, which
    makes :math:`\ell = \lVert o - t \rVert^2` its negative log-likelihood up to a constant.
    ``mode="mc"`` replaces the expectation by the mean over ``mc_samples`` labels per example drawn
    from :math:`p(\cdot \mid o_i)`: an unbiased estimate, positive semi-definite of rank at most
    ``mc_samples`` per example, error :math:`O(1/\sqrt{S})`. The labels are drawn once, at
    construction, and reused by every product (so repeated products agree) until
    :meth:`resample`.

    Parameters
    ----------
    model, loss_fn, batch, params
        See :class:`CurvatureOperator`; ``loss_fn`` must be one of the supported losses.
    mode : {"exact", "mc"}
    mc_samples : int
        Labels per example, ``mode="mc"`` only.
    generator : torch.Generator or int
        CPU generator for the labels, or a seed for a new one (default 0).
    """

    def __init__(self, model, loss_fn, batch, params=None, mode: str = "exact", mc_samples: int = 1,
                 generator: torch.Generator | int = 0):
        super().__init__(model, loss_fn, batch, params)
        if mode not in ("exact", "mc"):
            raise ValueError(f"mode must be 'exact' or 'mc', got {mode!r}")
        if not isinstance(mc_samples, int) or isinstance(mc_samples, bool) or mc_samples < 1:
            raise ValueError(f"mc_samples must be a positive integer, got {mc_samples!r}")
        self.mode, self.mc_samples = mode, mc_samples
        self.labels: Tensor | None = None
        if mode == "mc":
            self.resample(generator)

    def resample(self, generator: torch.Generator | int | None = None) -> None:
        """Draw new labels from the predictive distribution at the current parameters.

        ``generator``: a CPU generator, a seed, or ``None`` to continue with the current one.
        """
        if self.mode != "mc":
            raise ValueError("resample applies to mode='mc' only")
        if isinstance(generator, int):
            generator = torch.Generator().manual_seed(generator)
        if generator is not None:
            if generator.device.type != "cpu":
                raise ValueError(f"generator must be a CPU generator, got one on {generator.device}")
            self.generator = generator
        with torch.no_grad():
            output = self._output(self._params())  # (B, ...)
        self.labels = self.loss.sample_labels(output, self.mc_samples, self.generator)  # (S, B, ...)

    def _output_curvature(self, output: Tensor, JV: Tensor) -> Tensor:
        if self.mode == "exact":
            return self.loss.hessian_matvec(output, JV)
        B, S, k = output.shape[0], self.mc_samples, JV.shape[0]
        G = self.loss.output_gradients(output, self.labels).reshape(S, B, -1)  # (S, B, D)
        coef = torch.einsum("sbd,kbd->ksb", G, JV.reshape(k, B, -1))  # (k, S, B)
        U = torch.einsum("ksb,sbd->kbd", coef, G) * (self.scale / S)  # (k, B, D)
        return U.reshape(JV.shape)  # (k, B, ...)


class EmpiricalFisherOperator(CurvatureOperator):
    r"""The empirical Fisher :math:`\tilde F = c \sum_i \nabla_\theta \ell_i\, \nabla_\theta \ell_i^\top`.

    The uncentered second moment of the per-example gradients at the observed targets ([K19]_),
    with the reduction factor :math:`c` of the loss (so ``"mean"`` gives their mean for
    cross-entropy). Unlike the Fisher, it is not a curvature of the loss in general: [K19]_ shows
    where preconditioning with it fails. Per-example gradients come from
    ``torch.func.vmap(torch.func.grad(...))`` over the batch, recomputed at every application (one
    ``(B, n)`` matrix; memory :math:`Bn`); a product with ``(n, k)`` columns computes them once.
    """

    def _matmat(self, V: Tensor) -> Tensor:
        params, B = self._params(), self.inputs.shape[0]

        def example_loss(ps, x, t):
            return self.loss.per_example(self._output(ps, x[None]), t[None])

        per_example = vmap(grad(example_loss), in_dims=(None, 0, 0))(params, self.inputs, self.targets)
        G = torch.cat([g.reshape(B, -1) for g in per_example], dim=1)  # (B, n)
        return self.scale * (G.T @ (G @ V))  # (n, k)


def model_hvp(model: nn.Module, loss_fn, batch: Sequence[Tensor], vectors: Tensor | Sequence[Tensor],
              method: str = "double_backward", eps: float | None = None,
              params: Sequence[Tensor] | None = None) -> Tensor | list[Tensor]:
    r"""Hessian-vector product of ``loss_fn(model(inputs), targets)`` in the model's parameters.

    :math:`\nabla_\theta^2 L(\theta)\, v` at the model's current parameters, by ``method`` (see
    :func:`~secondorder.curvature.hessian_vector_product`). With ``"double_backward"`` and
    parameters that all require grad, the model is called directly and differentiated in its own
    parameters with ``torch.autograd.grad`` (as fast as those two calls written out by hand);
    otherwise it is called through ``torch.func.functional_call`` on detached copies. Either way
    the model is never modified and its ``.grad`` fields are untouched.

    Parameters
    ----------
    model : nn.Module
    loss_fn : nn.Module, str or callable
        ``loss_fn(output, targets) -> scalar``; a name in :data:`LOSSES` works too.
    batch : (Tensor, Tensor)
        ``(inputs, targets)``.
    vectors : list of Tensor or Tensor
        One tensor per parameter with its shape, or one flat vector of shape ``(n,)``.
    method : {"double_backward", "forward_over_reverse", "finite_difference"}
    eps : float, optional
        Finite-difference step along ``v``.
    params : sequence of Tensor, optional
        The parameters to differentiate in (default: those of ``model`` that require grad).

    Returns
    -------
    list of Tensor or Tensor
        Shaped like ``vectors``, detached.
    """
    H = HessianOperator(model, loss_fn, batch, params, method=method, eps=eps)
    if isinstance(vectors, Tensor):
        if vectors.ndim != 1:
            raise ValueError(f"vectors must be a flat vector of shape ({H.shape[0]},) or a list of "
                             f"tensors shaped like the parameters, got shape {tuple(vectors.shape)}")
        return H @ vectors  # (n,)
    vectors = list(vectors)
    if len(vectors) != len(H.parameters) or any(
            not isinstance(v, Tensor) or v.shape != p.shape for v, p in zip(vectors, H.parameters)):
        raise ValueError("vectors must hold one tensor per parameter, with that parameter's shape: "
                         f"{[tuple(s) for s in H._shapes]}")
    for i, (v, p) in enumerate(zip(vectors, H.parameters)):
        # As for a flat vector (H @ v), NaN and infinity propagate: no reduction and host sync per tensor.
        check_tensor(f"vectors[{i}]", v, like=p, like_name="the parameters", finite=False)
    return list(H._apply(vectors))  # no round trip through one flat vector (two copies of n)


