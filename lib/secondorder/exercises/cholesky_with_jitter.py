r"""Exercise ``cholesky_with_jitter(A, initial=1e-10, factor=10.0, max_tries=20)`` (section 04)."""

from __future__ import annotations

import torch

from .. import testing
from ..stability import cholesky_with_jitter
from .base import Case
from .bfgs_inverse_update import RaisesOnInvalidInput
from .generators import draw_random, generator, log_uniform, random_spd


def _with_eigenvalues(lam, dtype, seed):
    """A symmetric matrix with the given eigenvalues (an orthogonal matrix of the seed)."""
    gen = generator(2000 + seed)
    Q, _ = torch.linalg.qr(torch.randn(len(lam), len(lam), generator=gen, dtype=torch.float64))
    A = (Q * torch.tensor(lam, dtype=torch.float64)) @ Q.T
    return (0.5 * (A + A.T)).to(dtype)


def _indefinite(n, lam_min, dtype, seed, **kwargs):
    lam = [lam_min] + torch.logspace(0, 1, n - 1, dtype=torch.float64).tolist()
    return (_with_eigenvalues(lam, dtype, seed), *kwargs.values())


def _positive_definite(n, dtype, seed):
    """``(A,)`` with A = random_spd(n, 100, seed); under a draw an n = 1 matrix [[1]] becomes a drawn [[λ]], λ > 0."""
    A = random_spd(n, 100.0, seed, dtype)
    rng = draw_random(9400 + seed) if n == 1 else None
    if rng is not None:                                  # random_spd(1, …) is [[1]] whatever the draw
        A = log_uniform(rng, 1e-3, 1e3) * A
    return (A,)


def _zero_pivot(dtype, seed=0):
    """A singular matrix whose Cholesky fails at an exactly zero pivot.

    Under a draw: a drawn size, a zero row and column at a drawn position, and a random diagonally
    dominant (so positive definite) rest. The zero row stays zero through the elimination, so the
    pivot there is exactly 0 in any dtype, and the first shift, 1e-10, repairs it.
    """
    rng = draw_random(9500 + seed)
    if rng is not None:
        n = rng.randint(3, 7)
        A = torch.diag(torch.tensor([rng.uniform(1.0, 4.0) for _ in range(n)], dtype=torch.float64))
        j, k = rng.sample(range(n), 2)
        A[j, k] = A[k, j] = rng.uniform(-0.5, 0.5)
        zero = rng.randrange(n)
        A[zero, :] = A[:, zero] = 0.0
        return (A.to(dtype),)
    A = torch.diag(torch.tensor([2.0, 0.0, 1.0, 3.0], dtype=dtype))
    A[0, 3] = A[3, 0] = 0.5
    return (A,)


