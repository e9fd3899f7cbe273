r"""Exercise ``powell_damped_y(B, s, y, threshold=0.2)`` (section 04): Powell's damping, Procedure 18.2 of N&W."""

from __future__ import annotations

import torch

from .. import testing
from ..quasi_newton import powell_damped_y
from .base import Case, Exercise
from .generators import close_to, draw_random, power_of_two, random_spd, random_vector, telling


def _pair(n, dtype, seed, ratio, cond_B=10.0, threshold=None):
    """B positive definite and y = c·A s scaled so that sᵀy = ratio · sᵀBs (ratio < threshold: damped)."""
    B = random_spd(n, cond_B, seed, torch.float64) / cond_B ** 0.5
    A = random_spd(n, 100.0, seed + 1, torch.float64)
    s = random_vector(n, seed + 2)
    y = A @ s * (ratio * (s @ B @ s) / (s @ A @ s))
    out = (B.to(dtype), s.to(dtype), y.to(dtype))
    return out if threshold is None else (*out, threshold)


def _negative(n, dtype, seed):
    """A pair with y = −A s: sᵀy < 0, as on a concave stretch or with very noisy gradients."""
    return _pair(n, dtype, seed, -0.7)


def _boundary(dtype, seed=0):
    """sᵀy = ω sᵀBs exactly in binary arithmetic (ω = 0.25): θ = 1, r = y.

    Under a draw: a drawn size and coordinate for s, s and B scaled by powers of two, the rest of B's
    diagonal and the components of y off s drawn at random. s is a multiple of a coordinate vector and
    B diagonal, so sᵀy and sᵀBs each involve one exact product and the equality stays exact.
    """
    rng = draw_random(9300 + seed)
    if rng is not None:
        n = rng.randint(3, 8)
        i = rng.randrange(n)
        sigma, beta = power_of_two(rng, -4, 4, signed=True), power_of_two(rng, -4, 4)
        d = [rng.uniform(0.5, 4.0) for _ in range(n)]
        y = [rng.uniform(-2.0, 2.0) for _ in range(n)]
        d[i], y[i] = 2.0, 0.5
        B = beta * torch.diag(torch.tensor(d, dtype=dtype))
        s = torch.zeros(n, dtype=dtype)
        s[i] = sigma
        return B, s, beta * sigma * torch.tensor(y, dtype=dtype), 0.25
    B = 2.0 * torch.eye(4, dtype=dtype)
    s = torch.tensor([1.0, 0.0, 0.0, 0.0], dtype=dtype)
    y = torch.tensor([0.5, 1.0, -2.0, 0.25], dtype=dtype)
    return B, s, y, 0.25


def _scaled(n, dtype, scale, ratio):
    B, s, y = _pair(n, dtype, 71, ratio)
    return B, scale * s, scale * y


