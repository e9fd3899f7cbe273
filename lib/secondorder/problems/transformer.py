"""A tiny character-level transformer language model: the course's large-scale stand-in.

The architecture follows the decoder of Vaswani et al., "Attention is all you need" (NeurIPS 2017)
with the pre-LayerNorm arrangement of GPT-2 (Radford et al., 2019; analysed by Xiong et al., "On
layer normalization in the transformer architecture", ICML 2020). Every weight matrix that acts on
features is an ``nn.Linear`` (queries, keys, values, output projection, both MLP layers, the
read-out), so Kronecker-factored and orthogonalizing optimizers find them by type; the token and
position embeddings are ``nn.Embedding`` and the LayerNorms hold the only 1-D parameters besides
the biases.

Attention runs on PyTorch's "math" kernel by default: the fused kernels (flash and memory-efficient
attention, on CPU and GPU) have no double backward, so Hessian-vector products and other
second-order autograd through them fail with "derivative ... is not implemented". The math kernel
is built from ordinary differentiable operations; ``fused_attention=True`` trades that for speed in
first-order training.
"""

from __future__ import annotations

import math
from contextlib import nullcontext
from dataclasses import dataclass
from importlib.resources import files

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.attention import SDPBackend, sdpa_kernel

from secondorder.problems.base import ModelProblem, seeded_initialization


