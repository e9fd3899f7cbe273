"""Exercise ``sr1_update(B, s, y, r=1e-8)`` (section 01): the symmetric rank-one update and its skip rule."""

from __future__ import annotations

import torch

from .. import testing
from ..quasi_newton import sr1_update
from .base import Case, Exercise
from .generators import draw_random, log_uniform, matching, random_orthogonal, random_spd, random_vector, telling


def _pair(n, dtype, seed, cond=10.0, indefinite=False):
    B = 0.5 * random_spd(n, cond, seed, dtype)               # differs from A even at n = 1
    if indefinite:
        B = B - 0.5 * torch.trace(B) / n * torch.eye(n, dtype=dtype)
    A = 3.0 * random_spd(n, 100.0, seed + 1, dtype)          # at n = 1 random_spd is [[1]]: y ≠ s all the same
    s = random_vector(n, seed + 2, dtype)
    return B, s, A @ s


def _skip_orthogonal(n, dtype):
    """V = y − Bs orthogonal to s: vᵀs = 0, the update must be skipped."""
    B = random_spd(n, 10.0, 7, dtype)
    s = torch.zeros(n, dtype=dtype)
    s[0] = 1.0
    w = torch.zeros(n, dtype=dtype)
    w[-1] = 1.0
    return B, s, B @ s + w


def _already_secant(n, dtype):
    """Y = Bs: v = 0, nothing to correct (and 0/0 if the skip test is strict)."""
    B = random_spd(n, 10.0, 3, dtype)
    s = random_vector(n, 4, dtype)
    return B, s, B @ s


def _near_threshold(n, dtype, factor, seed=0):
    """|vᵀs| = factor · r‖s‖‖v‖ with r = 1e-3: skipped for factor < 1, updated above.

    Under a draw: a random B in a drawn size, s and v along two orthonormal directions of a random
    basis with drawn lengths, and a drawn r. Only the ratio |vᵀs| / (r‖s‖‖v‖) = factor decides the
    skip (it is factor / √(1 + (factor·r)²), as without a draw); a factor of 2 either way is far above
    the rounding of v = y − Bs.
    """
    rng = draw_random(9100 + seed)
    if rng is not None:
        n = rng.randint(n, n + 5)
        r = log_uniform(rng, 1e-4, 1e-2)
        B = log_uniform(rng, 0.1, 10.0) * random_spd(n, 10.0, 9100 + seed, torch.float64)
        Q = random_orthogonal(n, 9100 + seed)
        s = log_uniform(rng, 0.1, 10.0) * Q[:, 0]
        v = log_uniform(rng, 0.1, 10.0) * (Q[:, 1] + factor * r * Q[:, 0])
        return B.to(dtype), s.to(dtype), (B @ s + v).to(dtype), r
    B = torch.eye(n, dtype=dtype)
    s = torch.zeros(n, dtype=dtype)
    s[0] = 1.0
    v = torch.zeros(n, dtype=dtype)
    v[1] = 1.0
    v[0] = factor * 1e-3 * float(torch.linalg.vector_norm(v))   # ‖v‖ ≈ 1 so vᵀs ≈ factor·r‖s‖‖v‖
    return B, s, B @ s + v, 1e-3


def _relative_skip_at_scale(dtype, scale=1e10, seed=0):
    """vᵀs = 10 is large in absolute terms but tiny relative to ‖s‖‖v‖ ≈ 1e10: skip.

    Under a draw: a random B in a drawn size, s and v in a random orthonormal basis, ‖v‖ drawn around
    ``scale``; vᵀs = 1e-9 ‖s‖‖v‖ stays ten times below r‖s‖‖v‖ (skip) and far above an absolute r.
    """
    rng = draw_random(9200 + seed)
    if rng is not None:
        n = rng.randint(3, 8)
        B = log_uniform(rng, 0.1, 10.0) * random_spd(n, 10.0, 9200 + seed, torch.float64)
        Q = random_orthogonal(n, 9200 + seed)
        s = log_uniform(rng, 0.5, 2.0) * Q[:, 0]
        v = log_uniform(rng, 0.3, 3.0) * scale * (1e-9 * Q[:, 0] + Q[:, 1])
        return B.to(dtype), s.to(dtype), (B @ s + v).to(dtype)
    B = torch.eye(3, dtype=dtype)
    s = torch.tensor([1.0, 0.0, 0.0], dtype=dtype)
    v = scale * torch.tensor([1e-9, 1.0, 0.0], dtype=dtype)
    return B, s, B @ s + v


def _scaled(n, dtype, scale):
    B, s, y = _pair(n, dtype, 11)
    return B * scale, s, y * scale