class PowellDampedY(Exercise):
    """``powell_damped_y(B, s, y, threshold=0.2)``: θ y + (1 − θ) B s with θ from Procedure 18.2."""

    name = "powell_damped_y"
    reference = staticmethod(powell_damped_y)
    arg_names = ("B", "s", "y", "threshold")

    def catalogue(self):
        f64, f32 = torch.float64, torch.float32
        cases = [
            Case("undamped/n=3/float64", "undamped regime", lambda: _pair(3, f64, 0, 0.9)),
            Case("damped/sᵀy<0/n=4", "damped regime", lambda: _negative(4, f64, 1)),
            Case("damped/0<sᵀy<ωsᵀBs/n=5/float32", "damped regime", lambda: _pair(5, f32, 2, 0.05)),
            Case("boundary/sᵀy=ωsᵀBs", "threshold boundary", lambda: _boundary(f64)),
            Case("threshold=0.5/damped", "threshold argument", lambda: _pair(6, f64, 45, 0.1, threshold=0.5)),
        ]
        for n in (1, 2, 10, 50):
            for dtype in (f64, f32):
                for ratio, regime in ((1.3, "undamped"), (0.1, "damped"), (-2.0, "damped")):
                    cases.append(Case(f"{regime}/ratio={ratio}/n={n}/{str(dtype)[6:]}", f"{regime} regime",
                                      lambda n=n, dtype=dtype, ratio=ratio: _pair(n, dtype, 10 * n, ratio),
                                      hidden=True))
        cases += [
            Case("boundary/float32", "threshold boundary", lambda: _boundary(f32), hidden=True),
            Case("threshold=0.5/damped/sᵀy>0.2sᵀBs", "threshold argument",
                 lambda: _pair(6, f64, 41, 0.3, threshold=0.5), hidden=True),
            Case("threshold=0.5/undamped", "threshold argument", lambda: _pair(6, f64, 42, 0.6, threshold=0.5),
                 hidden=True),
            Case("threshold=0.05/undamped", "threshold argument", lambda: _pair(6, f64, 43, 0.1, threshold=0.05),
                 hidden=True),
            Case("threshold=0.9/damped/float32", "threshold argument",
                 lambda: _pair(7, f32, 44, 0.5, threshold=0.9), hidden=True),
            Case("ill-conditioned/B/cond=1e8", "ill-conditioned B", lambda: _pair(8, f64, 51, 0.05, cond_B=1e8),
                 hidden=True),
            Case("ill-conditioned/B/cond=1e4/float32", "ill-conditioned B",
                 lambda: _pair(8, f32, 52, -0.3, cond_B=1e4), hidden=True),
            Case("ill-conditioned/B/undamped", "ill-conditioned B", lambda: _pair(8, f64, 53, 2.0, cond_B=1e8),
                 hidden=True),
            Case("scale/1e-6", "scale", lambda: _scaled(6, f64, 1e-6, 0.1), hidden=True),
            Case("scale/1e6", "scale", lambda: _scaled(6, f64, 1e6, -0.5), hidden=True),
            Case("sᵀy=0", "damped regime", lambda: _pair(5, f64, 61, 0.0), hidden=True),
        ]
        return cases

    def compare(self, case, args, out, expected):
        B, s, y = args[:3]
        threshold = args[3] if len(args) > 3 else 0.2
        if isinstance(out, float) or (isinstance(out, torch.Tensor) and out.ndim == 0):
            raise AssertionError(f"returned the scalar {float(out):.4g}; the result is the vector "
                                 "r = θ y + (1 − θ) B s, not θ")
        testing.check_tensor_like("r", out, expected)
        rtol = testing.default_rtol(out) * 10
        sr, sBs = float(s.double() @ out.double()), float(s.double() @ B.double() @ s.double())
        if not sr >= threshold * sBs * (1 - 100 * rtol):
            raise AssertionError(f"sᵀr = {sr:.4e} is below threshold · sᵀBs = {threshold * sBs:.4e}: the damped "
                                 "pair must satisfy sᵀr ≥ threshold · sᵀBs > 0")
        testing.check_close("r", out, expected, rtol=rtol)

    def diagnose(self, case, args, out):
        B, s, y = (a.double() for a in args[:3])
        omega = args[3] if len(args) > 3 else 0.2
        Bs = B @ s
        sBs, sy = s @ Bs, s @ y
        damp = bool(sy < omega * sBs)
        theta = (1 - omega) * sBs / (sBs - sy) if damp else torch.tensor(1.0, dtype=torch.float64)
        theta_always = (1 - omega) * sBs / (sBs - sy)

        def mix(t, a, b):
            return t * a + (1 - t) * b

        hard_coded = powell_damped_y(B, s, y, 0.2)
        ignored = (f"the threshold argument seems ignored (0.2 hard-coded?): with threshold = {omega:g}, damp when "
                   "sᵀy < threshold · sᵀBs and use (1 − threshold) in θ"
                   + (" — or no damping is applied at all" if torch.equal(hard_coded, y) else ""))
        variants = [                  # the first that matches names the cause
            (ignored, lambda: hard_coded),
            ("θ is inverted: θ = (1 − threshold) sᵀBs / (sᵀBs − sᵀy), not its reciprocal",
             lambda: mix((sBs - sy) / ((1 - omega) * sBs) if damp else 1.0, y, Bs)),
            ("no damping is applied: when sᵀy < threshold · sᵀBs, r = θ y + (1 − θ) B s, not y "
             "(y used where B s belongs?)", lambda: y.clone()),
            ("the threshold test is the wrong way round: damp only when sᵀy < threshold · sᵀBs",
             lambda: y if damp else mix(theta_always, y, Bs)),
            ("y and B s have swapped roles: r = θ y + (1 − θ) B s", lambda: mix(theta, Bs, y)),
            ("the term (1 − θ) B s is missing: r = θ y + (1 − θ) B s", lambda: theta * y),
            ("sᵀs was used where sᵀBs belongs (B = I is assumed)",
             lambda: mix((1 - omega) * (s @ s) / (s @ s - sy) if bool(sy < omega * (s @ s)) else 1.0, y, Bs)),
            ("the factor (1 − threshold) is missing from θ", lambda: mix(sBs / (sBs - sy) if damp else 1.0, y, Bs)),
            ("threshold was used where (1 − threshold) belongs in θ",
             lambda: mix(omega * sBs / (sBs - sy) if damp else 1.0, y, Bs)),
        ]
        rtol = 1e-3 if args[0].dtype != torch.float64 else 1e-6
        expected = powell_damped_y(B, s, y, omega)
        return close_to(out, telling(expected, variants, rtol), rtol=rtol)
