"""Seeded inputs for exercise cases, and matching an output against typical wrong answers."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(1000 + seed)


def random_vector(n: int, seed: int, dtype=torch.float64) -> Tensor:
    """A standard normal vector, the same for the same ``(n, seed)`` on every machine."""
    return torch.randn(n, generator=_gen(seed), dtype=torch.float64).to(dtype)


def random_spd(n: int, cond: float, seed: int, dtype=torch.float64) -> Tensor:
    """A symmetric positive definite matrix with eigenvalues spread geometrically over [1, cond]."""
    Q, _ = torch.linalg.qr(torch.randn(n, n, generator=_gen(seed), dtype=torch.float64))
    lam = torch.logspace(0.0, float(torch.log10(torch.tensor(cond))), n, dtype=torch.float64)
    M = (Q * lam) @ Q.T                                       # (n, n)
    return (0.5 * (M + M.T)).to(dtype)


def agrees(out: Tensor, alt: Tensor, rtol: float) -> bool:
    """``out`` equals ``alt`` to ``rtol`` in the 2-norm, relative to ``alt``; both finite, same shape.

    Compared after scaling both by their largest entry, so that huge outputs (a diverged iteration)
    cannot overflow the norms.
    """
    if alt.shape != out.shape:
        return False
    a, b = out.detach().double().cpu(), alt.detach().double().cpu()
    if not (bool(torch.isfinite(a).all()) and bool(torch.isfinite(b).all())):
        return False
    scale = max(float(a.abs().max()), float(b.abs().max())) if a.numel() else 0.0
    if scale == 0.0:                                     # both zero (or empty)
        return True
    a, b = a / scale, b / scale                          # entries in [−1, 1]
    return float(torch.linalg.vector_norm(a - b)) <= rtol * float(torch.linalg.vector_norm(b))


def close_to(out, variants: Sequence[tuple[str, Callable[[], object]]], rtol: float = 1e-5) -> str | None:
    """Return the message of the first variant whose output ``out`` matches (:func:`agrees`), else None."""
    if not isinstance(out, Tensor):
        return None
    for message, make in variants:
        try:
            alt = make()
        except Exception:  # a variant that cannot even run on these inputs matches nothing
            continue
        if isinstance(alt, Tensor) and agrees(out, alt, rtol):
            return message
    return None


def telling(truth, variants: Sequence[tuple[str, Callable[[], object]]],
            rtol: float = 1e-5) -> list[tuple[str, Callable[[], object]]]:
    """The variants whose output differs from the right answer ``truth``: only they can name a mistake.

    On some inputs a wrong formula gives the right answer (a skip rule that does not fire, a factor
    that is 1); matching an output against it would blame a correct submission.
    """
    return [variant for variant in variants if close_to(truth, [variant], rtol=rtol) is None]


def matching(out, variants: Sequence[tuple[str, Callable[[], object]]], rtol: float = 1e-5) -> list[str]:
    """The messages of every variant that ``out`` matches, in order: one output can fit several mistakes."""
    return [message for message, make in variants if close_to(out, [(message, make)], rtol=rtol) is not None]
