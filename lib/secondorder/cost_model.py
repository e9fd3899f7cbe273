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
kfac        :math:`2(m^2 + n^2)` per matrix            :math:`2m^2n + 2mn^2 + (m^3 + n^3)/k`
            (factors and their inverses)
shampoo     :math:`2(m^2 + n^2)` per block of at       :math:`4(m^2 n + m n^2) + 10(m^3 + n^3)/k` per
            most :math:`D \times D`; + :math:`2N` for  block; + :math:`16N` for Adam grafting
            Adam grafting
soap        :math:`2N` + :math:`2d^2` per side         :math:`12N + 6(m^2 n + m n^2)`
            :math:`d \le D`                            :math:`+ [4(m^3 + n^3) + 4(m^2n + mn^2)]/k`
muon        :math:`mn` per matrix (momentum)           :math:`s(4 r^2 c + 2 r^3) + 6mn` per matrix
==========  =========================================  ===============================================

Parameters that a method does not precondition fall back to what the method's optimizer does with
them: K-FAC treats only matrices (everything else: SGD, no state); Shampoo treats a vector of
length :math:`d` as a :math:`d \times 1` matrix with a left factor only; SOAP and Muon give
non-matrices AdamW (:math:`2N`, :math:`12N`).
Details and sources are in :func:`optimizer_cost`.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import torch
from torch import nn

METHODS = ("sgd", "adam", "newton", "bfgs", "lbfgs", "kfac", "shampoo", "soap", "muon")

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


@dataclass(frozen=True)
class Cost:
    """Cost of one optimizer on one model: ``n_params``, ``state_bytes``, ``flops_per_step``."""

    method: str
    n_params: int
    state_bytes: int
    flops_per_step: float


def _matrix(shape: Sequence[int]) -> tuple[int, int] | None:
    """``(m, n)`` for a tensor with two or more dimensions, ``None`` otherwise."""
    return (shape[0], math.prod(shape[1:])) if len(shape) >= 2 else None


def _pieces(d: int, D: int) -> list[int]:
    """Sizes of the pieces of a side of size ``d`` cut into pieces of at most ``D``."""
    return [D] * (d // D) + ([d % D] if d % D else [])


def _shampoo(shape, D, k, grafting) -> tuple[int, float]:
    numel = math.prod(shape)
    m, n = _matrix(shape) or (numel, 1)                          # a vector is one side (d × 1)
    mem, flops = 0, 0.0
    for r in _pieces(m, D):
        for c in _pieces(n, D):
            # per block: factor and root per side; statistic and product with the root, 2·d²·other
            # each; the root, EIGH_FLOPS·d³ every k steps (a vector's block has no right side)
            sides = ((r, c), (c, r)) if len(shape) >= 2 else ((r, c),)
            mem += sum(2 * d * d for d, _ in sides)
            flops += sum(4 * d * d * other + EIGH_FLOPS * d**3 / k for d, other in sides)
    # the grafted step (Adam's, or the gradient), the ratio of norms and the update
    graft_mem = 2 * numel if grafting == "adam" else 0
    graft_flops = {"adam": (ADAM_FLOPS + 4) * numel, "sgd": 6 * numel, "none": 2 * numel}[grafting]
    return mem + graft_mem, flops + graft_flops


def _soap(shape, D, k) -> tuple[int, float]:
    numel = math.prod(shape)
    mn = _matrix(shape)
    mem, flops = 2 * numel, float(ADAM_FLOPS * numel)
    for d in mn or ():
        if d <= D:
            other = numel // d
            # factor statistic, rotation to and from the eigenbasis: 3 × 2·d²·other; the refresh and
            # the first moment's rotation into the new basis (2 × 2·d²·other) every k steps
            mem += 2 * d * d
            flops += 6 * d * d * other + (QR_REFRESH_FLOPS * d**3 + 4 * d * d * other) / k
    return mem, flops


def _muon(shape, ns_steps) -> tuple[int, float]:
    mn = _matrix(shape) if len(shape) == 2 else None
    if mn is None:
        return 2 * math.prod(shape), float(ADAM_FLOPS * math.prod(shape))   # the AdamW part
    r, c = min(mn), max(mn)
    return r * c, float(ns_steps * (4 * r * r * c + 2 * r**3) + 6 * r * c)


def _kfac(shape, k) -> tuple[int, float]:
    mn = _matrix(shape)
    if mn is None:
        return 0, 2.0 * math.prod(shape)
    m, n = mn
    return 2 * (m * m + n * n), 2.0 * m * m * n + 2.0 * m * n * n + (m**3 + n**3) / k


def _shapes(params) -> list[tuple[int, ...]]:
    if isinstance(params, nn.Module):
        return [tuple(p.shape) for p in params.parameters()]
    return [tuple(int(d) for d in s) for s in params]


def _parse(method: str, history: int) -> tuple[str, int]:
    match = re.fullmatch(r"lbfgs\((\d+)\)", method)
    if match:
        return "lbfgs", int(match.group(1))
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS} or 'lbfgs(m)', got {method!r}")
    return method, history


