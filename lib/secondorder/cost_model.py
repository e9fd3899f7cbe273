r"""What each optimizer costs per step: state memory and floating-point operations, from shapes alone.

:func:`optimizer_cost` applies the formulas below to a list of parameter shapes (or a module's
parameters); :func:`transformer_shapes` and :data:`PRESETS` give GPT-style models from 1M to 70B
parameters, :func:`transformer_config_for_size` one of any size and aspect ratio;
:func:`feasibility_table` puts the two together against one accelerator's memory;
:func:`measured_state_bytes` reads the real state of a ``torch.optim`` optimizer to check them.

Notation: :math:`N` parameters in all; a tensor with two or more dimensions is an
:math:`m \times n` matrix (first dimension × the rest), :math:`r = \min(m, n)`,
:math:`c = \max(m, n)`; :math:`k` is the number of steps between recomputations of a
preconditioner (``precondition_frequency``), :math:`h` the L-BFGS history. Memory counts only the
optimizer's state (not parameters, gradients or activations), in elements times ``dtype_bytes``;
FLOPs count one multiply or add as one operation, matrix products :math:`2mnp`.

==========  =========================================  ===============================================
method      state (elements)                           FLOPs per step
==========  =========================================  ===============================================
sgd         0                                          :math:`2N`
adam        :math:`2N` (moments)                       :math:`12N`
newton      :math:`N^2` (dense Hessian)                :math:`N^3/3 + 2N^2` (Cholesky, two solves)
bfgs        :math:`N^2` (:math:`H`)                    :math:`8N^2` (:math:`Hg` and a rank-two update)
lbfgs       :math:`2hN + 2N` (pairs, previous          :math:`4hN + 4N` (two-loop recursion)
            gradient and direction)
kfac        :math:`2(m^2 + n^2)` per matrix            :math:`4(m^2n + mn^2) + 10(m^3 + n^3)/k`
            (factors and their eigenvectors);          :math:`+ 2T(m^2 + n^2)/k_s` (statistics)
            an embedding's input factor is             :math:`+ 2N'T/k_s` (backward pass for
            diagonal: :math:`2(V + d^2)`               sampled labels)
shampoo     :math:`2(m^2 + n^2)` per block of at       :math:`4(m^2 n + m n^2) + 10(m^3 + n^3)/k` per
            most :math:`D \times D`; + :math:`2N` for  block; + :math:`16N` for Adam grafting
            Adam grafting
soap        :math:`2N` + :math:`2d^2` per side         :math:`12N + 6(m^2 n + m n^2)`
            :math:`d \le D`                            :math:`+ [4(m^3 + n^3) + 4(m^2n + mn^2)]/k`
muon        :math:`mn` per hidden matrix (momentum)    :math:`s(4 r^2 c + 2 r^3) + 6mn` per hidden
                                                       matrix
==========  =========================================  ===============================================

A parameter has a *role* (:class:`Param`): a hidden ``matrix``, an ``embedding`` (rows looked up by token,
:math:`V \times d`), the read-out ``head``, or a ``vector`` (biases, norms). K-FAC's statistics are counted for
:math:`T` tokens per refresh (``tokens``; 0 leaves them out) every :math:`k_s` steps (``stats_frequency``): the
factors :math:`A = a^\top a/T`, :math:`G = g^\top g/T` of each matrix, and, for the true Fisher
(``fisher="sampled"``), one more backward pass with labels sampled from the model's predictions, to the layer
outputs only (one product per matrix: :math:`2N'T` with :math:`N'` the weights of the matrices and
read-out, about a third of a forward and backward pass).

Parameters that a method does not precondition fall back to what the method's optimizer does with
them: K-FAC treats only matrices, and by default not the read-out (``kfac_head="exclude"``, as practical
K-FAC implementations do: its output factor would be vocabulary²); everything else gets SGD, no state.
An embedding is a linear map of one-hot inputs, so K-FAC's input factor for it is exactly diagonal (the token
frequencies, :math:`V` numbers). Shampoo treats a vector of length :math:`d` as a :math:`d \times 1` matrix with
a left factor only; SOAP gives non-matrices AdamW (:math:`2N`, :math:`12N`); Muon gives AdamW to vectors,
embeddings and the read-out (Jordan et al. 2024; ``muon_embeddings="muon"`` counts them as Muon matrices).
Details and sources are in :func:`optimizer_cost`.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import NamedTuple

import torch
from torch import nn

METHODS = ("sgd", "adam", "newton", "bfgs", "lbfgs", "kfac", "shampoo", "soap", "muon")
ROLES = ("matrix", "embedding", "head", "vector")
#: FLOPs per parameter and token of K-FAC's backward pass with sampled labels. It needs the gradients at the
#: layer outputs only, not at the weights: one product per matrix (embeddings, first in the model, need
#: none), a third of forward and backward's 6.
SAMPLED_BACKWARD_FLOPS = 2

#: FLOPs per parameter of one Adam step (moment updates, square root, division, parameter update).
ADAM_FLOPS = 12
#: An eigendecomposition plus the product :math:`Q \Lambda^{-1/p} Q^\top`: about :math:`10 d^3`.
EIGH_FLOPS = 10
#: SOAP's refresh: :math:`L Q` (:math:`2d^3`) and a QR decomposition (:math:`4d^3/3`), rounded up.
QR_REFRESH_FLOPS = 4

#: GPT-style models (see :func:`transformer_shapes`); ``d_ff`` defaults to ``4 * d_model``.
PRESETS = {
    "1M": dict(d_model=128, n_layers=4, vocab=512, context=256),
    "125M": dict(d_model=768, n_layers=12, vocab=50257, context=1024, tied=True),
    "1.3B": dict(d_model=2048, n_layers=24, vocab=50257, context=2048, tied=True),
    "7B": dict(d_model=4096, n_layers=32, vocab=32000, context=4096),
    "70B": dict(d_model=8192, n_layers=80, vocab=32000, context=4096, d_ff=36864),
}


class Param(NamedTuple):
    """A parameter's shape and role: ``"matrix"``, ``"embedding"``, ``"head"`` or ``"vector"`` (see :data:`ROLES`)."""

    shape: tuple[int, ...]
    role: str = "matrix"