class SR1Update(Exercise):
    """``sr1_update(B, s, y, r=1e-8)``: B + vvᵀ/(vᵀs) with v = y − Bs, skipped when |vᵀs| ≤ r‖s‖‖v‖."""

    name = "sr1_update"
    reference = staticmethod(sr1_update)
    arg_names = ("B", "s", "y", "r")

    def catalogue(self):
        f64, f32 = torch.float64, torch.float32
        cases = [
            Case("secant/n=3/float64", "secant equation", lambda: _pair(3, f64, 0)),
            Case("secant/n=5/indefinite", "secant equation", lambda: _pair(5, f64, 1, indefinite=True)),
            Case("skip/v-orthogonal-to-s", "skip rule", lambda: _skip_orthogonal(4, f64)),
            # one visible case per catalogued mistake, so the checks name it while the student works
            Case("secant/n=6/float32", "secant equation", lambda: _pair(6, f32, 7)),
            Case("skip/v=0/n=3", "skip rule", lambda: _already_secant(3, f64)),
            Case("skip/below-threshold/r=1e-3", "skip rule", lambda: _near_threshold(4, f64, 0.3)),
            Case("skip/relative-at-scale-1e8", "scale invariance", lambda: _relative_skip_at_scale(f64, 1e8)),
        ]
        for n in (1, 4, 20, 60):
            for dtype in (f64, f32):
                cases.append(Case(f"secant/n={n}/{str(dtype)[6:]}", "secant equation",
                                  lambda n=n, dtype=dtype: _pair(n, dtype, 100 + n), hidden=True))
        cases += [
            Case("ill-conditioned/cond=1e6", "ill-conditioned B",
                 lambda: (random_spd(8, 1e6, 5, f64), *_pair(8, f64, 6)[1:]), hidden=True),
            Case("skip/v=0", "skip rule", lambda: _already_secant(5, f64), hidden=True),
            Case("skip/v=0/float32", "skip rule", lambda: _already_secant(5, f32), hidden=True),
            Case("skip/v-orthogonal/float32", "skip rule", lambda: _skip_orthogonal(6, f32), hidden=True),
            Case("skip/just-below-threshold", "skip rule", lambda: _near_threshold(3, f64, 0.5, seed=1),
                 hidden=True),
            Case("skip/just-above-threshold", "skip rule", lambda: _near_threshold(3, f64, 2.0, seed=2),
                 hidden=True),
            Case("scale/1e-6", "scale invariance", lambda: _scaled(6, f64, 1e-6), hidden=True),
            Case("scale/1e6", "scale invariance", lambda: _scaled(6, f64, 1e6), hidden=True),
            Case("scale/1e-10", "scale invariance", lambda: _scaled(6, f64, 1e-10), hidden=True),
            Case("skip/relative-at-scale-1e10", "scale invariance", lambda: _relative_skip_at_scale(f64),
                 hidden=True),
        ]
        return cases

    def compare(self, case, args, out, expected):
        B, s, y = args[:3]
        testing.check_tensor_like("B_new", out, expected)
        skipped = torch.equal(expected, B)
        if skipped and not torch.equal(out, B):
            raise AssertionError("B should be returned unchanged: |vᵀs| ≤ r‖s‖‖v‖ for v = y − Bs, so the "
                                 "update must be skipped (N&W 6.26)")
        if not skipped and torch.equal(out, B):
            raise AssertionError("B came back unchanged, but |vᵀs| > r‖s‖‖v‖: the update should have "
                                 "been made")
        if not skipped:
            testing.check_symmetric("B_new", out)
            testing.check_secant_equation(out, s, y)
        testing.check_close("B_new", out, expected, rtol=testing.default_rtol(out) * 10)

    def diagnose(self, case, args, out):
        B, s, y = args[:3]
        r = args[3] if len(args) > 3 else 1e-8
        if not isinstance(out, torch.Tensor) or out.dtype != B.dtype or out.shape != B.shape:
            return None                                      # the failed check already says what is wrong
        v = y - B @ s
        vs = v @ s
        variants = [
            ("s and y look swapped", lambda: sr1_update(B, y, s, r)),
            ("v has the wrong sign: it is y − B s, not B s − y",
             lambda: B + torch.outer(v, v) / (-vs)),
            ("the skip test looks absolute (|vᵀs| < r) instead of relative to r‖s‖‖v‖",
             lambda: B.clone() if abs(float(vs)) < r else B + torch.outer(v, v) / vs),
            ("the argument r is ignored (a hard-coded threshold): skip when |vᵀs| ≤ r‖s‖‖v‖ with the r passed in",
             lambda: sr1_update(B, s, y, 1e-8)),
            ("the skip rule is missing: B + vvᵀ/(vᵀs) is applied even when vᵀs is tiny",
             lambda: B + torch.outer(v, v) / vs),
            ("the denominator should be vᵀs with v = y − Bs, not yᵀs",
             lambda: B + torch.outer(v, v) / (y @ s)),
            ("the correction should be v vᵀ (symmetric), not v sᵀ or s vᵀ",
             lambda: B + torch.outer(v, s) / vs),
        ]
        if not bool(torch.isfinite(out).all()):
            if float(torch.linalg.vector_norm(v)) == 0:
                return ("v = 0 (B already satisfies the secant equation) and the update divides 0 by 0: "
                        "skip when |vᵀs| ≤ r‖s‖‖v‖ — with ≤, not <")
            return "the skip rule is missing: the update divides by a vᵀs that is (nearly) zero"
        # Only variants that differ from the right answer on this case can tell anything; where several
        # give the same output (a skip rule that does not fire here: missing, absolute, or with its own r),
        # all of them are named.
        expected = sr1_update(B, s, y, r).double()
        return " — or ".join(matching(out, telling(expected, variants))) or None