def optimizer_cost(params: nn.Module | Iterable[Sequence[int]], method: str, *, dtype_bytes: int = 4,
                   history: int = 10, precondition_frequency: int = 10, max_precond_dim: int | None = None,
                   ns_steps: int = 5, grafting: str = "adam") -> Cost:
    r"""State memory and FLOPs per step of ``method`` for parameters of the given shapes.

    The formulas are those of the module's table:

    - **newton** stores the dense Hessian and factorizes it by Cholesky (:math:`N^3/3`), then
      solves two triangular systems (Nocedal & Wright, *Numerical Optimization*, §3.4); forming the
      Hessian is not counted.
    - **bfgs** stores :math:`H_k` and updates it with (6.17) of Nocedal & Wright in its expanded
      form (two matrix-vector products and a rank-two update); **lbfgs** stores :math:`h` pairs
      :math:`(s_i, y_i)`, the previous gradient and the direction, exactly what
      ``torch.optim.LBFGS`` keeps (Algorithm 7.4 for the :math:`4hN`).
    - **kfac** (Martens & Grosse, ICML 2015): two Kronecker factors per weight matrix and an
      inverse (or eigendecomposition) of each, :math:`\approx d^3` flops per factor every
      :math:`k` steps; the factor statistics come from activations and depend on the batch, so
      they are not counted.
    - **shampoo** (Gupta, Koren & Singer 2018; Anil et al. 2020): matrices are cut into blocks of
      at most :math:`D \times D` (``max_precond_dim``, default 1024); per block a factor and its
      root per side, :math:`2 d^2 \cdot \text{other}` flops each for the statistic and for applying
      the root, :math:`\approx 10 d^3` per root every :math:`k` steps; Adam grafting adds its two
      moments, grafting itself :math:`4N`.
    - **soap** (Vyas et al. 2024): Adam's two moments, plus a factor and an eigenbasis per side
      :math:`d \le D` (default 10000); per step a statistic and two rotations, every :math:`k`
      steps a QR refresh (:math:`\approx 4d^3`) and the first moment's rotation.
    - **muon** (Jordan et al. 2024): one momentum buffer per matrix and ``ns_steps`` Newton–Schulz
      iterations of :math:`4 r^2 c + 2 r^3` flops (:func:`~secondorder.matrix_functions.newton_schulz`);
      every 2-D shape counts as a Muon matrix (an embedding given to AdamW costs :math:`mn` more).

    Parameters
    ----------
    params : nn.Module or iterable of shapes
        The model, or its parameter shapes (e.g. :func:`transformer_shapes`).
    method : str
        One of :data:`METHODS`, or ``"lbfgs(h)"`` for a history of ``h``.
    dtype_bytes : int
        Bytes per state element (4 for float32).
    history, precondition_frequency, max_precond_dim, ns_steps, grafting
        :math:`h`, :math:`k`, :math:`D` (default 1024 for Shampoo, 10000 for SOAP), Newton–Schulz
        steps, and Shampoo's grafting (``"adam"``, ``"sgd"`` or ``"none"``).

    Returns
    -------
    Cost
        With ``state_bytes`` an exact integer and ``flops_per_step`` a float.
    """
    method, history = _parse(method, history)
    shapes = _shapes(params)
    N = sum(math.prod(s) for s in shapes)
    k = precondition_frequency
    if method in ("sgd", "adam", "newton", "bfgs", "lbfgs"):
        elements, flops = {"sgd": (0, 2.0 * N), "adam": (2 * N, float(ADAM_FLOPS * N)),
                           "newton": (N * N, N**3 / 3 + 2.0 * N * N), "bfgs": (N * N, 8.0 * N * N),
                           "lbfgs": ((2 * history + 2) * N, float((4 * history + 4) * N))}[method]
    else:
        if method == "shampoo":
            D = max_precond_dim or 1024
            one = lambda s: _shampoo(s, D, k, grafting)          # noqa: E731
        elif method == "soap":
            D = max_precond_dim or 10000
            one = lambda s: _soap(s, D, k)                       # noqa: E731
        elif method == "muon":
            one = lambda s: _muon(s, ns_steps)                   # noqa: E731
        else:
            one = lambda s: _kfac(s, k)                          # noqa: E731
        # A transformer repeats the same few shapes in every block: cost each distinct shape once.
        per = [(count, one(s)) for s, count in Counter(shapes).items()]
        elements = sum(count * e for count, (e, _) in per)
        flops = float(sum(count * f for count, (_, f) in per))
    return Cost(method, N, elements * dtype_bytes, flops)