@dataclass(frozen=True)
class Cost:
    """Cost of one optimizer on one model: ``n_params``, ``state_bytes``, ``flops_per_step``.

    ``matmul_flops`` is the part of ``flops_per_step`` spent in matrix–matrix products, the part that
    :func:`counted_flops` measures (factorizations, square roots and elementwise work are not in it).
    """

    method: str
    n_params: int
    state_bytes: int
    flops_per_step: float
    matmul_flops: float = 0.0


def _matrix(shape: Sequence[int]) -> tuple[int, int] | None:
    """``(m, n)`` for a tensor with two or more dimensions, ``None`` otherwise."""
    return (shape[0], math.prod(shape[1:])) if len(shape) >= 2 else None


def _pieces(d: int, D: int) -> list[int]:
    """Sizes of the pieces of a side of size ``d`` cut into pieces of at most ``D``."""
    return [D] * (d // D) + ([d % D] if d % D else [])


def _shampoo(shape, D, k, grafting) -> tuple[int, float, float]:
    numel = math.prod(shape)
    m, n = _matrix(shape) or (numel, 1)                          # a vector is one side (d × 1)
    mem, flops, matmul = 0, 0.0, 0.0
    for r in _pieces(m, D):
        for c in _pieces(n, D):
            # per block: factor and root per side; statistic and product with the root, 2·d²·other
            # each; the root, EIGH_FLOPS·d³ every k steps, of which Q Λ^(-1/p) Q^T is a 2·d³ product
            # (a vector's block has no right side)
            sides = ((r, c), (c, r)) if len(shape) >= 2 else ((r, c),)
            mem += sum(2 * d * d for d, _ in sides)
            flops += sum(4 * d * d * other + EIGH_FLOPS * d**3 / k for d, other in sides)
            matmul += sum(4 * d * d * other + 2 * d**3 / k for d, other in sides)
    # the grafted step (Adam's, or the gradient), the ratio of norms and the update
    graft_mem = 2 * numel if grafting == "adam" else 0
    graft_flops = {"adam": (ADAM_FLOPS + 4) * numel, "sgd": 6 * numel, "none": 2 * numel}[grafting]
    return mem + graft_mem, flops + graft_flops, matmul


def _soap(shape, D, k) -> tuple[int, float, float]:
    numel = math.prod(shape)
    mn = _matrix(shape)
    mem, flops, matmul = 2 * numel, float(ADAM_FLOPS * numel), 0.0
    for d in mn or ():
        if d <= D:
            other = numel // d
            # factor statistic, rotation to and from the eigenbasis: 3 × 2·d²·other; the refresh (L Q, a
            # 2·d³ product, and a QR) and the first moment's rotation into the new basis (2 × 2·d²·other)
            # every k steps
            mem += 2 * d * d
            flops += 6 * d * d * other + (QR_REFRESH_FLOPS * d**3 + 4 * d * d * other) / k
            matmul += 6 * d * d * other + (2 * d**3 + 4 * d * d * other) / k
    return mem, flops, matmul


def _muon(param: Param, ns_steps, embeddings: str) -> tuple[int, float, float]:
    shape = param.shape
    mn = _matrix(shape) if len(shape) == 2 else None
    if mn is None or (param.role in ("embedding", "head") and embeddings == "adamw"):
        return 2 * math.prod(shape), float(ADAM_FLOPS * math.prod(shape)), 0.0   # the AdamW part
    r, c = min(mn), max(mn)
    products = float(ns_steps * (4 * r * r * c + 2 * r**3))
    return r * c, products + 6 * r * c, products


def _kfac(param: Param, k, tokens, ks, head) -> tuple[int, float, float]:
    shape = param.shape
    mn = _matrix(shape)
    if mn is None or (param.role == "head" and head == "exclude"):
        return 0, 2.0 * math.prod(shape), 0.0                  # not preconditioned: plain SGD
    m, n = mn
    if param.role == "embedding":
        # V × d rows looked up by one-hot tokens: A = diag(token frequencies) (V numbers), G is d × d;
        # the step rotates by G's eigenvectors on one side (2 × 2·V·d²) and divides by A's diagonal
        V, d = m, n
        products = 4.0 * V * d * d + 2.0 * tokens * d * d / ks
        return 2 * (V + d * d), products + 2 * V * d + (EIGH_FLOPS * d**3 + V) / k + tokens / ks, products
    # the step in the factors' eigenbases, Q_G [(Q_G^T ∇W Q_A) ⊘ (λ_G + π)(λ_A + π)^T] Q_A^T: four
    # products; the eigendecompositions every k steps; the statistics a^T a, g^T g every k_s steps
    products = 4.0 * (m * m * n + m * n * n) + 2.0 * tokens * (m * m + n * n) / ks
    return 2 * (m * m + n * n), products + 3 * m * n + EIGH_FLOPS * (m**3 + n**3) / k, products


def _role(shape: tuple[int, ...], role: str | None) -> str:
    if role is None:
        return "matrix" if len(shape) >= 2 else "vector"
    if role not in ROLES:
        raise ValueError(f"role must be one of {ROLES}, got {role!r}")
    return "vector" if len(shape) < 2 else role


def _params(params) -> list[Param]:
    """:class:`Param` of each parameter of a module or of an iterable of shapes or ``(shape, role)`` pairs.

    In a module, ``nn.Embedding`` weights are embeddings and weights named ``head`` or ``lm_head`` the read-out.
    """
    if isinstance(params, nn.Module):
        embedding = {id(p) for m in params.modules() if isinstance(m, nn.Embedding) for p in m.parameters()}
        out = []
        for name, p in params.named_parameters():
            role = "embedding" if id(p) in embedding else "head" if name.split(".")[0] in ("head", "lm_head") else None
            out.append(Param(tuple(p.shape), _role(tuple(p.shape), role)))
        return out
    out = []
    for item in params:
        if len(item) == 2 and isinstance(item[1], str):            # (shape, role), or a Param
            shape, role = tuple(int(d) for d in item[0]), item[1]
        else:
            shape, role = tuple(int(d) for d in item), None
        out.append(Param(shape, _role(shape, role)))
    return out


def _parse(method: str, history: int) -> tuple[str, int]:
    match = re.fullmatch(r"lbfgs\((\d+)\)", method)
    if match:
        return "lbfgs", int(match.group(1))
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS} or 'lbfgs(m)', got {method!r}")
    return method, history


