r"""Exercise ``matrix_inverse_root(M, p, eps=1e-12)`` (section 07): Shampoo's :math:`M^{-1/p}`.

:math:`M = Q \operatorname{diag}(\lambda) Q^\top`, root :math:`Q \operatorname{diag}((\max(\lambda, 0) +
\varepsilon)^{-1/p}) Q^\top`, for a symmetric positive semi-definite :math:`M`. On a rank-deficient
:math:`M` the computed null-space eigenvalues are rounding noise of either sign, so there the
reference itself is only determined up to that noise: such cases compare the root on the range of
:math:`M` with the reference's and require, on the null space, the values
:math:`(\text{noise} + \varepsilon)^{-1/p}` that any floor at 0 gives — large, finite and symmetric.
A clearly non-symmetric :math:`M` must be refused with ``ValueError``, as the reference does.
"""

from __future__ import annotations

import math

import torch

from .. import testing
from ..matrix_functions import matrix_inverse_root
from .base import Case
from .bfgs_inverse_update import RaisesOnInvalidInput
from .generators import _gen, draw_random, log_uniform, random_spd

RANK_DEFICIENT = "rank-deficient M (eigenvalue floor)"


def _spd(n, cond, dtype, seed, p, scale=1.0, eps=None):
    M = scale * random_spd(n, cond, seed, torch.float64)
    rng = draw_random(9800 + seed) if n == 1 else None
    if rng is not None:                                  # random_spd(1, …) is [[1]] whatever the draw
        M = log_uniform(rng, 1e-3, 1e3) * M
    return (M.to(dtype), p) if eps is None else (M.to(dtype), p, eps)


def _gram(n, r, dtype, seed, p, scale=30.0):
    """G Gᵀ with G of shape (n, r), r < n: rank r, the other eigenvalues rounding noise of either sign."""
    G = scale * torch.randn(n, r, generator=_gen(seed), dtype=torch.float64)
    return ((G @ G.T).to(dtype), p)


def _zero(n, dtype, p, seed=0):
    """``(0, p)`` of size n; under a draw of another drawn size."""
    rng = draw_random(9900 + seed)
    if rng is not None:
        n = rng.choice([k for k in range(1, 97) if k != n])
    return (torch.zeros(n, n, dtype=dtype), p)


def _diagonal(p, seed=0):
    """diag(16, 1, 1/16, 81): fourth powers, so the root for p = 4 is exact (2⁻¹, 1, 2, 3⁻¹).

    Under a draw: another size and other p-th powers t^p of drawn t = m / 2^q (m ≤ 64, q ≤ 4), whose
    few bits keep t^p exact.
    """
    t = [2.0, 1.0, 0.5, 3.0]
    rng = draw_random(9950 + seed)
    if rng is not None:
        t = [rng.randint(1, 64) / 2 ** rng.randint(0, 4) for _ in range(rng.choice((3, 5, 6, 7)))]
    return (torch.diag(torch.tensor([x ** p for x in t], dtype=torch.float64)), p)


def _nearly_symmetric(n, cond, dtype, seed, p):
    """Symmetric up to an asymmetry 0.3·√ε_mach (relative, Frobenius), placed where eigh's triangle matters.

    The reference accepts it and symmetrizes; reading one triangle only moves the smallest eigenvalue
    by about the asymmetry times the condition number.
    """
    S = random_spd(n, cond, seed, torch.float64)
    _, Q = torch.linalg.eigh(S)
    v = Q[:, 0]                                              # eigenvector of the smallest eigenvalue
    T = torch.tril(torch.outer(v, v), -1)                    # strictly lower: only one triangle sees it
    target = 0.3 * math.sqrt(torch.finfo(dtype).eps)
    c = target * float(torch.linalg.matrix_norm(S)) / float(torch.linalg.matrix_norm(T - T.T))
    return ((S + c * T).to(dtype), p)


def _not_symmetric(n, dtype, seed, p):
    M = random_spd(n, 10.0, seed, torch.float64)
    M[0, -1] += 0.5 * float(M.abs().max())
    return (M.to(dtype), p)


