"""Argument checks shared by every kernel.

Each check raises :class:`ValueError` naming the argument and what was wrong with it, so that a
student calling a kernel with swapped or mis-shaped arguments reads the cause, not a broadcasting
error from deep inside torch.
"""

from __future__ import annotations

import torch
from torch import Tensor


def _describe(x: Tensor) -> str:
    return f"shape {tuple(x.shape)}, dtype {x.dtype}, device {x.device}"


def check_tensor(name: str, x: object, *, ndim: int | None = None, like: Tensor | None = None,
                 like_name: str | None = None, finite: bool = True) -> Tensor:
    """Check that ``x`` is a floating tensor with ``ndim`` dimensions, matching ``like``.

    Matching means the same dtype and device as ``like``; shapes are checked by the callers, which
    know which dimensions must agree. ``finite`` adds a check for NaN and infinity (one reduction).
    """
    if not isinstance(x, Tensor):
        raise ValueError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if not (x.is_floating_point() or x.is_complex()):
        raise ValueError(f"{name} must be a floating-point tensor, got dtype {x.dtype}")
    if ndim is not None and x.ndim != ndim:
        kind = {0: "a scalar", 1: "a vector", 2: "a matrix"}.get(ndim, f"{ndim}-D")
        raise ValueError(f"{name} must be {kind} ({ndim}-D), got {_describe(x)}")
    if like is not None:
        other = like_name or "the other arguments"
        if x.dtype != like.dtype:
            raise ValueError(f"{name} has dtype {x.dtype} but {other} has dtype {like.dtype}; "
                             "convert one of them")
        if x.device != like.device:
            raise ValueError(f"{name} is on {x.device} but {other} is on {like.device}; "
                             "move them to one device")
    if finite and not bool(torch.isfinite(x).all()):
        raise ValueError(f"{name} contains NaN or infinite values ({_describe(x)})")
    return x


def check_vector(name: str, x: object, n: int | None = None, **kwargs) -> Tensor:
    """Check that ``x`` is a vector, of length ``n`` when given."""
    x = check_tensor(name, x, ndim=1, **kwargs)
    if n is not None and x.shape[0] != n:
        raise ValueError(f"{name} must have length {n} to match the other arguments, "
                         f"got shape {tuple(x.shape)}")
    return x


def check_square(name: str, M: object, n: int | None = None, **kwargs) -> Tensor:
    """Check that ``M`` is a square matrix, of size ``n`` × ``n`` when given."""
    M = check_tensor(name, M, ndim=2, **kwargs)
    if M.shape[0] != M.shape[1]:
        raise ValueError(f"{name} must be a square matrix, got shape {tuple(M.shape)}")
    if n is not None and M.shape[0] != n:
        raise ValueError(f"{name} must be {n}×{n} to match vectors of length {n}, "
                         f"got shape {tuple(M.shape)}")
    return M


def check_pair(M_name: str, M: Tensor, s: Tensor, y: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Check a matrix ``M`` (``B`` or ``H``) and a curvature pair ``(s, y)`` for an update formula."""
    check_tensor(M_name, M, ndim=2)
    check_vector("s", s, like=M, like_name=M_name)
    check_vector("y", y, n=s.shape[0], like=M, like_name=M_name)
    check_square(M_name, M, n=s.shape[0])
    return M, s, y


def check_count(name: str, value: object, minimum: int = 1) -> int:
    """Check that ``value`` is an integer ``>= minimum`` (``bool`` is rejected)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return value


def check_positive(name: str, value: float, *, allow_zero: bool = False, allow_inf: bool = False) -> float:
    """Check a scalar hyperparameter is a positive number, finite unless ``allow_inf``."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number, got {value!r}") from None
    ok = v >= 0 if allow_zero else v > 0
    if not (ok and (allow_inf or v < float("inf"))):
        bound = "≥ 0" if allow_zero else "> 0"
        raise ValueError(f"{name} must be {'' if allow_inf else 'finite and '}{bound}, got {value!r}")
    return v