def optimizer_cost(params: nn.Module | Iterable[Sequence[int]], method: str, *, dtype_bytes: int = 4,
                   history: int = 10, precondition_frequency: int = 10, max_precond_dim: int | None = None,
                   ns_steps: int = 5, grafting: str = "adam", tokens: int = 0, stats_frequency: int = 1,
                   fisher: str = "sampled", kfac_head: str = "exclude", muon_embeddings: str = "adamw") -> Cost:
    r"""State memory and FLOPs per step of ``method`` for parameters of the given shapes.

    The formulas are those of the module's table:

    - **newton** stores the dense Hessian and factorizes it by Cholesky (:math:`N^3/3`), then
      solves two triangular systems (Nocedal & Wright, *Numerical Optimization*, §3.4); forming the
      Hessian is not counted.
    - **bfgs** stores :math:`H_k` and updates it with (6.17) of Nocedal & Wright in its expanded
      form (two matrix-vector products and a rank-two update); **lbfgs** stores :math:`h` pairs
      :math:`(s_i, y_i)`, the previous gradient and the direction, exactly what
      ``torch.optim.LBFGS`` keeps (Algorithm 7.4 for the :math:`4hN`).
    - **kfac** (Martens & Grosse, ICML 2015), as :class:`~secondorder.optim.KFAC` computes it: two Kronecker
      factors per weight matrix and the eigendecomposition of each (:math:`\approx 10 d^3` every :math:`k`
      steps); each step is four products in the eigenbases (:func:`~secondorder.kfac.kfac_precondition_eigh`).
      The statistics :math:`A = a^\top a/T` and :math:`G = g^\top g/T`, :math:`2T(m^2 + n^2)` for a layer
      seeing :math:`T` tokens (``tokens``), every ``stats_frequency`` steps, and for the true Fisher the
      backward pass with sampled labels to the layer outputs (:math:`2N'T`; ``fisher="empirical"`` reuses the
      training gradients and has none). These dominate at scale: on 4M tokens per step they are of the order of the
      forward and backward passes themselves. An embedding's input factor is diagonal (one-hot inputs); the
      read-out is left to SGD unless ``kfac_head="dense"`` (its :math:`V \times V` output factor).
    - **shampoo** (Gupta, Koren & Singer 2018; Anil et al. 2020): matrices are cut into blocks of
      at most :math:`D \times D` (``max_precond_dim``, default 1024); per block a factor and its
      root per side, :math:`2 d^2 \cdot \text{other}` flops each for the statistic and for applying
      the root, :math:`\approx 10 d^3` per root every :math:`k` steps; Adam grafting adds its two
      moments, grafting itself :math:`4N`.
    - **soap** (Vyas et al. 2024): Adam's two moments, plus a factor and an eigenbasis per side
      :math:`d \le D` (default 10000); per step a statistic and two rotations, every :math:`k`
      steps a QR refresh (:math:`\approx 4d^3`) and the first moment's rotation.
    - **muon** (Jordan et al. 2024): one momentum buffer per matrix and ``ns_steps`` Newton–Schulz
      iterations of :math:`4 r^2 c + 2 r^3` flops (:func:`~secondorder.matrix_functions.newton_schulz`) per
      hidden matrix; embeddings and the read-out get AdamW, as in practice (``muon_embeddings="muon"``
      counts them as Muon matrices).

    Parameters
    ----------
    params : nn.Module or iterable of shapes or (shape, role) pairs
        The model (roles from its ``nn.Embedding`` modules and a ``head``), its parameter shapes (every
        matrix hidden), or :class:`Param`\s (e.g. :func:`transformer_params`).
    method : str
        One of :data:`METHODS`, or ``"lbfgs(h)"`` for a history of ``h``.
    dtype_bytes : int
        Bytes per state element (4 for float32).
    history, precondition_frequency, max_precond_dim, ns_steps, grafting
        :math:`h`, :math:`k`, :math:`D` (default 1024 for Shampoo, 10000 for SOAP), Newton–Schulz
        steps, and Shampoo's grafting (``"adam"``, ``"sgd"`` or ``"none"``).
    tokens, stats_frequency, fisher, kfac_head
        K-FAC: tokens per statistics refresh :math:`T` (0: statistics not counted), refresh period
        :math:`k_s`, ``"sampled"`` or ``"empirical"`` Fisher, and ``"exclude"`` or ``"dense"`` for the read-out.
    muon_embeddings
        ``"adamw"`` (embeddings and read-out to AdamW) or ``"muon"``.

    Returns
    -------
    Cost
        With ``state_bytes`` an exact integer and ``flops_per_step`` a float.
    """
    method, history = _parse(method, history)
    for name, value, allowed in (("fisher", fisher, ("sampled", "empirical")),
                                 ("kfac_head", kfac_head, ("exclude", "dense")),
                                 ("muon_embeddings", muon_embeddings, ("adamw", "muon"))):
        if value not in allowed:
            raise ValueError(f"{name} must be one of {allowed}, got {value!r}")
    if tokens < 0 or stats_frequency < 1:
        raise ValueError(f"tokens must be >= 0 and stats_frequency >= 1, got {tokens!r} and {stats_frequency!r}")
    shapes = _params(params)
    N = sum(math.prod(p.shape) for p in shapes)
    k = precondition_frequency
    if method in ("sgd", "adam", "newton", "bfgs", "lbfgs"):
        elements, flops = {"sgd": (0, 2.0 * N), "adam": (2 * N, float(ADAM_FLOPS * N)),
                           "newton": (N * N, N**3 / 3 + 2.0 * N * N), "bfgs": (N * N, 8.0 * N * N),
                           "lbfgs": ((2 * history + 2) * N, float((4 * history + 4) * N))}[method]
        matmul = 0.0                                             # vector operations and factorizations only
    else:
        if method == "shampoo":
            D = max_precond_dim or 1024
            one = lambda p: _shampoo(p.shape, D, k, grafting)    # noqa: E731
        elif method == "soap":
            D = max_precond_dim or 10000
            one = lambda p: _soap(p.shape, D, k)                 # noqa: E731
        elif method == "muon":
            one = lambda p: _muon(p, ns_steps, muon_embeddings)  # noqa: E731
        else:
            one = lambda p: _kfac(p, k, tokens, stats_frequency, kfac_head)   # noqa: E731
        # A transformer repeats the same few shapes in every block: cost each distinct shape once.
        per = [(count, one(p)) for p, count in Counter(shapes).items()]
        elements = sum(count * e for count, (e, _, _) in per)
        flops = float(sum(count * f for count, (_, f, _) in per))
        matmul = float(sum(count * f for count, (_, _, f) in per))
        if method == "kfac" and fisher == "sampled":
            backward = SAMPLED_BACKWARD_FLOPS * tokens / stats_frequency * sum(
                math.prod(p.shape) for p in shapes if p.role in ("matrix", "head"))
            flops, matmul = flops + backward, matmul + backward
    return Cost(method, N, elements * dtype_bytes, flops, matmul)