class CausalSelfAttention(nn.Module):
    """Multi-head self-attention where position ``t`` only sees positions ``<= t``.

    ``fused=False`` pins ``scaled_dot_product_attention`` to its twice-differentiable math kernel.
    """

    def __init__(self, d_model: int, n_heads: int, fused: bool = False):
        super().__init__()
        if d_model % n_heads:
            raise ValueError(f"d_model = {d_model} must be divisible by n_heads = {n_heads}")
        self.n_heads = n_heads
        self.fused = fused
        self.query = nn.Linear(d_model, d_model)
        self.key = nn.Linear(d_model, d_model)
        self.value = nn.Linear(d_model, d_model)
        self.proj = nn.Linear(d_model, d_model)

    def forward(self, h: Tensor) -> Tensor:
        """Map hidden states ``(B, T, C)`` to the attention output ``(B, T, C)``."""
        B, T, C = h.shape  # batch, time, channels
        nh = self.n_heads

        def heads(t: Tensor) -> Tensor:
            return t.view(B, T, nh, C // nh).transpose(1, 2)  # (B, nh, T, hs)

        q, k, v = heads(self.query(h)), heads(self.key(h)), heads(self.value(h))  # (B, nh, T, hs) each
        with nullcontext() if self.fused else sdpa_kernel(SDPBackend.MATH):
            att = F.scaled_dot_product_attention(q, k, v, is_causal=True)  # (B, nh, T, hs)
        return self.proj(att.transpose(1, 2).reshape(B, T, C))  # (B, T, C)


class Block(nn.Module):
    """Pre-LayerNorm residual block: ``h + attn(ln(h))``, then ``h + mlp(ln(h))``."""

    def __init__(self, d_model: int, n_heads: int, fused_attention: bool = False):
        super().__init__()
        self.ln_attn = nn.LayerNorm(d_model)
        self.attn = CausalSelfAttention(d_model, n_heads, fused_attention)
        self.ln_mlp = nn.LayerNorm(d_model)
        self.fc_in = nn.Linear(d_model, 4 * d_model)
        self.fc_out = nn.Linear(4 * d_model, d_model)

    def forward(self, h: Tensor) -> Tensor:
        """Apply the block to hidden states ``(B, T, C)``."""
        h = h + self.attn(self.ln_attn(h))  # (B, T, C)
        return h + self.fc_out(F.gelu(self.fc_in(self.ln_mlp(h))))  # (B, T, C)


class TinyTransformer(nn.Module):
    """Decoder-only transformer: token ids ``(B, T)`` to next-token logits ``(B, T, vocab_size)``.

    Parameters
    ----------
    vocab_size : int
        Number of distinct tokens.
    context : int
        Longest sequence (learned position embeddings exist for positions ``0 .. context-1``).
    d_model, n_heads, n_layers : int
        Width, attention heads per layer, and number of blocks.
    fused_attention : bool
        Let PyTorch pick its fastest attention kernel; second derivatives then fail (see the module
        docstring).
    """

    def __init__(self, vocab_size: int, context: int = 64, d_model: int = 64, n_heads: int = 4,
                 n_layers: int = 2, fused_attention: bool = False):
        super().__init__()
        self.context = context
        self.token_embedding = nn.Embedding(vocab_size, d_model)
        self.position_embedding = nn.Embedding(context, d_model)
        self.blocks = nn.ModuleList(Block(d_model, n_heads, fused_attention) for _ in range(n_layers))
        self.ln_final = nn.LayerNorm(d_model)
        self.head = nn.Linear(d_model, vocab_size)
        self._init_weights(n_layers)

    def _init_weights(self, n_layers: int) -> None:
        # GPT-2's scheme: N(0, 0.02²) weights, zero biases, and the projections that write into the
        # residual stream shrunk by 1/sqrt(2·layers) so its variance does not grow with depth.
        # The small read-out makes the initial loss close to log(vocab_size).
        for name, p in self.named_parameters():
            if p.ndim == 1:
                continue  # LayerNorm weights stay 1, biases are reset below
            std = 0.02 / math.sqrt(2 * n_layers) if name.endswith(("proj.weight", "fc_out.weight")) else 0.02
            nn.init.normal_(p, mean=0.0, std=std)
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.zeros_(module.bias)

    def forward(self, idx: Tensor) -> Tensor:
        """Map token ids ``(B, T)``, ``T <= context``, to next-token logits ``(B, T, vocab_size)``."""
        T = idx.shape[1]
        if T > self.context:
            raise ValueError(f"sequence length {T} exceeds the context of {self.context}")
        pos = torch.arange(T, device=idx.device)  # (T,)
        h = self.token_embedding(idx) + self.position_embedding(pos)  # (B, T, C)
        for block in self.blocks:
            h = block(h)  # (B, T, C)
        return self.head(self.ln_final(h))  # (B, T, vocab)


def next_token_loss(model, batch: tuple[Tensor, Tensor]) -> Tensor:
    """Mean cross-entropy of the next-token predictions over all ``B·T`` positions."""
    inputs, targets = batch  # (B, T), (B, T)
    logits = model(inputs)  # (B, T, vocab)
    return F.cross_entropy(logits.flatten(0, 1), targets.flatten())


def load_corpus() -> str:
    """Return the packaged training text, an excerpt of the Python Language Reference (60 000 chars)."""
    return (files("secondorder.problems") / "data" / "corpus.txt").read_text(encoding="utf-8")


@dataclass(eq=False, repr=False, kw_only=True)
class CharLMProblem(ModelProblem):
    """Character-level language modelling: :class:`ModelProblem` plus the vocabulary and the splits.

    Parameters
    ----------
    vocab : str
        The distinct characters in id order.
    train_ids, val_ids : Tensor
        The encoded training and validation text, int64, shapes ``(N_train,)`` and ``(N_val,)``.
    """

    vocab: str
    train_ids: Tensor
    val_ids: Tensor

    def encode(self, text: str) -> Tensor:
        """Character ids of ``text``, int64, shape ``(len(text),)``."""
        index = {c: i for i, c in enumerate(self.vocab)}
        return torch.tensor([index[c] for c in text], dtype=torch.int64, device=self.device)

    def decode(self, ids: Tensor) -> str:
        """Return the text of a 1-D tensor of character ids."""
        return "".join(self.vocab[i] for i in ids.tolist())


def _windows(ids: Tensor, starts: Tensor, context: int) -> tuple[Tensor, Tensor]:
    """Input and target windows beginning at ``starts`` (B,): ids[s : s+T] and ids[s+1 : s+T+1]."""
    idx = starts[:, None] + torch.arange(context, device=ids.device)  # (B, T)
    return ids[idx], ids[idx + 1]  # (B, T), (B, T)


def tiny_transformer(seed: int = 0, context: int = 64, d_model: int = 64, n_heads: int = 4,
                     n_layers: int = 2, batch_size: int = 32, fused_attention: bool = False, *,
                     dtype: torch.dtype = torch.float64, device: torch.device | str = "cpu",
                     init_dtype: torch.dtype = torch.float64) -> CharLMProblem:
    r"""Build next-character prediction on :func:`load_corpus` with a :class:`TinyTransformer`.

    The vocabulary is the sorted set of characters of the corpus (88). The first 90 % of the text is
    for training, the last 10 % for validation. For a batch of windows :math:`(u, v)` with
    :math:`v_t = u_{t+1}`,

    .. math::

        \ell(x) = -\frac{1}{BT} \sum_{b=1}^{B} \sum_{t=1}^{T}
                    \log p_x\bigl(v_{bt} \mid u_{b,1}, \dots, u_{bt}\bigr),

    which starts near :math:`\log 88 \approx 4.48`. :meth:`~ModelProblem.batches` gives random
    training windows; ``f`` is the loss on one fixed batch of ``batch_size`` training windows drawn
    with ``seed`` (a deterministic function for line searches, curvature probes and tests), and
    :meth:`~ModelProblem.validation_loss` averages over every non-overlapping window of the
    validation text. ``x0`` is the initialization drawn with ``seed`` on the CPU in ``init_dtype``,
    whatever the default dtype (:func:`~secondorder.problems.base.seeded_initialization`). ``n`` is far above
    the dense-Hessian limit: use Hessian-vector products.

    Parameters
    ----------
    seed : int
        Seed of the initialization and of the fixed batch.
    context : int
        Window length :math:`T`.
    d_model, n_heads, n_layers : int
        Architecture, see :class:`TinyTransformer`.
    batch_size : int
        Number of windows :math:`B` in the fixed batch behind ``f``.
    fused_attention : bool
        Faster attention kernels without second derivatives (see the module docstring).
    dtype, device
        Where the model and data live. float32 is the natural choice for training runs.
    init_dtype : torch.dtype
        The dtype the initialization is drawn in (a float32 draw is another sequence than a float64
        one); the model is cast to ``dtype`` afterwards.
    """
    for arg, value in (("context", context), ("d_model", d_model), ("n_heads", n_heads),
                       ("n_layers", n_layers), ("batch_size", batch_size)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{arg} must be a positive integer, got {value!r}")
    text = load_corpus()
    vocab = "".join(sorted(set(text)))
    index = {c: i for i, c in enumerate(vocab)}
    ids = torch.tensor([index[c] for c in text], dtype=torch.int64)  # (N,)
    split = int(0.9 * len(ids))
    train, val = ids[:split].to(device), ids[split:].to(device)  # (N_train,), (N_val,)
    if context >= len(val):
        raise ValueError(f"context must be shorter than the validation text ({len(val)}), got {context}")

    def sample_batch(size: int, generator: torch.Generator | None) -> tuple[Tensor, Tensor]:
        # Starts are drawn on the (CPU) generator and moved once: one small transfer per batch.
        starts = torch.randint(len(train) - context, (size,), generator=generator)  # (B,)
        return _windows(train, starts.to(device), context)

    with seeded_initialization(seed, init_dtype):
        model = TinyTransformer(len(vocab), context, d_model, n_heads, n_layers, fused_attention)
    model = model.to(dtype=dtype, device=device)
    fixed_batch = sample_batch(batch_size, torch.Generator().manual_seed(seed))
    val_starts = torch.arange(0, len(val) - context, context, device=device)  # (B_val,)
    return CharLMProblem(
        name=f"tiny_transformer(layers={n_layers}, d={d_model}, T={context})", model=model,
        loss=next_token_loss, batch=fixed_batch, sample_batch=sample_batch,
        validation_batch=_windows(val, val_starts, context), vocab=vocab, train_ids=train, val_ids=val)