def transformer_shapes(d_model: int, n_layers: int, vocab: int, d_ff: int | None = None,
                       context: int = 1024, tied: bool = False) -> list[tuple[int, ...]]:
    r"""Parameter shapes of a GPT-style decoder laid out like :class:`~secondorder.problems.TinyTransformer`.

    Token and position embeddings; per block two LayerNorms, separate query, key, value and output
    projections (``nn.Linear`` with bias) and a two-layer MLP of width ``d_ff`` (default
    ``4 * d_model``); a final LayerNorm and a read-out with bias, whose weight is the token
    embedding when ``tied``. About :math:`12\, d^2` parameters per block.
    """
    d, f = d_model, d_ff or 4 * d_model
    block = [(d,), (d,)] + [(d, d), (d,)] * 4 + [(d,), (d,), (f, d), (f,), (d, f), (d,)]
    head = [(vocab,)] if tied else [(vocab, d), (vocab,)]
    return [(vocab, d), (context, d)] + block * n_layers + [(d,), (d,)] + head


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


def preset_shapes(name: str) -> list[tuple[int, ...]]:
    """Shapes of one of :data:`PRESETS` ("1M", "125M", "1.3B", "7B", "70B")."""
    if name not in PRESETS:
        raise ValueError(f"preset must be one of {tuple(PRESETS)}, got {name!r}")
    return transformer_shapes(**PRESETS[name])


def feasibility_table(presets: Iterable[str] = tuple(PRESETS), methods: Iterable[str] = METHODS, *,
                      memory_bytes: float = 80e9, dtype_bytes: int = 4, **options) -> list[dict]:
    """One row per (preset, method): parameter count, state, total memory, FLOPs and whether it fits.

    ``total_bytes`` counts parameters, gradients and optimizer state (``(2N) · dtype_bytes`` +
    state), not activations; ``fits`` compares it with ``memory_bytes`` (80 GB: one H100).
    ``options`` go to :func:`optimizer_cost`.
    """
    rows = []
    for name in presets:
        shapes = preset_shapes(name)
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