def transformer_params(d_model: int, n_layers: int, vocab: int, d_ff: int | None = None,
                       context: int = 1024, tied: bool = False) -> list[Param]:
    r"""Parameters (shape and role) of a GPT-style decoder laid out like :class:`~secondorder.problems.TinyTransformer`.

    Token and position embeddings; per block two LayerNorms, separate query, key, value and output
    projections (``nn.Linear`` with bias) and a two-layer MLP of width ``d_ff`` (default
    ``4 * d_model``); a final LayerNorm and a read-out with bias, whose weight is the token
    embedding when ``tied`` (then counted once, as an embedding). About :math:`12\, d^2` parameters per block.
    """
    d, f = d_model, d_ff or 4 * d_model
    vec = lambda n: Param((n,), "vector")                        # noqa: E731
    block = [vec(d), vec(d)] + [Param((d, d)), vec(d)] * 4 + [vec(d), vec(d), Param((f, d)), vec(f),
                                                                 Param((d, f)), vec(d)]
    head = [vec(vocab)] if tied else [Param((vocab, d), "head"), vec(vocab)]
    return ([Param((vocab, d), "embedding"), Param((context, d), "embedding")] + block * n_layers
            + [vec(d), vec(d)] + head)


def transformer_shapes(d_model: int, n_layers: int, vocab: int, d_ff: int | None = None,
                       context: int = 1024, tied: bool = False) -> list[tuple[int, ...]]:
    """The shapes of :func:`transformer_params`."""
    return [p.shape for p in transformer_params(d_model, n_layers, vocab, d_ff, context, tied)]


