r"""Quasi-Newton updates: pure kernels, tensor in and tensor out.

Notation (the course's notation page): :math:`s_k = x_{k+1} - x_k`, :math:`y_k = g_{k+1} - g_k`,
:math:`B_k \approx \nabla^2 f(x_k)` and :math:`H_k \approx \nabla^2 f(x_k)^{-1}`. Every update makes
the new matrix satisfy the secant equation :math:`B_{k+1} s_k = y_k` (equivalently
:math:`H_{k+1} y_k = s_k`).

Inputs are never modified. Equation numbers refer to [NW]_.

References
----------
.. [NW] J. Nocedal and S. J. Wright, *Numerical Optimization*, 2nd ed., Springer, 2006.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ._validation import check_pair, check_positive, check_vector


def _require_curvature(s: Tensor, y: Tensor, name: str) -> Tensor:
    sy = torch.dot(s, y)
    if not bool(sy > 0):
        raise ValueError(
            f"{name} needs the curvature condition y·s > 0, got y·s = {float(sy):.3e}; "
            "skip this pair or damp y (powell_damped_y) first"
        )
    return sy


def sr1_update(B: Tensor, s: Tensor, y: Tensor, r: float = 1e-8) -> Tensor:
    r"""Symmetric rank-one update of a Hessian approximation.

    .. math::

        v = y - B s, \qquad
        B_{+} = B + \frac{v v^\top}{v^\top s}
        \quad\text{unless}\quad |v^\top s| \le r \,\|s\|\,\|v\| ,

    in which case ``B`` is returned unchanged (as a copy). This is (6.24) with the skipping rule
    (6.26) of [NW]_. The rule also covers :math:`v = 0`, where ``B`` already satisfies the secant
    equation and the formula would divide zero by zero.

    Parameters
    ----------
    B : Tensor, shape (n, n)
        Current Hessian approximation :math:`B_k` (symmetric; need not be positive definite).
    s, y : Tensor, shape (n,)
        Step and gradient change.
    r : float
        Relative skipping threshold, default 1e-8.

    Returns
    -------
    Tensor, shape (n, n)
        :math:`B_{k+1}`, a new tensor; it satisfies :math:`B_{k+1} s = y` unless the update was skipped.
    """
    check_pair("B", B, s, y)
    r = check_positive("r", r, allow_zero=True)
    v = y - B @ s                                             # (n,)
    vs = torch.dot(v, s)
    skip = vs.abs() <= r * torch.linalg.vector_norm(s) * torch.linalg.vector_norm(v)
    # A branch-free select keeps the kernel free of host synchronisation on a GPU.
    safe_vs = torch.where(skip, torch.ones_like(vs), vs)
    return torch.where(skip, B, B + torch.outer(v, v) / safe_vs)


def bfgs_inverse_update(H: Tensor, s: Tensor, y: Tensor) -> Tensor:
    r"""BFGS update of an inverse-Hessian approximation, (6.17) in [NW]_.

    .. math::

        \rho = \frac{1}{y^\top s}, \qquad
        H_{+} = (I - \rho\, s y^\top)\, H\, (I - \rho\, y s^\top) + \rho\, s s^\top .

    Expanded to :math:`H - \rho\,(s\,y^\top H + H y\, s^\top) + (\rho^2\, y^\top H y + \rho)\, s s^\top`,
    which costs :math:`O(n^2)` instead of the :math:`O(n^3)` of the product form. :math:`H_+` is the
    matrix closest to ``H`` in a weighted Frobenius norm among the symmetric matrices with
    :math:`H_+ y = s` (6.16); it is positive definite whenever ``H`` is and :math:`y^\top s > 0`.

    Raises
    ------
    ValueError
        If :math:`y^\top s \le 0` (the curvature condition (6.7) fails), or on malformed input.
    """
    check_pair("H", H, s, y)
    return _bfgs_inverse(H, s, y, _require_curvature(s, y, "bfgs_inverse_update"))


def _bfgs_inverse(H: Tensor, s: Tensor, y: Tensor, sy: Tensor) -> Tensor:
    """The formula of :func:`bfgs_inverse_update` without checks (any sign of ``sy``: for demonstrations)."""
    rho = 1.0 / sy
    Hy = H @ y                                                # (n,)
    yH = y @ H                                                # (n,), equals Hy when H is symmetric
    yHy = torch.dot(y, Hy)
    return H - rho * (torch.outer(s, yH) + torch.outer(Hy, s)) + (rho * rho * yHy + rho) * torch.outer(s, s)


def bfgs_update(B: Tensor, s: Tensor, y: Tensor) -> Tensor:
    r"""BFGS update of a Hessian approximation (direct form), (6.19) in [NW]_.

    .. math::

        B_{+} = B - \frac{B s s^\top B}{s^\top B s} + \frac{y y^\top}{y^\top s} .

    It is the inverse of :func:`bfgs_inverse_update` applied to :math:`H = B^{-1}` (by the
    Sherman–Morrison–Woodbury formula).

    Raises
    ------
    ValueError
        If :math:`y^\top s \le 0`, or on malformed input.
    """
    check_pair("B", B, s, y)
    ys = _require_curvature(s, y, "bfgs_update")
    Bs = B @ s                                                # (n,)
    sB = s @ B                                                # (n,)
    return B - torch.outer(Bs, sB) / torch.dot(s, Bs) + torch.outer(y, y) / ys


def dfp_inverse_update(H: Tensor, s: Tensor, y: Tensor) -> Tensor:
    r"""DFP update of an inverse-Hessian approximation, (6.15) in [NW]_.

    .. math::

        H_{+} = H - \frac{H y y^\top H}{y^\top H y} + \frac{s s^\top}{y^\top s} .

    The dual of BFGS: the same formula with the roles of ``s`` and ``y`` (and of ``B`` and ``H``)
    exchanged. It corrects bad curvature estimates much more slowly than BFGS.

    Raises
    ------
    ValueError
        If :math:`y^\top s \le 0`, or on malformed input.
    """
    check_pair("H", H, s, y)
    return _dfp_inverse(H, s, y, _require_curvature(s, y, "dfp_inverse_update"))


def _dfp_inverse(H: Tensor, s: Tensor, y: Tensor, ys: Tensor) -> Tensor:
    """The formula of :func:`dfp_inverse_update` without checks (any sign of ``ys``)."""
    Hy = H @ y                                                # (n,)
    yH = y @ H                                                # (n,)
    return H - torch.outer(Hy, yH) / torch.dot(y, Hy) + torch.outer(s, s) / ys


def powell_damped_y(B: Tensor, s: Tensor, y: Tensor, threshold: float = 0.2) -> Tensor:
    r"""Powell's damped gradient change, Procedure 18.2 in [NW]_.

    .. math::

        \theta = \begin{cases}
            1 & s^\top y \ge \omega\, s^\top B s, \\
            \dfrac{(1 - \omega)\, s^\top B s}{s^\top B s - s^\top y} & \text{otherwise,}
        \end{cases}
        \qquad r = \theta\, y + (1 - \theta)\, B s ,

    with :math:`\omega` = ``threshold``. Then :math:`s^\top r \ge \omega\, s^\top B s > 0` for positive
    definite ``B``, so a BFGS update with ``(s, r)`` in place of ``(s, y)`` keeps ``B`` positive
    definite even where the curvature condition fails (non-convex regions, noisy gradients).

    Parameters
    ----------
    B : Tensor, shape (n, n)
        Current Hessian approximation, symmetric positive definite.
    s, y : Tensor, shape (n,)
    threshold : float
        :math:`\omega \in (0, 1)`; 0.2 in [NW]_.

    Returns
    -------
    Tensor, shape (n,)
        The damped vector :math:`r` (equal to ``y`` when no damping is needed).
    """
    check_pair("B", B, s, y)
    threshold = check_positive("threshold", threshold)
    if threshold >= 1:
        raise ValueError(f"threshold must lie in (0, 1), got {threshold!r}")
    Bs = B @ s                                                # (n,)
    sBs = torch.dot(s, Bs)
    sy = torch.dot(s, y)
    damp = sy < threshold * sBs
    # The denominator is positive whenever damping applies (sy < ω sBs < sBs for sBs > 0).
    theta = torch.where(damp, (1 - threshold) * sBs / torch.where(damp, sBs - sy, torch.ones_like(sy)),
                        torch.ones_like(sy))
    return theta * y + (1 - theta) * Bs


def curvature_pair_accepted(s: Tensor, y: Tensor, eps: float = 1e-8) -> Tensor:
    r"""Scale-invariant acceptance test for a curvature pair.

    Accept :math:`(s, y)` when

    .. math:: s^\top y > \varepsilon\, \|s\|\, \|y\| ,

    i.e. when the cosine of the angle between ``s`` and ``y`` exceeds ``eps``. Multiplying ``f`` by
    a constant, or rescaling ``x``, leaves the verdict unchanged. Contrast ``torch.optim.LBFGS``,
    which accepts when :math:`y^\top s > 10^{-10}`: at :math:`f = 10^{-12}\,\|x\|^2` every pair is
    rejected, and at large scales tiny relative curvature slips through.

    Returns
    -------
    Tensor
        A 0-d boolean tensor on the inputs' device (usable directly in ``if``; kept as a tensor so a
        GPU loop need not synchronise).
    """
    check_vector("s", s)
    check_vector("y", y, n=s.shape[0], like=s, like_name="s")
    eps = check_positive("eps", eps, allow_zero=True)
    return torch.dot(s, y) > eps * torch.linalg.vector_norm(s) * torch.linalg.vector_norm(y)


def initial_scaling(s: Tensor, y: Tensor) -> Tensor:
    r"""Scaling :math:`\gamma_k` of the initial matrix :math:`H_k^0 = \gamma_k I`, (6.20) and (7.20) in [NW]_.

    .. math:: \gamma_k = \frac{s_{k-1}^\top y_{k-1}}{y_{k-1}^\top y_{k-1}} ,

    from the newest pair (the arguments): the inverse of a Rayleigh quotient of the average Hessian
    along the last step, so the size of :math:`H_k^0` matches the true curvature. Returns a 0-d tensor.
    """
    check_vector("s", s)
    check_vector("y", y, n=s.shape[0], like=s, like_name="s")
    return torch.dot(s, y) / torch.dot(y, y)


def secant_residual(B: Tensor, s: Tensor, y: Tensor) -> Tensor:
    r"""Relative secant residual :math:`\|B s - y\| / \|y\|` (0 when ``B`` satisfies the secant equation)."""
    check_pair("B", B, s, y)
    return torch.linalg.vector_norm(B @ s - y) / torch.linalg.vector_norm(y)
