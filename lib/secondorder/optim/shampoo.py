r"""Shampoo: Kronecker-factored full-matrix AdaGrad with grafting [GKS]_, [ANIL]_.

For a weight :math:`W` of shape :math:`m \times n` with gradient :math:`G_t`, Shampoo keeps two
small factors instead of one :math:`mn \times mn` matrix,

.. math::

    L_t = \sum_{s \le t} G_s G_s^\top \quad (m \times m), \qquad
    R_t = \sum_{s \le t} G_s^\top G_s \quad (n \times n),

and steps along :math:`P_t = L_t^{-1/4} G_t R_t^{-1/4}` (Algorithm 1 of [GKS]_):
:math:`(L \otimes R)^{1/2}` bounds full-matrix AdaGrad's preconditioner, and each
factor takes half of its square root. The roots are recomputed only every few steps, and the
step's size is taken from a simpler optimizer ("grafting", [ANIL]_), which fixes the
scale that the roots get wrong early on.

References
----------
.. [GKS] V. Gupta, T. Koren and Y. Singer, "Shampoo: Preconditioned stochastic tensor optimization",
   ICML 2018.
.. [ANIL] R. Anil, V. Gupta, T. Koren, K. Regan and Y. Singer, "Scalable second order optimization
   for deep learning", arXiv:2002.09018, 2020.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from secondorder._validation import check_positive
from secondorder.matrix_functions import _inverse_root, check_count
from secondorder.optim._per_parameter import PerParameterOptimizer
from secondorder.optim.soap import adam_direction, check_beta, check_start

GRAFTING = ("adam", "sgd", "none")


def _blocks(G: Tensor, size: int) -> list[Tensor]:
    """Split ``G`` (m, n) into blocks of at most ``size`` × ``size``, row by row (views, no copies)."""
    return [block for rows in G.split(size, dim=0) for block in rows.split(size, dim=1)]


def _assemble(blocks: list[Tensor], m: int, size: int) -> Tensor:
    """Inverse of :func:`_blocks`: the (m, n) matrix made of ``blocks``."""
    per_row = len(blocks) // math.ceil(m / size)
    rows = [torch.cat(blocks[i:i + per_row], dim=1) for i in range(0, len(blocks), per_row)]
    return torch.cat(rows, dim=0)                                # (m, n)


class Shampoo(PerParameterOptimizer):
    r"""Shampoo with grafting, decoupled weight decay and blocks for large dimensions.

    A parameter with two or more dimensions is viewed as a matrix :math:`G` of shape
    :math:`m \times n` (first dimension × the rest) with factors :math:`L` and :math:`R` and roots
    of order :math:`p = 4`; a vector is an :math:`n \times 1` matrix with the left factor only and
    :math:`p = 2` (full-matrix AdaGrad; in the tensor version of [GKS]_ each of the :math:`q`
    factors of an order-:math:`q` tensor gets the root :math:`-1/(2q)`). A side larger than :math:`D` =
    ``max_precond_dim`` is cut into pieces of at most :math:`D`, and every block of :math:`G` gets
    its own factors, as if it were a parameter of its own, as in [ANIL]_; the formulas below then
    hold block by block. Per step:

    1. the grafted optimizer's direction :math:`A` (AdamW's :math:`\hat M / (\sqrt{\hat V} + \epsilon)`,
       SGD's :math:`G`);
    2. :math:`L \leftarrow \beta L + (1-\beta) G G^\top` and likewise :math:`R` when
       ``factor_decay`` :math:`\beta < 1`, plain sums :math:`L \leftarrow L + G G^\top` when
       :math:`\beta = 1` (the paper's AdaGrad form);
    3. before ``start_preconditioning_step`` :math:`t_0` the update is :math:`A`, so Shampoo *is*
       its grafted optimizer; from :math:`t_0` on, the roots :math:`L^{-1/p}, R^{-1/p}` are
       recomputed at steps :math:`t_0, t_0 + k, \dots` (:math:`k` = ``precondition_frequency``)
       by :func:`~secondorder.matrix_functions.matrix_inverse_root` with :math:`\varepsilon` =
       ``eps``, and the update is

       .. math::

           P = L^{-1/p} G R^{-1/p}, \qquad
           U = \frac{\|A\|_F}{\|P\|_F}\, P \quad\text{(grafting: Shampoo's direction, } A\text{'s norm)} ,

       or :math:`U = P` with ``grafting="none"`` (then the update before :math:`t_0` is :math:`G`);
    4. :math:`W \leftarrow (1 - \eta\lambda) W - \eta U`.

    Parameters
    ----------
    params : iterable
        Parameters or parameter groups.
    lr : float
        :math:`\eta` (default 1e-3).
    betas : (float, float)
        Adam's :math:`(\beta_1, \beta_2)` for ``grafting="adam"`` (default (0.9, 0.999)).
    eps : float
        :math:`\varepsilon` of the roots (default 1e-12, as in [ANIL]_).
    weight_decay : float
        :math:`\lambda`, decoupled (default 0).
    factor_decay : float
        :math:`\beta \in (0, 1]` of the factors (default 1: sums).
    precondition_frequency : int
        :math:`k`, steps between root recomputations (default 10).
    start_preconditioning_step : int or math.inf
        :math:`t_0` (default 1); ``math.inf`` never preconditions.
    max_precond_dim : int
        :math:`D`, the largest block side (default 1024).
    grafting : {"adam", "sgd", "none"}
        Whose step norm to take (default "adam").
    graft_eps : float
        Adam's :math:`\epsilon` for grafting (default 1e-8).

    Notes
    -----
    State per parameter: ``step`` (int :math:`t`); ``L`` and, for matrices, ``R``: lists with one
    factor per block, row-major (:math:`m_i \times m_i` and :math:`n_j \times n_j`; a single
    block when :math:`m, n \le D`); ``L_inv_root``/``R_inv_root``, lists of their roots
    (:math:`L^{-1/p}, R^{-1/p}`, created at :math:`t_0`); ``M``/``V``, the grafted Adam's moments.
    Memory :math:`2(m_i^2 + n_j^2)` per block (about :math:`4mn` in all when :math:`m, n \gg D`),
    plus :math:`2mn` for Adam grafting.
    """

    def __init__(self, params, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-12, weight_decay: float = 0.0, factor_decay: float = 1.0,
                 precondition_frequency: int = 10, start_preconditioning_step: int | float = 1,
                 max_precond_dim: int = 1024, grafting: str = "adam", graft_eps: float = 1e-8):
        if grafting not in GRAFTING:
            raise ValueError(f"grafting must be one of {GRAFTING}, got {grafting!r}")
        factor_decay = check_positive("factor_decay", factor_decay)
        if factor_decay > 1:
            raise ValueError(f"factor_decay must lie in (0, 1], got {factor_decay!r}")
        defaults = dict(
            lr=check_positive("lr", lr, allow_zero=True),
            betas=(check_beta("betas[0]", betas[0]), check_beta("betas[1]", betas[1])),
            eps=check_positive("eps", eps),
            weight_decay=check_positive("weight_decay", weight_decay, allow_zero=True),
            factor_decay=factor_decay,
            precondition_frequency=check_count("precondition_frequency", precondition_frequency),
            start_preconditioning_step=check_start("start_preconditioning_step",
                                                   start_preconditioning_step),
            max_precond_dim=check_count("max_precond_dim", max_precond_dim),
            grafting=grafting, graft_eps=check_positive("graft_eps", graft_eps))
        super().__init__(params, defaults)

    def _direction(self, p: Tensor, state: dict, group: dict) -> tuple[Tensor, float]:
        return self._update(p.grad, state, group), group["lr"]

    @staticmethod
    def _init_state(p: Tensor, state: dict, group: dict) -> None:
        G = p.reshape(p.shape[0], -1) if p.ndim >= 2 else p.reshape(-1, 1)  # (m, n), a vector (n, 1)
        blocks = _blocks(G, group["max_precond_dim"])
        state["L"] = [torch.zeros(b.shape[0], b.shape[0], dtype=p.dtype, device=p.device) for b in blocks]
        if p.ndim >= 2:
            state["R"] = [torch.zeros(b.shape[1], b.shape[1], dtype=p.dtype, device=p.device) for b in blocks]
        if group["grafting"] == "adam":
            state["M"] = torch.zeros_like(p, memory_format=torch.preserve_format)
            state["V"] = torch.zeros_like(p, memory_format=torch.preserve_format)

    @staticmethod
    def _update(g: Tensor, state: dict, group: dict) -> Tensor:
        t, t0, size = state["step"], group["start_preconditioning_step"], group["max_precond_dim"]
        A = g
        if group["grafting"] == "adam":
            A = adam_direction(state["M"], state["V"], g, t, *group["betas"], group["graft_eps"])
        sides = ("L", "R") if "R" in state else ("L",)
        G = g.reshape(g.shape[0], -1) if g.ndim >= 2 else g.reshape(-1, 1)  # (m, n), a vector (n, 1)
        blocks = _blocks(G, size)
        _accumulate(state, sides, blocks, group["factor_decay"])
        if t < t0:
            return A
        if (t - t0) % group["precondition_frequency"] == 0:
            for side in sides:                                   # p = 2q for q factors
                state[side + "_inv_root"] = [_inverse_root(F, 2 * len(sides), group["eps"])
                                             for F in state[side]]
        P_blocks = []
        for i, block in enumerate(blocks):
            P = state["L_inv_root"][i] @ block                   # (m_i, n_j)
            P_blocks.append(P @ state["R_inv_root"][i] if "R" in state else P)
        P = _assemble(P_blocks, G.shape[0], size).view_as(g)     # L^{-1/p} G R^{-1/p} blockwise
        if group["grafting"] == "none":
            return P
        norm_P = torch.linalg.vector_norm(P).clamp(min=torch.finfo(P.dtype).tiny)
        return P * (torch.linalg.vector_norm(A) / norm_P)


def _accumulate(state: dict, sides: tuple[str, ...], blocks: list[Tensor], beta: float) -> None:
    """Add each block's statistics to its factors: sums when ``beta == 1``, else averages."""
    for side in sides:
        for F, block in zip(state[side], blocks):
            stat = block @ block.mT if side == "L" else block.mT @ block  # (m_i, m_i) or (n_j, n_j)
            if beta == 1:
                F.add_(stat)
            else:
                F.lerp_(stat, 1 - beta)