class CholeskyWithJitter(RaisesOnInvalidInput):
    """``cholesky_with_jitter(A, ...)``: (L, τ) with L Lᵀ = A + τI, τ = 0 or initial · factorʲ, the first that works."""

    name = "cholesky_with_jitter"
    reference = staticmethod(cholesky_with_jitter)
    arg_names = ("A", "initial", "factor", "max_tries")

    def catalogue(self):
        f64, f32 = torch.float64, torch.float32
        cases = [
            Case("positive-definite/n=4/float64", "no jitter needed", lambda: (random_spd(4, 10.0, 1, f64),)),
            Case("indefinite/λmin=-3e-4", "smallest working jitter", lambda: _indefinite(5, -3e-4, f64, 2)),
            Case("singular/zero-pivot", "smallest working jitter", lambda: _zero_pivot(f64)),
            Case("gives-up/max_tries=4", "giving up", lambda: _indefinite(4, -2.0, f64, 3, a=1e-10, b=10.0, c=4)),
            Case("succeeds-on-last-try/max_tries=3", "giving up",
                 lambda: _indefinite(5, -0.5, f64, 4, a=1e-2, b=10.0, c=3)),
        ]
        for n in (1, 3, 12, 40):
            for dtype in (f64, f32):
                cases.append(Case(f"positive-definite/n={n}/{str(dtype)[6:]}", "no jitter needed",
                                  lambda n=n, dtype=dtype: _positive_definite(n, dtype, 10 + n), hidden=True))
        for n, lam_min, dtypes in ((2, -0.3, (f64, f32)), (6, -3e-7, (f64,)), (20, -0.03, (f64, f32))):
            for dtype in dtypes:
                cases.append(Case(f"indefinite/λmin={lam_min}/n={n}/{str(dtype)[6:]}", "smallest working jitter",
                                  lambda n=n, dtype=dtype, lam_min=lam_min: _indefinite(n, lam_min, dtype, 20 + n),
                                  hidden=True))
        cases += [
            Case("positive-definite/cond=1e10", "no jitter needed", lambda: (random_spd(8, 1e10, 31, f64),),
                 hidden=True),
            Case("singular/zero-pivot/float32", "smallest working jitter", lambda: _zero_pivot(f32, seed=1),
                 hidden=True),
            Case("factor=2/initial=1e-4", "arguments used", lambda: _indefinite(5, -3e-3, f64, 41, a=1e-4, b=2.0),
                 hidden=True),
            Case("factor=3/initial=1e-6/float32", "arguments used",
                 lambda: _indefinite(5, -5e-2, f32, 42, a=1e-6, b=3.0), hidden=True),
            Case("large-scale/λmin=-300", "smallest working jitter",
                 lambda: (1e4 * _indefinite(6, -3e-2, f64, 43)[0],), hidden=True),
            Case("gives-up/max_tries=1", "giving up", lambda: _indefinite(3, -1e-3, f64, 44, a=1e-8, b=10.0, c=1),
                 hidden=True),
            Case("gives-up/max_tries=20/float32", "giving up", lambda: _indefinite(3, -1e12, f32, 45),
                 hidden=True),
            Case("succeeds-on-last-try", "giving up", lambda: _indefinite(4, -0.3, f64, 46, a=1e-3, b=10.0, c=4),
                 hidden=True),
        ]
        return cases

    def invalid_reason(self, args):
        try:
            cholesky_with_jitter(*args)
        except ValueError as exc:
            return f"no jitter on the ladder makes A positive definite ({exc})"
        return None

    def diagnose_refused(self, case, args, error):
        bound = self.signature().bind(*args)
        bound.apply_defaults()
        initial, factor, max_tries = (bound.arguments[k] for k in ("initial", "factor", "max_tries"))
        tau_ref = cholesky_with_jitter(*args)[1]
        last = initial * factor ** (max_tries - 1)
        if tau_ref > 0 and abs(tau_ref - last) <= 1e-9 * last:
            why = (f"A + initial·factor^(max_tries−1)·I = A + {last:.3g}·I factors: the ladder has max_tries "
                   "shifts, j = 0, …, max_tries − 1 (off by one?)")
        else:
            why = f"A + τI factors for τ = {tau_ref:.3g}, a shift of the ladder 0, initial, initial·factor, …"
        return f"raised {error} although {why}"

    def diagnose_invalid(self, case, args, out):
        return ("after max_tries failed factorizations the function must raise ValueError, not return the last "
                "attempt (whose L contains NaN or is not a factor of A + τI)")

    def compare(self, case, args, out, expected):
        A = args[0]
        L_ref, tau_ref = expected
        if not isinstance(out, tuple | list) or len(out) != 2:
            raise AssertionError(f"the result should be the pair (L, jitter), got {type(out).__name__}"
                                 + (f" of length {len(out)}" if isinstance(out, tuple | list) else ""))
        L, tau = out
        testing.check_tensor_like("L", L, L_ref)
        if isinstance(tau, torch.Tensor) and tau.ndim == 0:
            tau = float(tau)
        if isinstance(tau, bool) or not isinstance(tau, int | float):
            raise AssertionError(f"jitter should be a Python float, got {type(tau).__name__}")
        if not abs(tau - tau_ref) <= 1e-9 * max(abs(tau_ref), 1e-300):
            raise AssertionError(f"jitter is {tau:.6g} but the first shift of the ladder 0, initial, "
                                 f"initial·factor, … that gives a Cholesky factor is {tau_ref:.6g}")
        if not bool(torch.equal(torch.tril(L), L)):
            raise AssertionError("L is not lower triangular (torch.linalg.cholesky returns the lower factor)")
        n = A.shape[0]
        M = A.double() + tau_ref * torch.eye(n, dtype=torch.float64)
        rtol = testing.default_rtol(L) * 10
        testing.check_close("L Lᵀ", L.double() @ L.double().T, M, rtol=rtol,
                            hint="L must satisfy L Lᵀ = A + jitter · I")
        testing.check_close("L", L, L_ref, rtol=rtol)

    def diagnose(self, case, args, out):
        if not isinstance(out, tuple | list) or len(out) != 2:
            return "return both the factor and the jitter: `return L, jitter`"
        L, tau = out
        A, initial, factor, max_tries = (list(args) + [1e-10, 10.0, 20][len(args) - 1:])[:4]
        tau_ref = cholesky_with_jitter(*args)[1]
        tau = float(tau) if isinstance(tau, int | float | torch.Tensor) and not isinstance(tau, bool) else None
        if tau is None:
            return None

        def near(a, b):
            return abs(a - b) <= 1e-6 * max(abs(b), 1e-300)

        if tau_ref == 0.0 and near(tau, initial):
            return "A itself must be tried first: a positive definite A gets no jitter (0.0)"
        if tau_ref > 0 and near(tau, tau_ref * factor):
            return "the jitter reported is the next shift on the ladder, not the one that was used"
        if tau_ref > 0 and near(tau, tau_ref / factor):
            return "the jitter reported is the previous (failed) shift, not the one that was used"
        total = sum(initial * factor ** j for j in range(60) if initial * factor ** j <= tau_ref * (1 + 1e-9))
        accumulated = isinstance(L, torch.Tensor) and L.shape == A.shape and bool(torch.isfinite(L).all()) and \
            float((L.double() @ L.double().T - A.double()
                   - total * torch.eye(A.shape[0], dtype=torch.float64)).abs().max()) <= 1e-2 * total
        if tau_ref > 0 and (near(tau, total) or accumulated) and not near(total, tau_ref):
            return ("the shifts were accumulated (each added to the already shifted matrix); try A + τI with the "
                    "original A each time")
        if isinstance(L, torch.Tensor) and L.shape == A.shape and near(tau, tau_ref):
            if bool(torch.equal(torch.triu(L), L)) and not bool(torch.equal(torch.tril(L), L)):
                return "the upper factor Lᵀ was returned; torch.linalg.cholesky(_ex) returns the lower one"
            shifted = A.double() + tau_ref
            try:
                if torch.allclose(L.double() @ L.double().T, shifted, rtol=1e-3, atol=1e-6 * float(A.abs().max())):
                    return "τ was added to every entry of A (A + τ); the shift is τI, on the diagonal only"
            except RuntimeError:
                return None
        return None
