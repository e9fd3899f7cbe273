r"""Exercise ``newton_schulz(G, steps=5, coefficients=(3.4445, -4.7750, 2.0315), eps=1e-7)`` (section 07).

Muon's orthogonalization: :math:`X_0 = G / (\|G\|_F + \varepsilon)`, then
:math:`X_{k+1} = a X_k + b (X_k X_k^\top) X_k + c (X_k X_k^\top)^2 X_k`, on the transpose of a tall
:math:`G`. One hidden case is tall and thin (:math:`40\,000 \times 8`): without the transpose the Gram
matrix :math:`X X^\top` is :math:`40\,000 \times 40\,000` (6.4 GB in float32), so an answer that
skips the transpose runs out of memory or time there, and :meth:`NewtonSchulz.judge` says why.
"""

from __future__ import annotations

import math

import torch

from .. import testing
from ..matrix_functions import MUON_COEFFICIENTS, newton_schulz
from .base import Case, CaseResult, Exercise, count_matmul_flops
from .generators import _gen, agrees, draw_random

TALL = (40_000, 8)
CLASSICAL_CUBIC = (1.5, -0.5, 0.0)
CLASSICAL_QUINTIC = (15 / 8, -10 / 8, 3 / 8)


def _gaussian(m, n, dtype, seed, scale=1.0, **kwargs):
    G = scale * torch.randn(m, n, generator=_gen(seed), dtype=torch.float64)
    return (G.to(dtype), *kwargs.values())


def _low_rank(m, n, r, dtype, seed):
    """A rank-r matrix: Newton–Schulz keeps its zero singular values at zero."""
    A = torch.randn(m, r, generator=_gen(seed), dtype=torch.float64)
    B = torch.randn(r, n, generator=_gen(seed + 1), dtype=torch.float64)
    return ((A @ B).to(dtype),)


def _spread(m, n, dtype, seed, cond=100.0):
    """Singular values spread geometrically over [1/cond, 1]: the small ones are the ones that grow."""
    r = min(m, n)
    U, _ = torch.linalg.qr(torch.randn(m, r, generator=_gen(seed), dtype=torch.float64))
    V, _ = torch.linalg.qr(torch.randn(n, r, generator=_gen(seed + 1), dtype=torch.float64))
    sigma = torch.logspace(0, -torch.log10(torch.tensor(cond)).item(), r, dtype=torch.float64)
    return (((U * sigma) @ V.T).to(dtype),)


def _polar(G):
    """The exact polar factor U Vᵀ of G = U S Vᵀ (what the iteration approximates), in float64."""
    U, _, Vh = torch.linalg.svd(G.double(), full_matrices=False)
    return U @ Vh


def _diverged(X) -> bool:
    """Not finite, or far larger than any X the iteration reaches from a normalized start (‖X‖₂ ≲ 1.2)."""
    X = X.detach().double()
    if not bool(torch.isfinite(X).all()):
        return True
    size = float(torch.linalg.matrix_norm(X))
    return not math.isfinite(size) or size > 100 * math.sqrt(max(min(X.shape), 1))


def _zero(m, n, dtype, seed=0):
    """``(0,)`` of shape (m, n); under a draw of another drawn shape of the same kind (tall, wide or square)."""
    rng = draw_random(9700 + seed)
    if rng is not None:
        kind = (m > n) - (m < n)
        shapes = [(i, j) for i in range(1, 49) for j in range(1, 49) if (i > j) - (i < j) == kind and (i, j) != (m, n)]
        m, n = rng.choice(shapes)
    return (torch.zeros(m, n, dtype=dtype),)


