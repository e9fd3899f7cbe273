r"""The L-BFGS two-loop recursion, Algorithm 7.4 in [NW]_.

References
----------
.. [NW] J. Nocedal and S. J. Wright, *Numerical Optimization*, 2nd ed., Springer, 2006.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from ._validation import check_tensor, check_vector


def two_loop_recursion(g: Tensor, s_hist: Sequence[Tensor], y_hist: Sequence[Tensor],
                       gamma: float | Tensor | None = None) -> Tensor:
    r"""Product :math:`H_k g` of the L-BFGS inverse-Hessian approximation with a vector.

    :math:`H_k` is the matrix obtained by applying the BFGS inverse update (6.17) to
    :math:`H_k^0 = \gamma I` once for each stored pair, oldest first. Unrolling that recursion gives
    two loops over the pairs, with :math:`\rho_i = 1 / (y_i^\top s_i)`:

    .. math::

        &q \leftarrow g; \quad \text{for } i = k-1, \dots, k-m:\;
            \alpha_i = \rho_i\, s_i^\top q,\; q \leftarrow q - \alpha_i y_i \\
        &r \leftarrow \gamma\, q; \quad \text{for } i = k-m, \dots, k-1:\;
            \beta = \rho_i\, y_i^\top r,\; r \leftarrow r + (\alpha_i - \beta)\, s_i

    The search direction is :math:`-r`. Cost: :math:`4mn` multiply-adds and no :math:`n \times n`
    matrix; memory :math:`2mn` for the pairs.

    Parameters
    ----------
    g : Tensor, shape (n,)
        The vector to multiply (usually the gradient).
    s_hist, y_hist : sequence of Tensor, each shape (n,)
        The stored pairs, oldest first, each with :math:`y_i^\top s_i > 0`.
    gamma : float or 0-d Tensor, optional
        Scale of :math:`H_k^0 = \gamma I`. Default: :math:`s^\top y / y^\top y` of the newest pair
        (7.20), or 1 when the history is empty.

    Returns
    -------
    Tensor, shape (n,)
        :math:`r = H_k g`, a new tensor; ``g`` and the histories are not modified.
    """
    check_vector("g", g, finite=False)
    m = len(s_hist)
    if len(y_hist) != m:
        raise ValueError(f"s_hist and y_hist must have the same length, got {m} and {len(y_hist)}")
    for name, hist in (("s_hist", s_hist), ("y_hist", y_hist)):
        for i, v in enumerate(hist):
            check_vector(f"{name}[{i}]", v, n=g.shape[0], like=g, like_name="g", finite=False)
    ys = [torch.dot(y, s) for s, y in zip(s_hist, y_hist)]
    if m and not bool((torch.stack(ys) > 0).all()):  # one synchronisation for all pairs
        bad = [i for i, v in enumerate(ys) if not v > 0]
        raise ValueError(f"pairs {bad} violate the curvature condition y·s > 0 "
                         f"(y·s = {[float(ys[i]) for i in bad]}); they must not be stored")
    if gamma is None:
        gamma = ys[-1] / torch.dot(y_hist[-1], y_hist[-1]) if m else 1.0
    elif isinstance(gamma, Tensor):
        check_tensor("gamma", gamma, ndim=0, like=g, like_name="g", finite=False)

    r = _two_loop(g, s_hist, y_hist, [1.0 / v for v in ys], gamma)
    if not bool(torch.isfinite(r).all()):
        # A NaN or infinity anywhere in the inputs spreads to r, so one check of r covers them all;
        # only on failure do we pay for finding the culprit.
        suspects = [("g", g)] + [(f"s_hist[{i}]", v) for i, v in enumerate(s_hist)] \
            + [(f"y_hist[{i}]", v) for i, v in enumerate(y_hist)] + [("gamma", torch.as_tensor(gamma))]
        for name, t in suspects:
            check_tensor(name, t)
        raise ValueError("two_loop_recursion overflowed: the result is not finite")
    return r


def _two_loop(g: Tensor, s_hist: Sequence[Tensor], y_hist: Sequence[Tensor], rho: Sequence[Tensor],
              gamma: float | Tensor) -> Tensor:
    """Unchecked kernel of :func:`two_loop_recursion`; ``rho[i] = 1 / (y_i·s_i)``. No host syncs."""
    q = g.clone()                                             # (n,)
    alpha = [None] * len(s_hist)
    for i in reversed(range(len(s_hist))):
        alpha[i] = rho[i] * torch.dot(s_hist[i], q)
        _axpy_(q, -alpha[i], y_hist[i])                       # q -= alpha_i y_i
    r = q.mul_(gamma)
    for i in range(len(s_hist)):
        beta = rho[i] * torch.dot(y_hist[i], r)
        _axpy_(r, alpha[i] - beta, s_hist[i])                 # r += (alpha_i - beta) s_i
    return r


def _axpy_(v: Tensor, a: Tensor, x: Tensor) -> Tensor:
    """In place v += a·x for a 0-d tensor a, with no host synchronisation on a GPU.

    On the CPU a host scalar costs nothing and selects the vectorised ``add_`` kernel, which runs
    tens of times faster there than ``addcmul_`` broadcasting a 0-d tensor.
    """
    if v.device.type == "cpu":
        return v.add_(x, alpha=a.item())
    return v.addcmul_(x, a)