def transformer_config_for_size(n_params: float, *, vocab: int = 32000, aspect: float = 128.0,
                                d_ff_mult: int = 4, context: int = 4096, tied: bool = False) -> dict:
    r"""Keyword arguments of :func:`transformer_shapes` for a model of about ``n_params`` parameters.

    The width :math:`d` runs over multiples of 64 and the depth is :math:`L = \max(1,
    \operatorname{round}(d / \text{aspect}))`; the pair whose count is closest to ``n_params`` (in
    ratio) wins. ``aspect`` 128 is the ratio of the 7B preset (4096 / 32); smaller values give deep,
    narrow models. Counts come from the same layout as :func:`transformer_shapes`: per block
    :math:`(4 + 2 f) d^2` weights with :math:`f` = ``d_ff_mult``, plus biases and norms, plus the
    embeddings (``vocab · d`` and ``context · d``) and the read-out.

    Returns
    -------
    dict
        ``d_model``, ``n_layers``, ``vocab``, ``d_ff``, ``context``, ``tied``.
    """
    if not n_params > 0 or not aspect > 0:
        raise ValueError(f"n_params and aspect must be positive, got {n_params!r} and {aspect!r}")

    def count(d: int, L: int) -> int:
        f = d_ff_mult * d
        block = 4 * (d * d + d) + 2 * d + 2 * f * d + f + d + 2 * d
        head = vocab if tied else vocab * d + vocab
        return vocab * d + context * d + L * block + 2 * d + head

    candidates = [(d, max(1, round(d / aspect))) for d in range(64, 65537, 64)]
    d, L = min(candidates, key=lambda dl: abs(math.log(count(*dl) / n_params)))
    return dict(d_model=d, n_layers=L, vocab=vocab, d_ff=d_ff_mult * d, context=context, tied=tied)


