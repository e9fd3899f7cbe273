r"""The Fisher information of a classifier from its definition, a layer's exact Fisher block, reparametrizations.

Dense oracles for small models, written from the definition rather than from the Jacobian products of
:mod:`secondorder.curvature`, so that the two can check each other. For a classifier with logits
:math:`o(x; \theta) \in \mathbb{R}^C`, predictive distribution :math:`p(c \mid x) = \operatorname{softmax}(o)_c`
and inputs :math:`x_1, \dots, x_N`, the Fisher information of the mean log-likelihood is

.. math::

    F(\theta) = \frac1N \sum_{n=1}^N \sum_{c=1}^C p(c \mid x_n)\,
    \nabla_\theta \log p(c \mid x_n)\, \nabla_\theta \log p(c \mid x_n)^\top ,

an expectation over labels drawn from the *model*, not over the training labels ([M20]_, Section 5).
Enumerating the :math:`C` labels replaces the expectation by an exact sum.

For one ``nn.Linear`` layer :math:`z_n = W a_n` (bias folded into :math:`W` by a column of ones, see
:func:`secondorder.kfac.append_ones`), write :math:`g_{nc} = \partial(-\log p(c \mid x_n)) / \partial z_n`.
Then :math:`\nabla_W (-\log p(c \mid x_n)) = g_{nc} a_n^\top` and the layer's block of :math:`F`, with
:math:`W` flattened row by row as in :mod:`secondorder.kfac`, is

.. math::

    F_W = \frac1N \sum_n \Bigl(\sum_c p_{nc}\, g_{nc} g_{nc}^\top\Bigr) \otimes a_n a_n^\top
        = \frac1N \sum_n \Gamma_n \otimes a_n a_n^\top ,

a mean of Kronecker products. K-FAC ([MG15]_, Section 3) replaces it by the Kronecker product of the
means, :math:`G \otimes A` with :math:`G = \frac1N \sum_n \Gamma_n`, :math:`A = \frac1N \sum_n a_n a_n^\top`:
exact when :math:`N = 1` or when :math:`\Gamma_n` does not vary with :math:`n`.

References
----------
.. [MG15] J. Martens and R. Grosse, "Optimizing neural networks with Kronecker-factored approximate
   curvature", *ICML* 2015.
.. [M20] J. Martens, "New insights and perspectives on the natural gradient method", *JMLR* 21, 2020.
.. [A98] S. Amari, "Natural gradient works efficiently in learning", *Neural Computation* 10(2), 1998.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.func import functional_call, grad, vmap

from ._validation import check_tensor
from .problems.base import MAX_DENSE_HESSIAN


def label_gradients(model: nn.Module, layer: nn.Linear, inputs: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    r"""A layer's inputs and its output gradients for every possible label of a classifier.

    Runs ``model(inputs)`` once (logits of shape ``(N, C)``) with a hook on ``layer`` and
    backpropagates :math:`\sum_n -\log p(c \mid x_n)` to the layer's output :math:`z`, once per class
    :math:`c`. Because :math:`z_n` depends on example :math:`n` only (an MLP, not attention across
    examples), row :math:`n` of the result is the gradient of example :math:`n`'s own loss,
    :math:`g_{nc} = \partial (-\log p(c \mid x_n)) / \partial z_n`.

    Parameters
    ----------
    model : nn.Module
        A classifier returning logits ``(N, C)``; ``layer`` must be called exactly once in its forward.
    layer : nn.Linear
        A layer of ``model`` whose weight requires grad.
    inputs : Tensor, shape (N, ...)
        A batch of inputs.

    Returns
    -------
    a : Tensor, shape (N, d_in)
        The layer's inputs (no column of ones appended).
    g : Tensor, shape (C, N, d_out)
        ``g[c, n]`` is :math:`g_{nc}`.
    p : Tensor, shape (N, C)
        The model's probabilities :math:`p(c \mid x_n)`.
    """
    if not isinstance(layer, nn.Linear) or not any(m is layer for m in model.modules()):
        raise ValueError("layer must be an nn.Linear inside model")
    if not layer.weight.requires_grad:
        raise ValueError("layer: its weight must require grad (the gradients are taken at its output)")
    records: list[tuple[Tensor, Tensor]] = []
    handle = layer.register_forward_hook(lambda m, i, o: records.append((i[0], o)))
    try:
        with torch.enable_grad():
            logits = model(inputs)                                        # (N, C)
    finally:
        handle.remove()
    if len(records) != 1:
        raise ValueError(f"layer must be called exactly once by model's forward, got {len(records)} calls")
    if logits.ndim != 2:
        raise ValueError(f"model must return logits of shape (N, C), got {tuple(logits.shape)}")
    a, z = records[0]                                                     # (N, d_in), (N, d_out)
    log_p = logits.log_softmax(dim=1)                                     # (N, C)
    g = torch.stack([torch.autograd.grad(-log_p[:, c].sum(), z, retain_graph=True)[0]
                     for c in range(logits.shape[1])])                    # (C, N, d_out)
    return a.detach(), g.detach(), log_p.exp().detach()


def _check_statistics(a: Tensor, g: Tensor, p: Tensor) -> None:
    check_tensor("a", a, ndim=2)
    check_tensor("g", g, ndim=3, like=a, like_name="a")
    check_tensor("p", p, ndim=2, like=a, like_name="a")
    N, C = p.shape
    if a.shape[0] != N or g.shape[:2] != (C, N):
        raise ValueError(f"a (N, d_in), g (C, N, d_out) and p (N, C) must agree in N and C, got shapes "
                         f"{tuple(a.shape)}, {tuple(g.shape)}, {tuple(p.shape)}")


def output_gradient_covariances(g: Tensor, p: Tensor) -> Tensor:
    r"""Per-example :math:`\Gamma_n = \sum_c p_{nc}\, g_{nc} g_{nc}^\top`, shape ``(N, d_out, d_out)``.

    The expectation of :math:`g_n g_n^\top` over labels drawn from the model; for the logits layer
    it is :math:`\operatorname{diag}(p_n) - p_n p_n^\top`, the Hessian of the cross-entropy in the logits.
    """
    check_tensor("g", g, ndim=3)
    check_tensor("p", p, ndim=2, like=g, like_name="g")
    if p.shape != (g.shape[1], g.shape[0]):
        raise ValueError(f"p must have shape (N, C) = {(g.shape[1], g.shape[0])} to match g, got {tuple(p.shape)}")
    return torch.einsum("nc,cni,cnk->nik", p, g, g)                      # (N, d_out, d_out)


def exact_fisher_block(a: Tensor, g: Tensor, p: Tensor) -> Tensor:
    r"""The layer's exact Fisher block :math:`F_W = \frac1N \sum_n \Gamma_n \otimes a_n a_n^\top` (dense).

    Rows and columns follow :math:`W` flattened row by row (``W.flatten()``), as
    :func:`secondorder.kfac.kfac_block` does, so the two can be compared entry by entry.
    Append a column of ones to ``a`` to include the bias as a last column of :math:`W`.

    Parameters
    ----------
    a : Tensor, shape (N, d_in)
    g : Tensor, shape (C, N, d_out)
    p : Tensor, shape (N, C)
        As returned by :func:`label_gradients`.

    Returns
    -------
    Tensor, shape (d_out * d_in, d_out * d_in)
    """
    _check_statistics(a, g, p)
    N, d_in = a.shape
    d_out = g.shape[2]
    if (d_out * d_in) > MAX_DENSE_HESSIAN:
        raise ValueError(f"exact_fisher_block: d_out·d_in = {d_out * d_in} exceeds {MAX_DENSE_HESSIAN}")
    Gamma = output_gradient_covariances(g, p).reshape(N, d_out * d_out)  # (N, d_out²)
    AA = (a[:, :, None] * a[:, None, :]).reshape(N, d_in * d_in)         # (N, d_in²)
    F4 = (Gamma.T @ AA / N).reshape(d_out, d_out, d_in, d_in)            # [i, k, j, l]
    return F4.permute(0, 2, 1, 3).reshape(d_out * d_in, d_out * d_in)   # [(i, j), (k, l)]


def expected_kfac_factors(a: Tensor, g: Tensor, p: Tensor) -> tuple[Tensor, Tensor]:
    r"""K-FAC's factors with the expectation over labels exact: :math:`A = a^\top a / N`, :math:`G = \bar\Gamma`.

    :math:`\bar\Gamma = \frac1N \sum_n \Gamma_n` (:func:`output_gradient_covariances`).

    The same as :func:`secondorder.kfac.kfac_factors` on ``a`` and on every :math:`g_{nc}` weighted
    by :math:`p_{nc}`, without the Monte Carlo noise of one sampled label per example.

    Returns
    -------
    A : Tensor, shape (d_in, d_in)
    G : Tensor, shape (d_out, d_out)
    """
    _check_statistics(a, g, p)
    N = a.shape[0]
    G = torch.einsum("nc,cni,cnk->ik", p, g, g) / N                       # (d_out, d_out)
    return a.T @ a / N, G.contiguous()                                    # (d_in, d_in), (d_out, d_out)


def fisher_by_enumeration(model: nn.Module, inputs: Tensor, params=None) -> Tensor:
    r"""The Fisher information of a classifier, dense, from its definition (module docstring).

    Per-example scores :math:`\nabla_\theta \log p(c \mid x_n)` come from ``torch.func.vmap`` of
    ``torch.func.grad`` over the examples, once per class; no Jacobian-vector products and no output
    Hessian are used, which makes this an independent check of
    :class:`~secondorder.curvature.FisherOperator` and :class:`~secondorder.curvature.GGNOperator`.
    Memory :math:`N C n`; small models only.

    Parameters
    ----------
    model : nn.Module
        Returns logits ``(N, C)`` for inputs ``(N, ...)``, one example at a time as well as batched.
    inputs : Tensor, shape (N, ...)
    params : sequence of Tensor, optional
        Parameters of ``model`` to differentiate in (default: all that require grad), in that order.

    Returns
    -------
    Tensor, shape (n, n)
        Over the parameters flattened and concatenated in order.
    """
    named = dict(model.named_parameters())
    if params is None:
        params = [p for p in model.parameters() if p.requires_grad]
    names = {id(p): name for name, p in named.items()}
    params = list(params)
    if not params or any(id(p) not in names for p in params):
        raise ValueError("params must be a non-empty list of the model's own parameters")
    n = sum(p.numel() for p in params)
    if n > MAX_DENSE_HESSIAN:
        raise ValueError(f"fisher_by_enumeration: n = {n} exceeds {MAX_DENSE_HESSIAN}")
    keys = [names[id(p)] for p in params]
    frozen = {k: v.detach() for k, v in named.items()}

    def log_prob(ps, x, c: int):
        values = {**frozen, **dict(zip(keys, ps))}
        logits = functional_call(model, values, (x[None],))[0]           # (C,)
        return logits.log_softmax(dim=0)[c]

    ps = tuple(p.detach() for p in params)
    with torch.no_grad():
        probs = model(inputs).softmax(dim=1)                              # (N, C)
    N, C = probs.shape
    F = torch.zeros(n, n, dtype=ps[0].dtype, device=ps[0].device)
    for c in range(C):
        scores = vmap(grad(log_prob), in_dims=(None, 0, None))(ps, inputs, c)
        S = torch.cat([s.reshape(N, -1) for s in scores], dim=1)          # (N, n)
        F += S.T @ (probs[:, c:c + 1] * S)                                # (n, n)
    return F / N


class ReparametrizedLinear(nn.Module):
    r"""A linear classifier :math:`x \mapsto W x + b` in the coordinates :math:`\varphi` of :math:`\theta = P \varphi`.

    :math:`\theta = (\operatorname{vec} W, b)`.

    The only trainable parameter is :math:`\varphi` (``self.phi``); ``P`` is a fixed invertible
    matrix. :math:`\theta` is packed like :func:`secondorder.problems.softmax_regression`'s ``x``:
    ``W`` flattened row by row, then ``b``. Gradients, Fisher and Hessian computed by autograd on this
    module are those of the same model in the coordinates :math:`\varphi`: for instance
    :math:`\nabla_\varphi L = P^\top \nabla_\theta L` and :math:`F_\varphi = P^\top F_\theta P`, which is
    why the natural gradient step :math:`P\, F_\varphi^{-1} \nabla_\varphi L = F_\theta^{-1} \nabla_\theta L`
    does not depend on :math:`P` while the gradient step :math:`P P^\top \nabla_\theta L` does ([A98]_).

    Parameters
    ----------
    P : Tensor, shape (n, n)
        Invertible, ``n = d_out * d_in + d_out``.
    d_in, d_out : int
    theta : Tensor, shape (n,), optional
        Initial :math:`\theta` (default zero); :math:`\varphi = P^{-1} \theta`.
    """

    def __init__(self, P: Tensor, d_in: int, d_out: int, theta: Tensor | None = None):
        super().__init__()
        n = d_out * d_in + d_out
        check_tensor("P", P, ndim=2)
        if P.shape != (n, n):
            raise ValueError(f"P must be {n}×{n} for d_in = {d_in}, d_out = {d_out}, got {tuple(P.shape)}")
        self.d_in, self.d_out = d_in, d_out
        self.register_buffer("P", P.detach().clone())
        phi = torch.zeros(n, dtype=P.dtype, device=P.device) if theta is None else \
            torch.linalg.solve(P, check_tensor("theta", theta, ndim=1, like=P, like_name="P"))
        self.phi = nn.Parameter(phi)                                      # (n,)

    def theta(self) -> Tensor:
        r""":math:`\theta = P \varphi`, shape ``(n,)``."""
        return self.P @ self.phi

    def forward(self, x: Tensor) -> Tensor:
        """Logits ``(N, d_out)`` for inputs ``(N, d_in)``."""
        theta = self.theta()
        k = self.d_out * self.d_in
        W, b = theta[:k].view(self.d_out, self.d_in), theta[k:]           # (d_out, d_in), (d_out,)
        return x @ W.T + b
