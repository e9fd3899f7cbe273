r"""Hessian-vector products :math:`\nabla^2 f(x)\, v` without forming the Hessian.

Three ways to compute the same product, behind one interface
(:func:`hessian_vector_product`), and :func:`hvp`, the exact reference:

``"double_backward"`` (reverse over reverse)
    Differentiate :math:`g(x)^\top v` with a second backward pass through the graph of the first:
    :math:`\nabla_x\bigl(\nabla f(x)^\top v\bigr) = \nabla^2 f(x)\, v`, because ``v`` does not depend
    on ``x`` ([P94]_). Exact; the default.
``"forward_over_reverse"``
    The directional derivative of the gradient,
    :math:`\frac{d}{dt} \nabla f(x + t v)\big|_{t=0}`, by forward-mode differentiation of the
    reverse-mode gradient (``torch.func.jvp(torch.func.grad(f))``): Pearlmutter's
    :math:`\mathcal{R}\{\cdot\}` operator. Exact.
``"finite_difference"``
    Central differences of the gradient, :math:`\bigl(\nabla f(x + h v) - \nabla f(x - h v)\bigr)/(2h)`,
    two gradient evaluations, error :math:`O(h^2)` plus rounding :math:`O(u/h)` (see
    :func:`finite_difference_step`). Approximate.

Each costs a small multiple of one gradient: on ~1M-parameter MLPs about 2.3 to 2.8 for double
backward (the matrix-product work alone is 2.3 to 2.8 gradients there), 3 to 3.3 for
forward-over-reverse and 2 to 2.3 for finite differences on a CPU; 2.5 to 4, 5.3 to 7.2 and 3 to 5
on an H200, where products this small are bound by kernel launches (``python -m bench.hvp``
measures it). Many products at one point need the gradient's graph only once: :func:`hvp_at`, and
:class:`~secondorder.curvature.HessianOperator` by default, keep it, and each further product is
one backward pass (1.3 to 1.8 gradients on the CPU, 1.5 to 2.3 on the H200). None builds the
:math:`n \times n` Hessian: memory stays :math:`O(n)` plus the graph.

References
----------
.. [P94] B. A. Pearlmutter, "Fast exact multiplication by the Hessian", *Neural Computation* 6(1),
   1994.
.. [NW] J. Nocedal and S. J. Wright, *Numerical Optimization*, 2nd ed., Springer, 2006.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor

from .._validation import check_positive, check_tensor

#: The methods :func:`hessian_vector_product` accepts, the default first.
HVP_METHODS = ("double_backward", "forward_over_reverse", "finite_difference")

Tensors = tuple[Tensor, ...]

# torch.func.jvp over torch.func.grad fails in the backward formula of F.mse_loss(reduction="mean")
# (pytorch#123996, open in torch 2.13). The message is matched to fall back for that case only.
_ZERO_TENSOR_BUG = "ZeroTensors are immutable"


def _scalar(value: object) -> Tensor:
    if not isinstance(value, Tensor) or value.numel() != 1:
        what = (f"a tensor of shape {tuple(value.shape)}" if isinstance(value, Tensor)
                else type(value).__name__)
        raise ValueError(f"f must return a scalar tensor (one element), got {what}")
    return value.reshape(())


def _norm(xs: Sequence[Tensor]) -> Tensor:
    """Euclidean norm of the concatenation of ``xs``, as a 0-d tensor (no host synchronisation)."""
    return torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(x) for x in xs]))


def gradient_graph(loss: Callable[[], Tensor], leaves: Sequence[Tensor]) -> tuple[Tensors, list[int]]:
    r"""The gradient :math:`\nabla L` of ``loss()`` in ``leaves``, with its graph (``create_graph``).

    Returns the gradient blocks and the indices of the "live" ones: a block that is ``None`` or does
    not depend on the leaves (:math:`L` at most linear in that block) adds nothing to
    :math:`\nabla^2 L\, v` and is left out of the second backward pass.
    """
    with torch.enable_grad():
        grads = torch.autograd.grad(_scalar(loss()), leaves, create_graph=True, allow_unused=True)
    return grads, [i for i, g in enumerate(grads) if g is not None and g.requires_grad]


def backward_through(grads: Tensors, live: Sequence[int], leaves: Sequence[Tensor], vs: Sequence[Tensor],
                     batched: bool = False, retain_graph: bool = False) -> Tensors:
    r""":math:`\nabla^2 L\, v = \nabla_x (\nabla L^\top v)`: one backward pass through the gradient's graph.

    ``grads, live`` come from :func:`gradient_graph`; ``vs`` is shaped like ``leaves``, or
    ``(k, *leaf.shape)`` with ``batched=True`` (``is_grads_batched``: one pass for ``k`` stacked
    directions, by vmap). ``retain_graph`` keeps the graph for further products. The results carry
    no graph (no ``create_graph``), so no detach or copy is needed.
    """
    if not live:
        return tuple(torch.zeros_like(v) for v in vs)
    with torch.enable_grad():
        hv = torch.autograd.grad([grads[i] for i in live], leaves, grad_outputs=[vs[i] for i in live],
                                 retain_graph=retain_graph, allow_unused=True, is_grads_batched=batched)
    return tuple(torch.zeros_like(v) if h is None else h for h, v in zip(hv, vs))


def double_backward_at(loss: Callable[[], Tensor], leaves: Sequence[Tensor], vs: Sequence[Tensor],
                       batched: bool = False) -> Tensors:
    r""":math:`\nabla^2 L\, v` by double backward, in tensors ``leaves`` that already require grad.

    ``loss()`` builds the scalar :math:`L` from ``leaves`` (for instance a model's own parameters,
    called directly, without ``functional_call`` or copies); ``vs`` is shaped like ``leaves``, or
    ``(k, *leaf.shape)`` with ``batched=True``. No ``.grad`` field is touched. Returns a tuple shaped
    like ``vs``, not attached to any graph. No argument checks.
    """
    grads, live = gradient_graph(loss, leaves)
    return backward_through(grads, live, leaves, vs, batched)


def hvp_at(loss: Callable[[], Tensor], leaves: Sequence[Tensor]) -> Callable[[Tensor], Tensor]:
    r"""The map :math:`v \mapsto \nabla^2 L\, v` at the current point, for many products in a row.

    ``loss()`` builds the scalar :math:`L` from ``leaves`` (tensors that require grad, e.g. a model's
    parameters). The graph of :math:`\nabla L` is built once, here, and kept (``retain_graph``): each
    product is then a single backward pass through it, instead of the forward, backward and second
    backward of :func:`double_backward_at`. Iterative methods that make many products at one point
    (power iteration, Lanczos, conjugate gradients) gain about a third of their cost; the price is
    the memory of that graph for as long as the returned function lives.

    Vectors are flat: ``v`` has shape ``(n,)`` with :math:`n` the total number of entries of
    ``leaves`` (in their order), and so has the result, which carries no graph. No ``.grad`` field is
    touched.
    """
    leaves = list(leaves)
    grads, live = gradient_graph(loss, leaves)
    sizes = [x.numel() for x in leaves]
    n = sum(sizes)

    def product(v: Tensor) -> Tensor:  # (n,) -> (n,)
        if v.shape != (n,):
            raise ValueError(f"v must have shape ({n},), the total size of the leaves, got {tuple(v.shape)}")
        chunks = [c.view_as(x) for c, x in zip(v.split(sizes), leaves)]
        hv = backward_through(grads, live, leaves, chunks, retain_graph=True)
        return torch.cat([h.reshape(-1) for h in hv])  # (n,)

    return product


def _double_backward(f: Callable[[Tensors], Tensor], xs: Tensors, vs: Tensors,
                     batched: bool = False) -> Tensors:
    leaves = tuple(x.detach().requires_grad_(True) for x in xs)
    return double_backward_at(lambda: f(leaves), leaves, vs, batched)


def _reverse_over_reverse(f: Callable[[Tensors], Tensor], xs: Tensors, vs: Tensors,
                          batched: bool = False) -> Tensors:
    # vᵀ∇²f is ∇²f v because the Hessian is symmetric.
    _, vjp_fn = torch.func.vjp(torch.func.grad(lambda z: _scalar(f(z))), xs)
    (hv,) = torch.func.vmap(vjp_fn)(vs) if batched else vjp_fn(vs)
    return tuple(h.detach() for h in hv)


def _forward_over_reverse(f: Callable[[Tensors], Tensor], xs: Tensors, vs: Tensors,
                          batched: bool = False) -> Tensors:
    def directional(t: Tensors) -> Tensors:
        return torch.func.jvp(torch.func.grad(lambda z: _scalar(f(z))), (xs,), (t,))[1]

    try:
        hv = torch.func.vmap(directional)(vs) if batched else directional(vs)
    except RuntimeError as err:
        if _ZERO_TENSOR_BUG not in str(err):
            raise
        return _reverse_over_reverse(f, xs, vs, batched)
    return tuple(h.detach() for h in hv)


def _gradient(f: Callable[[Tensors], Tensor], xs: Tensors) -> Tensors:
    with torch.enable_grad():
        leaves = tuple(x.detach().requires_grad_(True) for x in xs)
        grads = torch.autograd.grad(_scalar(f(leaves)), leaves, allow_unused=True)
    return tuple(torch.zeros_like(x) if g is None else g for g, x in zip(grads, xs))


def finite_difference_step(xs: Sequence[Tensor], vs: Sequence[Tensor]) -> Tensor:
    r"""Default step :math:`h` of the central difference along ``v``, a 0-d tensor.

    .. math::

        h = u^{1/3}\, \frac{1 + \lVert x \rVert}{\lVert v \rVert},

    with :math:`u` the unit roundoff of the dtype (``torch.finfo(dtype).eps``): the perturbation
    :math:`h\lVert v\rVert` is :math:`u^{1/3}` relative to the size of ``x``. The truncation error of
    the central difference is :math:`O(h^2)` and the rounding error :math:`O(u/h)`, balanced at
    :math:`h \propto u^{1/3}` ([NW]_ §8.1); the factor :math:`(1 + \lVert x \rVert)/\lVert v \rVert`
    makes the perturbation relative to the size of ``x`` and independent of that of ``v``. Gives about
    :math:`u^{2/3}` relative error, times a factor that grows with the third derivatives of ``f``:
    about ``1e-10`` in float64 and ``1e-5`` in float32 on the course's models.
    A zero ``v`` gives a finite ``h`` (and the product 0).
    """
    u = torch.finfo(xs[0].dtype).eps
    return u ** (1 / 3) * (1 + _norm(xs)) / _norm(vs).clamp_min(torch.finfo(xs[0].dtype).tiny)


def _finite_difference(f: Callable[[Tensors], Tensor], xs: Tensors, vs: Tensors,
                       eps: float | None) -> Tensors:
    h = finite_difference_step(xs, vs) if eps is None else eps  # () or float
    g_plus = _gradient(f, tuple(x + h * v for x, v in zip(xs, vs)))
    g_minus = _gradient(f, tuple(x - h * v for x, v in zip(xs, vs)))
    return tuple((gp - gm) / (2 * h) for gp, gm in zip(g_plus, g_minus))


def hvp_tuple(f: Callable[[Tensors], Tensor], xs: Tensors, vs: Tensors,
              method: str = "double_backward", eps: float | None = None, batched: bool = False) -> Tensors:
    """:func:`hessian_vector_product` for a function of several tensors; no argument checks.

    ``f`` takes a tuple of tensors shaped like ``xs`` and returns a scalar; ``vs`` is shaped like
    ``xs``, or with ``batched=True`` stacks ``k`` directions, each tensor of shape ``(k, *x.shape)``
    (the exact methods then vectorize over them; finite differences loop). Returns a tuple shaped
    like ``vs``.
    """
    if method == "double_backward":
        return _double_backward(f, xs, vs, batched)
    if method == "forward_over_reverse":
        return _forward_over_reverse(f, xs, vs, batched)
    if method == "finite_difference":
        if not batched:
            return _finite_difference(f, xs, vs, eps)
        columns = [_finite_difference(f, xs, tuple(v[j] for v in vs), eps) for j in range(vs[0].shape[0])]
        return tuple(torch.stack(c) for c in zip(*columns))
    raise ValueError(f"method must be one of {HVP_METHODS}, got {method!r}")


def _check_x_v(x: object, v: object) -> None:
    check_tensor("x", x, finite=False)
    check_tensor("v", v, like=x, like_name="x")
    if v.shape != x.shape:
        raise ValueError(f"v must have the shape of x, {tuple(x.shape)}, got {tuple(v.shape)}")


def check_method(method: object, eps: object) -> float | None:
    """Check a ``method`` name and a finite-difference step ``eps`` (``None`` or > 0)."""
    if method not in HVP_METHODS:
        raise ValueError(f"method must be one of {HVP_METHODS}, got {method!r}")
    if eps is not None:
        if method != "finite_difference":
            raise ValueError(f"eps applies to method='finite_difference' only, got eps={eps!r} "
                             f"with method={method!r}")
        return check_positive("eps", eps)
    return None


def hvp(f: Callable[[Tensor], Tensor], x: Tensor, v: Tensor) -> Tensor:
    r"""Hessian-vector product :math:`\nabla^2 f(x)\, v` by double backward (Pearlmutter 1994).

    .. math::

        \nabla^2 f(x)\, v = \nabla_x \bigl( \nabla f(x)^\top v \bigr),

    since ``v`` is a constant: one forward pass, one backward pass that records its own graph, and a
    second backward pass through it ([P94]_). Exact up to rounding; never forms the Hessian.

    Parameters
    ----------
    f : callable
        Maps a tensor shaped like ``x`` to a scalar tensor; twice differentiable by autograd.
    x : Tensor, any shape
        Where the Hessian is taken. Not modified; it may or may not require grad.
    v : Tensor, shape of ``x``
        The direction; same dtype and device as ``x``, finite. Not modified.

    Returns
    -------
    Tensor, shape of ``x``
        :math:`\nabla^2 f(x)\, v`, detached from any graph. Zero where ``f`` is linear in ``x``.

    Raises
    ------
    ValueError
        If ``v`` differs from ``x`` in shape, dtype or device, ``v`` holds NaN or infinity, or ``f``
        does not return a scalar.

    See Also
    --------
    hessian_vector_product : the same product by forward-over-reverse or finite differences.
    """
    _check_x_v(x, v)
    (hv,) = _double_backward(lambda xs: f(xs[0]), (x,), (v,))
    return hv  # shape of x


def hessian_vector_product(f: Callable[[Tensor], Tensor], x: Tensor, v: Tensor,
                           method: str = "double_backward", eps: float | None = None) -> Tensor:
    r"""Hessian-vector product :math:`\nabla^2 f(x)\, v` by the chosen ``method``.

    The methods are described in the module docstring; all three return a tensor shaped like ``x``,
    detached, and leave ``x`` and ``v`` unmodified.

    ``"forward_over_reverse"`` falls back, silently and only for the call concerned, to reverse over
    reverse (``torch.func.vjp`` of ``torch.func.grad``, exact by symmetry of the Hessian) when
    PyTorch raises "ZeroTensors are immutable": the forward-mode formula of
    ``F.mse_loss(reduction="mean")`` hits that bug (pytorch#123996). The failed attempt costs about
    one forward pass.

    The default is ``"double_backward"``, the faster exact method: on ~1M-parameter tanh MLPs (CPU,
    2 threads, float64, B = 256 to 512) it costs 2.3 to 2.8 gradients, as much as two
    ``torch.autograd.grad`` calls written out by hand, against 3.0 to 3.2 for forward-over-reverse.
    Both are near the matrix-multiply work they do: double backward repeats, per ``Linear`` layer,
    9 of the gradient's 3 products (4 of 2 in the first layer), so 2.3 to 2.8 on these shapes (see
    ``bench.hvp.matmul_floor``); forward-over-reverse does two more in the first layer, because in
    torch 2.13 the forward-mode formula of ``addmm``/``mm`` multiplies the input's missing tangent
    as a materialized zero matrix. Finite differences cost about two gradients (2.0 to 2.3) but
    are approximate.

    Parameters
    ----------
    f : callable
        Maps a tensor shaped like ``x`` to a scalar tensor.
    x : Tensor, any shape
        Where the Hessian is taken.
    v : Tensor, shape of ``x``
        The direction (same dtype and device as ``x``, finite).
    method : {"double_backward", "forward_over_reverse", "finite_difference"}
        How to compute the product (see :data:`HVP_METHODS`).
    eps : float, optional
        Step :math:`h` of ``"finite_difference"`` along ``v`` (the points are :math:`x \pm h v`).
        Default: :func:`finite_difference_step`. Only valid with that method.

    Returns
    -------
    Tensor, shape of ``x``

    Raises
    ------
    ValueError
        On a mismatch of ``v`` with ``x``, a non-finite ``v``, an unknown ``method``, ``eps`` not
        positive or given with another method, or ``f`` not returning a scalar.
    """
    _check_x_v(x, v)
    eps = check_method(method, eps)
    (hv,) = hvp_tuple(lambda xs: f(xs[0]), (x.detach(),), (v,), method, eps)
    return hv  # shape of x