def preset_params(name: str) -> list[Param]:
    """Parameters (shape and role) of one of :data:`PRESETS` ("1M", "125M", "1.3B", "7B", "70B")."""
    if name not in PRESETS:
        raise ValueError(f"preset must be one of {tuple(PRESETS)}, got {name!r}")
    return transformer_params(**PRESETS[name])


def preset_shapes(name: str) -> list[tuple[int, ...]]:
    """Shapes of one of :data:`PRESETS`."""
    return [p.shape for p in preset_params(name)]


def feasibility_table(presets: Iterable[str] = tuple(PRESETS), methods: Iterable[str] = METHODS, *,
                      memory_bytes: float = 80e9, dtype_bytes: int = 4, **options) -> list[dict]:
    """One row per (preset, method): parameter count, state, total memory, FLOPs and whether it fits.

    ``total_bytes`` counts parameters, gradients and optimizer state (``(2N) · dtype_bytes`` +
    state), not activations; ``fits`` compares it with ``memory_bytes`` (80 GB: one H100).
    ``options`` go to :func:`optimizer_cost`.
    """
    rows = []
    for name in presets:
        shapes = preset_params(name)
        for method in methods:
            cost = optimizer_cost(shapes, method, dtype_bytes=dtype_bytes, **options)
            total = 2 * cost.n_params * dtype_bytes + cost.state_bytes
            rows.append(dict(preset=name, method=cost.method, n_params=cost.n_params,
                             state_bytes=cost.state_bytes, total_bytes=total,
                             flops_per_step=cost.flops_per_step, fits=total <= memory_bytes))
    return rows


def measured_state_bytes(optimizer: torch.optim.Optimizer) -> int:
    r"""Bytes held by an optimizer's state tensors (lists of tensors included).

    0-dimensional tensors (step counters, scalars such as L-BFGS's :math:`\rho_i`) are left out,
    as in :func:`optimizer_cost`.
    """
    def nbytes(value) -> int:
        if isinstance(value, torch.Tensor):
            return value.nbytes if value.ndim > 0 else 0
        if isinstance(value, (list, tuple)):
            return sum(nbytes(v) for v in value)
        return 0

    return sum(nbytes(v) for state in optimizer.state.values() for v in state.values())


def counted_flops(fn, *args, **kwargs) -> int:
    r"""FLOPs of the matrix products that ``fn(*args, **kwargs)`` runs, as PyTorch counts them.

    Uses :class:`torch.utils.flop_counter.FlopCounterMode`, which counts :math:`2mnp` for every matrix
    product (``mm``, ``addmm``, ``bmm``, attention) on any device and nothing else: factorizations
    (``eigh``, ``qr``, ``cholesky``) and elementwise work are not in it. Compare it with
    :attr:`Cost.matmul_flops`.
    """
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        fn(*args, **kwargs)
    return int(counter.get_total_flops())