def _general(G, steps=5, coefficients=MUON_COEFFICIENTS, eps=1e-7, norm="fro", gram="left",
             transpose=True, back=True, order=(0, 1, 2), quintic=True, square="matrix"):
    """Newton–Schulz with one knob per typical mistake, in float64 (for the diagnosis)."""
    a, b, c = (float(coefficients[i]) for i in order)
    G = G.double()
    tall = G.shape[0] > G.shape[1]
    X = G.mT if (tall and transpose) else G
    if norm == "fro":
        X = X / (torch.linalg.matrix_norm(X) + eps)
    elif norm == "spectral":
        X = X / (torch.linalg.matrix_norm(X, ord=2) + eps)
    elif norm == "fro-no-eps":
        X = X / torch.linalg.matrix_norm(X)
    for _ in range(steps):
        A = X @ X.mT if gram == "left" else X.mT @ X
        A2 = A @ A if square == "matrix" else A * A
        B = b * A + (c * A2 if quintic else 0)
        X = a * X + B @ X
    return X.mT if (tall and transpose and back) else X


class NewtonSchulz(Exercise):
    """``newton_schulz(G, steps=5, coefficients=MUON_COEFFICIENTS, eps=1e-7)``: Muon's orthogonalization."""

    name = "newton_schulz"
    reference = staticmethod(newton_schulz)
    arg_names = ("G", "steps", "coefficients", "eps")

    def catalogue(self):
        f64, f32 = torch.float64, torch.float32
        cases = [
            Case("square/16×16/float64", "polar factor", lambda: _gaussian(16, 16, f64, 0)),
            Case("wide/32×64/float32", "polar factor", lambda: _gaussian(32, 64, f32, 1)),
            # counted: without the transpose the numbers agree, but the products cost 5× more
            Case("tall/64×24/float64", "tall input (transpose first)", lambda: _gaussian(64, 24, f64, 2),
                 count_flops=True),
            Case("spread singular values/40×40", "polar factor", lambda: _spread(40, 40, f64, 3)),
            Case("steps=2/coefficients=cubic", "arguments used",
                 lambda: _gaussian(12, 20, f64, 4, steps=2, coefficients=CLASSICAL_CUBIC)),
            Case("zero matrix", "eps in the normalization", lambda: _zero(5, 7, f64)),
        ]
        for (m, n), seed in (((8, 8), 10), ((1, 20), 11), ((20, 1), 12), ((50, 200), 13), ((200, 50), 14),
                             ((128, 128), 15), ((3, 300), 16), ((300, 3), 17)):
            kind = "square" if m == n else ("tall" if m > n else "wide")
            group = "tall input (transpose first)" if kind == "tall" else "polar factor"
            for dtype in (f64, f32):
                cases.append(Case(f"{kind}/{m}×{n}/{str(dtype)[6:]}", group,
                                  lambda m=m, n=n, dtype=dtype, seed=seed: _gaussian(m, n, dtype, seed),
                                  hidden=True))
        cases += [
            Case("low rank/40×30, rank 3", "polar factor", lambda: _low_rank(40, 30, 3, f64, 20), hidden=True),
            Case("spread/cond=1e3/float32", "polar factor", lambda: _spread(64, 48, f32, 21, 1e3), hidden=True),
            Case("scale 1e6", "polar factor", lambda: _gaussian(20, 30, f64, 22, scale=1e6), hidden=True),
            Case("scale 1e-3", "polar factor", lambda: _gaussian(30, 20, f64, 23, scale=1e-3), hidden=True),
            Case("steps=0", "arguments used", lambda: _gaussian(10, 14, f64, 24, steps=0), hidden=True),
            Case("steps=1", "arguments used", lambda: _gaussian(10, 14, f64, 25, steps=1), hidden=True),
            Case("steps=3/float32", "arguments used", lambda: _gaussian(24, 16, f32, 26, steps=3), hidden=True),
            Case("steps=10", "arguments used", lambda: _gaussian(16, 24, f64, 27, steps=10), hidden=True),
            Case("cubic/steps=25", "arguments used",
                 lambda: _gaussian(20, 12, f64, 28, steps=25, coefficients=CLASSICAL_CUBIC), hidden=True),
            Case("quintic (15/8, -5/4, 3/8)/steps=8", "arguments used",
                 lambda: _gaussian(12, 20, f64, 29, steps=8, coefficients=CLASSICAL_QUINTIC), hidden=True),
            Case("coefficients as a list", "arguments used",
                 lambda: _gaussian(9, 9, f64, 30, steps=5, coefficients=[3.0, -3.2, 1.2]), hidden=True),
            Case("zero matrix/float32/tall", "eps in the normalization", lambda: _zero(9, 4, f32, seed=1), hidden=True),
            Case("tiny G (‖G‖_F ≈ 1e-7)", "eps in the normalization",
                 lambda: _gaussian(10, 10, f64, 31, scale=1e-8), hidden=True),
            Case("eps=0", "eps in the normalization",
                 lambda: _gaussian(10, 16, f64, 32, steps=5, coefficients=MUON_COEFFICIENTS, eps=0.0), hidden=True),
            Case("eps=0.5", "eps in the normalization",
                 lambda: _gaussian(10, 16, f64, 33, steps=5, coefficients=MUON_COEFFICIENTS, eps=0.5), hidden=True),
            Case(f"tall/{TALL[0]}×{TALL[1]}/float32", "tall input (transpose first)",
                 lambda: _gaussian(*TALL, f32, 34), hidden=True, timeout_s=10.0),
            Case(f"wide/{TALL[1]}×{TALL[0]}/float32", "polar factor",
                 lambda: _gaussian(TALL[1], TALL[0], f32, 35), hidden=True, timeout_s=10.0),
        ]
        return cases

    def judge(self, case, args, out, args_after=None, error=None, calls=None, flops=None):
        G = args[0]
        if error is not None and any(
                k in error for k in ("can't allocate", "MemoryError", "DefaultCPUAllocator", "out of memory")):
            m, n = G.shape
            big, small = max(m, n), min(m, n)
            size = big * big * G.element_size() / 1e9
            built = f"ran out of memory — a {big}×{big} Gram matrix ({size:.1f} GB) was built"
            if m > n:
                why = (f"the tall input was not transposed first: iterate on Gᵀ ({n}×{m}, Gram matrix {n}×{n}) and "
                       "transpose the result back — or the Gram matrix is XᵀX where X Xᵀ belongs")
            else:
                why = f"the Gram matrix is XᵀX where X Xᵀ ({small}×{small}) belongs — or the wide G was transposed"
            return CaseResult(case, False, f"{built}: {why}", "error")
        if error is not None and "cannot be multiplied" in error:
            return CaseResult(case, False, f"raised {error} — likely cause: the Gram matrix is XᵀX where X Xᵀ "
                              "belongs: with A = X Xᵀ the update is a·X + (b·A + c·A²) @ X (A on the left)", "error")
        return super().judge(case, args, out, args_after=args_after, error=error, calls=calls, flops=flops)

    def compare(self, case, args, out, expected):
        G = args[0]
        if isinstance(out, torch.Tensor) and out.shape != G.shape and out.shape == G.shape[::-1] \
                and G.shape[0] != G.shape[1]:
            raise AssertionError(f"the result has shape {tuple(out.shape)}, expected {tuple(G.shape)}: a tall G is "
                                 "transposed for the iteration, and the result must be transposed back")
        testing.check_tensor_like("X", out, expected)
        rtol = 1e-3 if G.dtype != torch.float64 else 1e-6
        testing.check_close("X", out, expected, rtol=rtol)

    def check_cost(self, case, args, flops):
        G = args[0]
        _, reference = count_matmul_flops(newton_schulz, *args)
        if G.shape[0] > G.shape[1] and flops > 2 * reference:
            m, n = G.shape
            raise AssertionError(
                f"the result is right, but its matrix products cost {flops:,} FLOPs, {flops / reference:.1f}× the "
                f"{reference:,} of iterating on Gᵀ: the Gram matrix was {m}×{m}, not {n}×{n}. Transpose a tall G "
                f"first (and the result back at the end); on a {TALL[0]:,}×{TALL[1]} gradient the {TALL[0]:,}² Gram "
                "matrix does not fit in memory")

    def diagnose(self, case, args, out):
        G = args[0]
        steps, coefficients, eps = (list(args[1:]) + [5, MUON_COEFFICIENTS, 1e-7][len(args) - 1:])[:3]
        if isinstance(out, torch.Tensor) and out.dtype != G.dtype:
            return (f"X is {out.dtype} for G in {G.dtype}: compute in G's dtype (no .double()), or convert back with "
                    ".to(G.dtype)")
        kw = dict(steps=steps, coefficients=coefficients, eps=eps)
        variants = [
            ("normalized by the spectral norm ‖G‖₂; Newton–Schulz starts from the Frobenius norm, "
             "X₀ = G / (‖G‖_F + eps)", lambda: _general(G, **kw, norm="spectral")),
            ("G was not normalized: X₀ = G / (‖G‖_F + eps)", lambda: _general(G, **kw, norm="none")),
            ("the coefficients are used in the wrong order: X ← a·X + b·(X Xᵀ)X + c·(X Xᵀ)²X with "
             "(a, b, c) = coefficients", lambda: _general(G, **kw, order=(2, 1, 0))),
            ("the coefficients are used in the wrong order: a multiplies X, b the cubic term, c the quintic",
             lambda: _general(G, **kw, order=(0, 2, 1))),
            ("the cubic iteration a·X + b·(X Xᵀ)X was used: the quintic term c·(X Xᵀ)²X is missing",
             lambda: _general(G, **kw, quintic=False)),
            ("the Gram matrix is XᵀX where X Xᵀ belongs (A = X Xᵀ multiplies X from the left)",
             lambda: _general(G, **kw, gram="right")),
            ("one step short: the loop must run `steps` times", lambda: _general(G, steps - 1, coefficients, eps)),
            ("one step too many: the loop must run `steps` times", lambda: _general(G, steps + 1, coefficients, eps)),
            ("the steps argument is ignored (5 hard-coded)", lambda: _general(G, 5, coefficients, eps)),
            ("the coefficients argument is ignored (Muon's hard-coded)", lambda: _general(G, steps, MUON_COEFFICIENTS,
                                                                                       eps)),
            ("eps is missing from the normalization: X₀ = G / (‖G‖_F + eps)",
             lambda: _general(G, **kw, norm="fro-no-eps")),
            ("the eps argument is ignored (1e-7 hard-coded)", lambda: _general(G, steps, coefficients, 1e-7)),
            ("(X Xᵀ)² was computed elementwise (A**2 or A * A): the quintic term needs the matrix product A @ A",
             lambda: _general(G, **kw, square="elementwise")),
            ("returned the exact polar factor U Vᵀ (from an SVD): the exercise asks for `steps` Newton–Schulz "
             "iterations, whose singular values only come near 1", lambda: _polar(G)),
        ]
        if max(G.shape) > 5000:                              # XᵀX of a wide G would be huge: leave it out
            variants = [v for v in variants if "XᵀX" not in v[0]]
        if not isinstance(out, torch.Tensor) or out.shape != G.shape:
            return None
        if not bool(torch.any(G != 0)) and not bool(torch.isfinite(out).all()):
            return "G = 0 gives 0/0: add eps to the norm, X₀ = G / (‖G‖_F + eps)"
        rtol = 1e-3 if G.dtype != torch.float64 else 1e-6
        truth = _general(G, **kw)
        outcomes = []
        for message, make in variants:
            try:
                outcomes.append((message, make()))
            except Exception:  # a variant that cannot run here tells nothing
                continue
        # Where one output fits several mistakes (no normalization where ‖G‖₂ = 1), name each.
        found = [m for m, alt in outcomes if not agrees(truth, alt, rtol) and agrees(out, alt, rtol)]
        if found:
            return " — or ".join(found)
        if _diverged(out):          # overflowed: every mistake that also diverges here is a candidate
            diverging = [m for m, alt in outcomes if _diverged(alt)]
            return ("the iteration diverged: singular values above about 1.2 grow without bound — "
                    + (" — or ".join(diverging) if diverging else
                       "normalize first, X₀ = G / (‖G‖_F + eps), so that every singular value lies in [0, 1]"))
        return None
