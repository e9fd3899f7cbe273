"""Seeded inputs for exercise cases, and matching an output against typical wrong answers.

Draws
-----
Every random input of a case comes from :func:`generator`. Outside a draw, ``generator(seed)`` is
seeded with ``seed`` itself: the catalogue is the same on every machine, which is what the visible
checks need (a student reproduces what the notebook shows). Inside ``with drawn(draw):`` the seed is
mixed with ``draw`` through SHA-256, so the same case family yields other inputs for every draw. The
autograder draws each student's hidden cases from a key only the instructor holds
(:mod:`autograder.secret`), so the generators can stay public: knowing them and the seeds does not
tell a student which inputs the grader will use (Kerckhoffs' principle: the secret is the key, not
the code).
"""

from __future__ import annotations

import contextlib
import contextvars
import hashlib
import math
import random
import zlib
from collections.abc import Callable, Iterator, Sequence

import torch
from torch import Tensor

_DRAW: contextvars.ContextVar[int | None] = contextvars.ContextVar("secondorder_exercise_draw", default=None)


@contextlib.contextmanager
def drawn(draw: int | None) -> Iterator[None]:
    """Within the block, :func:`generator` and :func:`draw_random` mix their seeds with ``draw`` (None: no draw)."""
    if draw is not None and (not isinstance(draw, int) or isinstance(draw, bool)):
        raise TypeError(f"draw must be an int or None, got {type(draw).__name__}")
    token = _DRAW.set(draw)
    try:
        yield
    finally:
        _DRAW.reset(token)


def current_draw() -> int | None:
    """The draw in force (None outside :func:`drawn`)."""
    return _DRAW.get()


def _mixed(seed: int) -> int:
    draw = _DRAW.get()
    if draw is None:
        return seed
    digest = hashlib.sha256(f"secondorder-draw/{draw}/{seed}".encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1          # a valid torch seed, < 2**63


def generator(seed: int) -> torch.Generator:
    """A CPU generator seeded with ``seed``, or with ``seed`` mixed with the draw in force."""
    return torch.Generator().manual_seed(_mixed(seed))


def draw_random(seed: int) -> random.Random | None:
    """A Python ``Random`` for the draw in force and ``seed``; None outside a draw.

    For the cases whose inputs are not random tensors (exact boundaries, hand-picked scalars): they
    stay as written outside a draw and are transformed, keeping what the case tests, inside one.
    """
    return None if _DRAW.get() is None else random.Random(_mixed(seed))


def _gen(seed: int) -> torch.Generator:
    return generator(1000 + seed)


def random_vector(n: int, seed: int, dtype=torch.float64) -> Tensor:
    """A standard normal vector, the same for the same ``(n, seed)`` on every machine."""
    return torch.randn(n, generator=_gen(seed), dtype=torch.float64).to(dtype)


def random_spd(n: int, cond: float, seed: int, dtype=torch.float64) -> Tensor:
    """A symmetric positive definite matrix with eigenvalues spread geometrically over [1, cond]."""
    Q, _ = torch.linalg.qr(torch.randn(n, n, generator=_gen(seed), dtype=torch.float64))
    lam = torch.logspace(0.0, float(torch.log10(torch.tensor(cond))), n, dtype=torch.float64)
    M = (Q * lam) @ Q.T                                       # (n, n)
    return (0.5 * (M + M.T)).to(dtype)


# -- transforms for the hidden cases whose inputs are not random tensors --------------------------
# Those cases pin down an exact property (a boundary, an exact root, a zero pivot, a null space), so
# under a draw they are moved by a map that keeps it: an orthogonal change of basis, a permutation,
# a scaling by a power of two (exact in binary floating point), a drawn size.


def seed_of(text: str) -> int:
    """A seed named by a string such as a case id: the same on every machine and in every run (unlike ``hash``)."""
    return zlib.crc32(text.encode())


def random_orthogonal(n: int, seed: int) -> Tensor:
    """A Haar-distributed orthogonal ``(n, n)`` matrix in float64, from :func:`generator` (so it follows the draw)."""
    Q, R = torch.linalg.qr(torch.randn(n, n, generator=generator(seed), dtype=torch.float64))
    return Q * torch.sign(torch.diagonal(R))                  # (n, n), the sign fix makes Q Haar


def power_of_two(rng: random.Random, low: int, high: int, signed: bool = False) -> float:
    """``±2**k`` for an exponent ``k`` drawn from ``low … high`` without 0: never the identity."""
    k = rng.choice([j for j in range(low, high + 1) if j != 0])
    return (rng.choice((-1.0, 1.0)) if signed else 1.0) * 2.0 ** k


def log_uniform(rng: random.Random, low: float, high: float) -> float:
    """A float drawn log-uniformly from ``[low, high]`` (positive bounds)."""
    return math.exp(rng.uniform(math.log(low), math.log(high)))


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
