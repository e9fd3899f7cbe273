r"""Muon: momentum orthogonalized by Newton–Schulz, for the 2-D weights of hidden layers [MUON]_.

Steepest descent under the spectral norm moves a weight matrix along :math:`-U V^\top` for the
gradient :math:`G = U \Sigma V^\top`: every singular direction by the same amount [BN]_. Muon
applies that to the momentum and replaces the SVD by five steps of
:func:`~secondorder.matrix_functions.newton_schulz`, a handful of matrix products that run well
on accelerators. Embeddings, output heads, biases and norms are better served by AdamW, so
:class:`Muon` carries an AdamW for them.

References
----------
.. [MUON] K. Jordan, Y. Jin, V. Boza, J. You, F. Cesista, L. Newhouse and J. Bernstein, "Muon: An
   optimizer for hidden layers in neural networks", https://kellerjordan.github.io/posts/muon/, 2024.
.. [BN] J. Bernstein and L. Newhouse, "Old optimizer, new norm: An anthology", arXiv:2409.20325, 2024.
.. [MOON] J. Liu et al., "Muon is scalable for LLM training", arXiv:2502.16982, 2025.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import torch
from torch import Tensor, nn

from secondorder._validation import check_positive
from secondorder.matrix_functions import MUON_COEFFICIENTS, _newton_schulz, check_count
from secondorder.optim._per_parameter import PerParameterOptimizer
from secondorder.optim.soap import adam_direction, check_beta

ADJUST_LR = (None, "original", "match_rms_adamw")


def adjusted_lr(lr: float, shape: Sequence[int], rule: str | None = None) -> float:
    r"""Learning rate for an orthogonalized update of a weight of shape :math:`(m, n)`.

    ``None`` or ``"original"``: :math:`\eta \sqrt{\max(1, m/n)}` ([MUON]_, ``torch.optim.Muon``'s
    default); ``"match_rms_adamw"``: :math:`0.2\, \eta \sqrt{\max(m, n)}`, which gives the update the
    root-mean-square size of a typical AdamW update so AdamW's learning rate can be reused [MOON]_.
    """
    m, n = shape[0], shape[1]
    if rule == "match_rms_adamw":
        return lr * 0.2 * math.sqrt(max(m, n))
    return lr * math.sqrt(max(1.0, m / n))


def split_muon_params(model: nn.Module, exclude: Iterable[str] = ()) -> tuple[list, list]:
    """Split a model's parameters into ``(muon_params, adamw_params)``.

    Muon gets every 2-D parameter except those of ``nn.Embedding`` modules and those whose name
    starts with one of ``exclude`` (e.g. ``("head",)`` for an output layer); AdamW gets the rest
    (biases, norms, embeddings, excluded weights).
    """
    exclude = tuple(exclude)
    embedding = {id(p) for m in model.modules() if isinstance(m, nn.Embedding) for p in m.parameters()}
    muon, adamw = [], []
    for name, p in model.named_parameters():
        ok = p.ndim == 2 and id(p) not in embedding and not name.startswith(exclude)
        (muon if ok else adamw).append(p)
    return muon, adamw


class Muon(PerParameterOptimizer):
    r"""Muon for 2-D weights, with an AdamW for every other parameter.

    For a weight :math:`W` (:math:`m \times n`) with gradient :math:`G`, per step:

    .. math::

        B_t &= \mu B_{t-1} + (1-\mu)\, G, \qquad
        \tilde B_t = \begin{cases} (1-\mu)\, G + \mu B_t & \text{Nesterov} \\ B_t \end{cases} \\
        O_t &= \operatorname{NS}_k(\tilde B_t), \qquad
        W \leftarrow (1 - \eta\lambda)\, W - \eta' O_t ,

    with :math:`\eta'` from :func:`adjusted_lr`. This is ``torch.optim.Muon``'s rule (momentum
    as an exponential average; the scale cancels in the normalization of Newton–Schulz) with the
    same defaults, so the two agree when ``ns_dtype=torch.bfloat16`` (torch runs the iteration in
    bfloat16) and to bfloat16 accuracy otherwise.

    Which parameter goes where is explicit: every parameter in ``params`` must be 2-D (a
    :class:`ValueError` says otherwise); ``adamw_params`` go to AdamW with their own
    hyperparameters (AdamW groups have ``use_muon=False``, and there ``lr``, ``betas``, ``eps``,
    ``weight_decay`` mean AdamW's). :func:`split_muon_params` applies the usual rule to a model.

    Parameters
    ----------
    params : iterable
        2-D parameters (or groups of them) for Muon.
    lr : float
        :math:`\eta` (default 1e-3).
    weight_decay : float
        :math:`\lambda`, decoupled (default 0.1).
    momentum : float
        :math:`\mu` (default 0.95).
    nesterov : bool
        Nesterov momentum (default True).
    ns_coefficients : (a, b, c)
        Newton–Schulz coefficients (default :data:`~secondorder.matrix_functions.MUON_COEFFICIENTS`).
    eps : float
        Newton–Schulz normalization :math:`\varepsilon` (default 1e-7).
    ns_steps : int
        :math:`k`, Newton–Schulz steps (default 5).
    adjust_lr_fn : {None, "original", "match_rms_adamw"}
        Rule of :func:`adjusted_lr` (default None, i.e. "original").
    ns_dtype : torch.dtype, optional
        dtype of the Newton–Schulz iteration (default: the parameter's; ``torch.bfloat16`` is
        faster on GPUs).
    adamw_params : iterable, optional
        Parameters for the internal AdamW.
    adamw_lr, adamw_betas, adamw_eps, adamw_weight_decay
        AdamW's hyperparameters (defaults those of ``torch.optim.AdamW`` except ``lr`` 3e-4).

    Notes
    -----
    State: ``step`` (int) and ``B`` (momentum buffer :math:`B_t`, the weight's shape) for Muon
    parameters; ``step``, ``M`` and ``V`` (Adam's moments) for AdamW parameters.
    """

    def __init__(self, params, lr: float = 1e-3, weight_decay: float = 0.1, momentum: float = 0.95,
                 nesterov: bool = True, ns_coefficients: Sequence[float] = MUON_COEFFICIENTS,
                 eps: float = 1e-7, ns_steps: int = 5, adjust_lr_fn: str | None = None,
                 ns_dtype: torch.dtype | None = None, *, adamw_params=None, adamw_lr: float = 3e-4,
                 adamw_betas: tuple[float, float] = (0.9, 0.999), adamw_eps: float = 1e-8,
                 adamw_weight_decay: float = 0.01):
        if adjust_lr_fn not in ADJUST_LR:
            raise ValueError(f"adjust_lr_fn must be one of {ADJUST_LR}, got {adjust_lr_fn!r}")
        if len(ns_coefficients) != 3:
            raise ValueError(f"ns_coefficients must be three numbers (a, b, c), got {ns_coefficients!r}")
        defaults = dict(
            lr=check_positive("lr", lr, allow_zero=True),
            weight_decay=check_positive("weight_decay", weight_decay, allow_zero=True),
            momentum=check_beta("momentum", momentum), nesterov=bool(nesterov),
            ns_coefficients=tuple(float(c) for c in ns_coefficients),
            eps=check_positive("eps", eps, allow_zero=True), ns_steps=check_count("ns_steps", ns_steps, 0),
            adjust_lr_fn=adjust_lr_fn, ns_dtype=ns_dtype, use_muon=True, betas=adamw_betas)
        adamw_group = dict(
            params=list(adamw_params or ()), use_muon=False,
            lr=check_positive("adamw_lr", adamw_lr, allow_zero=True),
            betas=(check_beta("adamw_betas[0]", adamw_betas[0]),
                   check_beta("adamw_betas[1]", adamw_betas[1])),
            eps=check_positive("adamw_eps", adamw_eps),
            weight_decay=check_positive("adamw_weight_decay", adamw_weight_decay, allow_zero=True))
        groups = list(params)
        if groups and not isinstance(groups[0], dict):
            groups = [{"params": groups}]
        if adamw_group["params"]:
            groups.append(adamw_group)
        super().__init__(groups, defaults)
        for group in self.param_groups:
            for p in group["params"] if group["use_muon"] else ():
                if p.ndim != 2:
                    raise ValueError(f"Muon parameters must be 2-D matrices, got shape {tuple(p.shape)}; "
                                     "pass vectors, embeddings and other tensors in adamw_params")

    def _direction(self, p: Tensor, state: dict, group: dict) -> tuple[Tensor, float]:
        if group["use_muon"]:
            return _muon_update(p.grad, state, group), adjusted_lr(group["lr"], p.shape, group["adjust_lr_fn"])
        return adam_direction(state["M"], state["V"], p.grad, state["step"], *group["betas"], group["eps"]), \
            group["lr"]

    @staticmethod
    def _init_state(p: Tensor, state: dict, group: dict) -> None:
        for name in ("B",) if group["use_muon"] else ("M", "V"):
            state[name] = torch.zeros_like(p, memory_format=torch.preserve_format)


def _muon_update(g: Tensor, state: dict, group: dict) -> Tensor:
    """Advance the momentum buffer and return the orthogonalized update :math:`O_t`.

    :math:`O_t` stays in ``ns_dtype``: the in-place ``p.add_`` reads it in that dtype, which saves a
    cast pass over the matrix.
    """
    mu = group["momentum"]
    B = state["B"].lerp_(g, 1 - mu)                              # (m, n) = μB + (1-μ)G
    B_tilde = g.lerp(B, mu) if group["nesterov"] else B          # (m, n)
    dtype = group["ns_dtype"] or g.dtype
    O = _newton_schulz(B_tilde.to(dtype), group["ns_steps"], group["ns_coefficients"], group["eps"])
    return O                                                     # (m, n), ns_dtype