def _root(M, p, eps=1e-12, power=None, floor="shift", symmetrize=True, transpose_q=False, work=torch.float64):
    """The inverse root with one knob per typical mistake, decomposed in ``work`` (for the diagnosis).

    ``floor``: ``"shift"`` (right: max(λ, 0) + eps), ``"max"`` (max(λ, eps)), ``"after"`` (eps added after the
    root), ``"clamp_after"`` (max(λ + eps, 0): the floor after the shift) or ``"none"`` (λ + eps).
    """
    M = M.to(work)
    lam, Q = torch.linalg.eigh(0.5 * (M + M.mT) if symmetrize else M)
    power = -1.0 / p if power is None else power
    if floor == "shift":
        d = (lam.clamp(min=0) + eps) ** power
    elif floor == "max":
        d = lam.clamp(min=eps) ** power
    elif floor == "after":
        d = lam.clamp(min=0) ** power + eps
    elif floor == "clamp_after":
        d = (lam + eps).clamp(min=0) ** power
    else:                                                    # "none"
        d = (lam + eps) ** power
    R = (Q.mT * d) @ Q if transpose_q else (Q * d) @ Q.mT
    return R.double()


def _split(M):
    """Eigenvectors of M on its range and on its null space (eigenvalues below the rounding noise), and that noise.

    The range is well determined; on the null space the computed eigenvalues are rounding noise of either sign.
    """
    M64 = M.double()
    lam, Q = torch.linalg.eigh(M64)
    big = float(lam.abs().max()) if M64.numel() else 0.0
    noise = 1e3 * torch.finfo(M.dtype).eps * big             # far above eigh's rounding in M's dtype
    range_ = lam > noise if big > 0 else torch.zeros_like(lam, dtype=torch.bool)
    return Q[:, range_], Q[:, ~range_], noise                # (n, r), (n, n − r)


class MatrixInverseRoot(RaisesOnInvalidInput):
    """``matrix_inverse_root(M, p, eps=1e-12)``: Q diag((max(λ, 0) + eps)^(-1/p)) Qᵀ of a symmetric M."""

    name = "matrix_inverse_root"
    reference = staticmethod(matrix_inverse_root)
    arg_names = ("M", "p", "eps")

    def catalogue(self):
        f64, f32 = torch.float64, torch.float32
        cases = [
            Case("SPD/n=6/p=4/float64", "inverse root", lambda: _spd(6, 100.0, f64, 0, 4)),
            Case("SPD/n=5/p=2/float32", "inverse root", lambda: _spd(5, 10.0, f32, 1, 2)),
            Case("rank 4 of 10/p=4", RANK_DEFICIENT, lambda: _gram(10, 4, f64, 2, 4)),
            Case("eps=0.5/p=2", "eps argument", lambda: _spd(6, 100.0, f64, 3, 2, scale=0.01, eps=0.5)),
            Case("not symmetric", "symmetric input", lambda: _not_symmetric(5, f64, 4, 4)),
            Case("nearly symmetric/cond=1e4", "symmetric input", lambda: _nearly_symmetric(10, 1e4, f64, 62, 2)),
            Case("ill-conditioned/cond=1e7/p=2/float32", "inverse root", lambda: _spd(8, 1e7, f32, 6, 2)),
        ]
        for n in (1, 3, 20, 64):
            for p in (2, 4, 8):
                for dtype in (f64, f32):
                    cases.append(Case(f"SPD/n={n}/p={p}/{str(dtype)[6:]}", "inverse root",
                                      lambda n=n, p=p, dtype=dtype: _spd(n, 1e3 if dtype == f32 else 1e5, dtype,
                                                                         10 + n + p, p), hidden=True))
        for (n, r, scale), seed in (((10, 4, 30.0), 40), ((24, 6, 100.0), 41), ((40, 8, 10.0), 42),
                                    ((16, 1, 50.0), 43)):
            for p in (2, 4, 8):
                cases.append(Case(f"rank {r} of {n}/p={p}", RANK_DEFICIENT,
                                  lambda n=n, r=r, p=p, scale=scale, seed=seed: _gram(n, r, f64, seed, p, scale),
                                  hidden=True))
            cases.append(Case(f"rank {r} of {n}/p=4/float32", RANK_DEFICIENT,
                              lambda n=n, r=r, scale=scale, seed=seed: _gram(n, r, f32, seed, 4, scale),
                              hidden=True))
        cases += [
            Case("zero matrix/p=4", RANK_DEFICIENT, lambda: _zero(4, f64, 4, seed=1), hidden=True),
            Case("zero matrix/p=2/float32", RANK_DEFICIENT, lambda: _zero(3, f32, 2, seed=2), hidden=True),
            Case("p=1 (inverse)", "inverse root", lambda: _spd(8, 50.0, f64, 50, 1), hidden=True),
            Case("p=3", "inverse root", lambda: _spd(8, 50.0, f64, 51, 3), hidden=True),
            Case("p=2.5 (float)", "inverse root", lambda: _spd(8, 50.0, f64, 52, 2.5), hidden=True),
            Case("diagonal/p=4", "inverse root",
                 lambda: _diagonal(4, seed=1), hidden=True),
            Case("ill-conditioned/cond=1e8/p=4", "inverse root", lambda: _spd(12, 1e8, f64, 53, 4), hidden=True),
            Case("ill-conditioned/cond=1e8/p=4/float32", "inverse root", lambda: _spd(10, 1e8, f32, 5, 4), hidden=True),
            Case("scale 1e6/p=2", "inverse root", lambda: _spd(10, 100.0, f64, 54, 2, scale=1e6), hidden=True),
            Case("scale 1e-6/p=4", "inverse root", lambda: _spd(10, 100.0, f64, 55, 4, scale=1e-6), hidden=True),
            Case("eps=1e-3/p=4", "eps argument", lambda: _spd(8, 1e4, f64, 56, 4, scale=1e-2, eps=1e-3),
                 hidden=True),
            Case("eps=0.1/p=8/float32", "eps argument", lambda: _spd(8, 100.0, f32, 57, 8, scale=0.1, eps=0.1),
                 hidden=True),
            Case("nearly symmetric/float64/cond=1e6", "symmetric input",
                 lambda: _nearly_symmetric(12, 1e6, f64, 58, 2), hidden=True),
            Case("nearly symmetric/float32/cond=1e3", "symmetric input",
                 lambda: _nearly_symmetric(12, 1e3, f32, 59, 2), hidden=True),
            Case("not symmetric/float32", "symmetric input", lambda: _not_symmetric(6, f32, 60, 2), hidden=True),
            Case("not symmetric/p=8", "symmetric input", lambda: _not_symmetric(9, f64, 61, 8), hidden=True),
        ]
        return cases

    def invalid_reason(self, args):
        try:
            matrix_inverse_root(*args)
        except ValueError as exc:
            return f"M is not symmetric ({exc})"
        return None

    def diagnose_invalid(self, case, args, out):
        return ("the symmetry check is missing: eigh reads one triangle only and would silently root another "
                "matrix; raise ValueError when ‖M − Mᵀ‖_F > √ε_mach · ‖M‖_F")

    def compare(self, case, args, out, expected):
        M, p = args[0], args[1]
        eps = args[2] if len(args) > 2 else 1e-12
        testing.check_tensor_like("the root", out, expected)
        rtol = 1e-3 if M.dtype != torch.float64 else 1e-6
        testing.check_symmetric("the root", out, rtol=rtol)
        if case.group != RANK_DEFICIENT:
            testing.check_close("the root", out, expected, rtol=rtol)
            return
        # The range of M is well determined; on its null space any floor at 0 gives (noise + eps)^(-1/p).
        R, R_ref = out.double(), expected.double()
        Qr, Qn, noise = _split(M)
        if Qr.shape[1]:
            testing.check_close("the root on the range of M", Qr.mT @ R @ Qr, Qr.mT @ R_ref @ Qr, rtol=rtol)
        null = torch.linalg.eigvalsh(0.5 * (Qn.mT @ R @ Qn + (Qn.mT @ R @ Qn).mT))   # (n − r,)
        low, high = (noise + eps) ** (-1.0 / p) * (1 - rtol), eps ** (-1.0 / p) * (1 + rtol)
        if not (bool((null >= low).all()) and bool((null <= high).all())):
            raise AssertionError(f"on the null space of M the root should be (max(λ, 0) + eps)^(-1/p), between "
                                 f"{low:.3g} and {high:.3g} here; found values from {float(null.min()):.3g} to "
                                 f"{float(null.max()):.3g}")
        cross = float(torch.linalg.matrix_norm(Qr.mT @ R @ Qn)) if Qr.shape[1] else 0.0
        if not cross <= rtol * float(torch.linalg.matrix_norm(R)):
            raise AssertionError("the root mixes the range and the null space of M: it must share M's eigenvectors")

    def diagnose(self, case, args, out):
        M, p = args[0], args[1]
        eps = args[2] if len(args) > 2 else 1e-12
        if not isinstance(out, torch.Tensor) or out.shape != M.shape:
            return None
        if out.dtype != M.dtype:
            return (f"the root is {out.dtype} for M in {M.dtype}: decompose in float64, then convert the result "
                    "back with .to(M.dtype)")
        variants = [
            ("no eigenvalue floor: rounding leaves some eigenvalues of a singular M slightly negative, and "
             "(λ + eps)^(-1/p) of a λ below −eps is NaN — clamp at 0 first", lambda: _root(M, p, eps, floor="none")),
            ("the floor came after the shift, max(λ + eps, 0): a rounding-negative λ below −eps gives 0^(-1/p) = ∞ — "
             "floor first, then shift", lambda: _root(M, p, eps, floor="clamp_after")),
            ("eps was added after the root; it belongs to the eigenvalues before the root, (max(λ, 0) + eps)^(-1/p)",
             lambda: _root(M, p, eps, floor="after")),
            ("eps is missing: max(λ, 0)^(-1/p) is infinite at λ = 0", lambda: _root(M, p, 0.0)),
            ("the p-th root M^(1/p) was computed; Shampoo needs the inverse root M^(-1/p)",
             lambda: _root(M, p, eps, power=1.0 / p)),
            ("the inverse M⁻¹ was computed; the exponent is −1/p", lambda: _root(M, p, eps, power=-1.0)),
            ("M^(−p) was computed; the exponent is −1/p", lambda: _root(M, p, eps, power=-float(p))),
            ("the root ignores p (−1/4 hard-coded); the exponent is −1/p", lambda: _root(M, p, eps, power=-0.25)),
            ("the root ignores p (−1/2 hard-coded); the exponent is −1/p", lambda: _root(M, p, eps, power=-0.5)),
            ("the eigenvalues were floored at eps, max(λ, eps); the reference adds eps after flooring at 0, "
             "max(λ, 0) + eps", lambda: _root(M, p, eps, floor="max")),
            ("the eps argument is ignored (1e-12 hard-coded)", lambda: _root(M, p, 1e-12)),
            ("the eigenvectors are transposed: the root is Q diag(d) Qᵀ with the eigenvectors in the columns of Q",
             lambda: _root(M, p, eps, transpose_q=True)),
            ("eigh was used without symmetrizing: it reads one triangle only; decompose ½(M + Mᵀ)",
             lambda: _root(M, p, eps, symmetrize=False)),
            (f"the eigendecomposition was done in {M.dtype}: the small eigenvalues, which the negative power "
             "amplifies, lose their accuracy — decompose in float64 (M.double()) and convert the result back",
             lambda: _root(M, p, eps, work=M.dtype)),
        ]
        outcomes = []
        for message, make in variants:
            try:
                outcomes.append((message, make()))
            except Exception:  # a variant that cannot run on these inputs matches nothing
                continue
        if not bool(torch.isfinite(out).all()):
            # A NaN or ∞ anywhere spreads through Q diag(d) Qᵀ: every mistake that breaks down here is a candidate.
            found = [m for m, alt in outcomes if not bool(torch.isfinite(alt.to(M.dtype)).all())]
            return (" — or ".join(found) if found else
                    "a zero or slightly negative eigenvalue reached the negative power without the floor and the "
                    "shift") + ": the root is (max(λ, 0) + eps)^(-1/p) — floor, then shift, then root"
        rtol = 1e-3 if M.dtype != torch.float64 else 1e-6
        view = lambda X: X.double()                          # noqa: E731 - the whole matrix, or its range part
        if case.group == RANK_DEFICIENT:
            Qr, Qn, noise = _split(M)
            if Qr.shape[1]:
                view = lambda X: Qr.mT @ X.double() @ Qr     # noqa: E731 - the null-space part is only noise
        truth = view(_root(M, p, eps))
        # Rounding the result to M's dtype can blur its range part when the null-space part is huge.
        blur = 10 * torch.finfo(M.dtype).eps * float(torch.linalg.matrix_norm(out.double()))
        found = []
        for message, full in outcomes:
            alt = view(full)
            if not bool(torch.isfinite(alt).all()):
                continue
            gap = testing.relative_error(alt, truth)
            tol = max(rtol, blur / max(float(torch.linalg.matrix_norm(alt)), 1e-300))
            limit = min(tol if tol <= 0.1 else rtol, 0.3 * gap)     # a blur above 10 % leaves only exact matches
            if gap > rtol and testing.relative_error(view(out), alt) <= limit:
                found.append(message)
        if found:
            return " — or ".join(found)
        if case.group == RANK_DEFICIENT and Qn.shape[1] and testing.relative_error(view(out), truth) <= rtol:
            R = out.double()
            null = torch.linalg.eigvalsh(0.5 * (Qn.mT @ R @ Qn + (Qn.mT @ R @ Qn).mT))
            if float(null.max()) > eps ** (-1.0 / p) * (1 + rtol):
                return ("on the null space the root exceeds eps^(-1/p): eigenvalues slightly below 0 were not floored "
                        "— no eigenvalue floor? Clamp at 0, then add eps: (max(λ, 0) + eps)^(-1/p)")
        return None
