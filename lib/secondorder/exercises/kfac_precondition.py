r"""Exercise ``kfac_precondition(grad_W, A, G, damping)`` (section 06): the damped K-FAC direction.

.. math::

    \Delta = (G + \sqrt\lambda I)^{-1}\, \nabla_W L\, (A + \sqrt\lambda I)^{-1}

(factored Tikhonov damping with :math:`\pi = 1`, [MG15]_ Section 6.3, as in
:func:`secondorder.kfac.kfac_precondition`). The tolerance of a case grows with the condition numbers
of the damped factors, so solving and inverting are both accepted where the problem allows it; the
diagnosis names the wrong sides, the damping on one factor, :math:`\lambda` instead of
:math:`\sqrt\lambda`, damping of the Kronecker product, a scalar added to every entry instead of the
diagonal, ``torch.cholesky_solve`` given the matrix instead of its Cholesky factor, multiplying instead of
solving, and the sign; where the damping is too small to tell some of these apart, it names each.
"""

from __future__ import annotations

import torch

from .. import testing
from ..kfac import kfac_precondition
from .base import Case, Exercise
from .generators import generator, random_spd

_MEMORY_ERRORS = ("can't allocate", "MemoryError", "DefaultCPUAllocator", "out of memory")
_SHAPE_ERRORS = ("size mismatch", "cannot be multiplied", "must match the size", "Expected size", "shape",
                 "incompatible")


def _from_data(d_out, d_in, N, damping, dtype, seed, scale=1.0):
    """Factors from a batch (singular when N < d), and the batch-mean gradient Σ g_n a_nᵀ / N."""
    gen = generator(4000 + seed)
    a = torch.randn(N, d_in, generator=gen, dtype=torch.float64) + 0.3
    g = torch.randn(N, d_out, generator=gen, dtype=torch.float64) / d_out ** 0.5
    A, G = a.T @ a / N, g.T @ g / N
    grad_W = g.T @ a / N + 0.1 * torch.randn(d_out, d_in, generator=gen, dtype=torch.float64)
    return (scale * grad_W).to(dtype), (scale * A).to(dtype), (scale * G).to(dtype), damping


def _spd(d_out, d_in, damping, dtype, seed, cond=10.0):
    """Positive definite factors with a prescribed condition number and a random gradient."""
    gen = generator(5000 + seed)
    grad_W = torch.randn(d_out, d_in, generator=gen, dtype=torch.float64)
    A = random_spd(d_in, cond, seed, torch.float64)
    G = random_spd(d_out, cond, seed + 1, torch.float64) / cond ** 0.5
    return grad_W.to(dtype), A.to(dtype), G.to(dtype), damping


def _solve(M, rhs, shift):
    return torch.linalg.solve(M + shift * torch.eye(M.shape[0], dtype=M.dtype), rhs)


def _variants(grad_W, A, G, damping):
    """(message, output) of typical wrong answers, in float64."""
    lam = float(damping)
    pi = lam ** 0.5
    d_out, d_in = grad_W.shape
    I_A, I_G = torch.eye(d_in, dtype=torch.float64), torch.eye(d_out, dtype=torch.float64)

    def both(shift_G, shift_A, X=grad_W, left=G, right=A):
        return _solve(left, _solve(right, X.T, shift_A).T, shift_G)

    def kron_damped():
        lam_A, Q_A = torch.linalg.eigh(A)
        lam_G, Q_G = torch.linalg.eigh(G)
        V = Q_G.T @ grad_W @ Q_A / (torch.outer(lam_G, lam_A) + lam)
        return Q_G @ V @ Q_A.T

    def cholesky_solve_of_matrix():
        # torch.cholesky_solve(B, M) reads M as the Cholesky factor: it solves with tril(M) tril(M)ᵀ
        L_G, L_A = torch.tril(G + pi * I_G), torch.tril(A + pi * I_A)
        return both(0.0, 0.0, left=L_G @ L_G.T, right=L_A @ L_A.T)

    def pi_damping():
        ratio = ((torch.trace(A) / d_in) / (torch.trace(G) / d_out)) ** 0.5
        return both(pi / float(ratio), pi * float(ratio))

    return [
        ("returned −Δ, the step; the function returns the preconditioned gradient Δ itself (the caller "
         "updates W − η Δ)", lambda: -both(pi, pi)),
        ("A and G are on the wrong sides: G (d_out × d_out) acts on the rows of grad_W from the left, "
         "A (d_in × d_in) on its columns from the right: Δ = (G + √λI)⁻¹ ∇W (A + √λI)⁻¹",
         lambda: both(pi, pi, left=A, right=G)),
        ("the result is transposed: Δ has the shape and orientation of grad_W (d_out × d_in)",
         lambda: both(pi, pi).T),
        ("the damping is added to G only; each factor gets √λ I", lambda: both(pi, 0.0)),
        ("the damping is added to A only; each factor gets √λ I", lambda: both(0.0, pi)),
        ("λ was added to each factor; the reference adds √λ to each (factored Tikhonov damping, π = 1), so that "
         "(G + √λI) ⊗ (A + √λI) contains the term λI", lambda: both(lam, lam)),
        ("the damping was added to the Kronecker product, (G ⊗ A + λI)⁻¹; K-FAC damps each factor: "
         "(G + √λI) ⊗ (A + √λI)", kron_damped),
        ("the damping is ignored: use G + √λ I and A + √λ I", lambda: both(0.0, 0.0)),
        ("the damping was split with Martens–Grosse's π = √((tr A / d_in) / (tr G / d_out)); this exercise "
         "uses π = 1: √λ on each factor", pi_damping),
        ("the damping was added after inverting, (G⁻¹ + √λI) ∇W (A⁻¹ + √λI): add √λ I to each factor, then solve",
         lambda: (torch.linalg.pinv(G) + pi * I_G) @ grad_W @ (torch.linalg.pinv(A) + pi * I_A)),
        ("√λ was added to every entry of the factors (A + √λ broadcasts a scalar), not to their diagonals: use "
         "A + √λ·I with I = torch.eye(d)",
         lambda: both(0.0, 0.0, left=G + pi * torch.ones_like(G), right=A + pi * torch.ones_like(A))),
        ("torch.cholesky_solve was given the damped factor itself: its second argument is the Cholesky factor, "
         "L = torch.linalg.cholesky(G + √λI) (and likewise for A)", cholesky_solve_of_matrix),
        ("the gradient was multiplied by the damped factors instead of solving with them: "
         "Δ = (G + √λI)⁻¹ ∇W (A + √λI)⁻¹ needs solves (or inverses)",
         lambda: (G + pi * I_G) @ grad_W @ (A + pi * I_A)),
    ]


def _condition(M, shift):
    lam = torch.linalg.eigvalsh(M.double()) + shift
    return float(lam[-1] / lam[0]) if float(lam[0]) > 0 else float("inf")


def _tolerance(args) -> float:
    """compare()'s relative tolerance on Δ: rounding in either factor's solve is amplified by its condition number."""
    grad_W, A, G, damping = args
    pi = float(damping) ** 0.5
    eps = torch.finfo(grad_W.dtype).eps
    return max(testing.default_rtol(grad_W) * 10, eps * _condition(A, pi) * _condition(G, pi) / 10)


class KFACPrecondition(Exercise):
    """``kfac_precondition(grad_W, A, G, damping)``: (G + √λI)⁻¹ ∇W (A + √λI)⁻¹."""

    name = "kfac_precondition"
    reference = staticmethod(kfac_precondition)
    arg_names = ("grad_W", "A", "G", "damping")

    def catalogue(self):
        f64, f32 = torch.float64, torch.float32
        cases = [
            Case("square/4×4/λ=1e-2", "square layer", lambda: _spd(4, 4, 1e-2, f64, 0)),
            Case("rectangular/3×5/λ=1e-3", "rectangular layer", lambda: _from_data(3, 5, 20, 1e-3, f64, 1)),
            Case("float32/4×6/λ=0.1", "dtype", lambda: _from_data(4, 6, 30, 0.1, f32, 2)),
            Case("λ=0/positive definite", "damping", lambda: _spd(3, 4, 0.0, f64, 3)),
            Case("singular factors/N=2/λ=1e-2", "damping", lambda: _from_data(5, 3, 2, 1e-2, f64, 4)),
        ]
        for d_out, d_in, N, dtype in ((64, 129, 512, f64), (128, 257, 300, f32), (1, 50, 40, f64),
                                      (30, 1, 40, f64), (10, 10, 64, f32), (7, 12, 5, f64)):
            cases.append(Case(f"{d_out}×{d_in}/N={N}/{str(dtype)[6:]}", "larger and rectangular layers",
                              lambda d_out=d_out, d_in=d_in, N=N, dtype=dtype:
                              _from_data(d_out, d_in, N, 1e-3, dtype, d_out + d_in), hidden=True))
        cases += [
            Case("ill-conditioned/cond=1e5/λ=1e-10", "ill-conditioned factors",
                 lambda: _spd(12, 9, 1e-10, f64, 60, cond=1e5), hidden=True),
            Case("ill-conditioned/cond=1e6/λ=0", "ill-conditioned factors",
                 lambda: _spd(6, 8, 0.0, f64, 61, cond=1e6), hidden=True),
            Case("ill-conditioned/cond=30/float32", "ill-conditioned factors",
                 lambda: _spd(9, 7, 1e-6, f32, 62, cond=30.0), hidden=True),
            Case("large damping/λ=1e4", "damping", lambda: _spd(5, 6, 1e4, f64, 63), hidden=True),
            Case("tiny damping/λ=1e-14", "damping", lambda: _spd(6, 5, 1e-14, f64, 64), hidden=True),
            Case("square/8×8/float32", "square layer", lambda: _spd(8, 8, 1e-3, f32, 65), hidden=True),
            Case("scaled factors/1e6", "scale", lambda: _from_data(4, 7, 50, 1.0, f64, 66, scale=1e6), hidden=True),
            Case("scaled factors/1e-6", "scale", lambda: _from_data(6, 4, 50, 1e-12, f64, 67, scale=1e-6),
                 hidden=True),
        ]
        return cases

    def judge(self, case, args, out, args_after=None, error=None, calls=None, flops=None):
        result = super().judge(case, args, out, args_after=args_after, error=error, calls=calls, flops=flops)
        if error is not None and result.status == "error" and any(k in error for k in _MEMORY_ERRORS):
            d_out, d_in = args[0].shape
            size = (d_out * d_in) ** 2 * args[0].element_size()
            result.message += (f" — likely cause: the dense Kronecker product G ⊗ A was built: it has (d_out·d_in)² = "
                               f"{(d_out * d_in) ** 2:,} entries ({size / 1e9:.1f} GB) here; solve with the two "
                               "factors separately, (G + √λI)⁻¹ ∇W (A + √λI)⁻¹")
        elif error is not None and result.status == "error" and any(k in error for k in _SHAPE_ERRORS):
            d_out, d_in = args[0].shape
            result.message += (f" — likely cause: the shapes do not fit together: grad_W is d_out × d_in = "
                               f"{d_out} × {d_in}, G (d_out × d_out) multiplies it from the left and A "
                               f"(d_in × d_in) from the right; A and G on the wrong sides?")
        return result

    def compare(self, case, args, out, expected):
        grad_W, A, G, damping = args
        testing.check_tensor_like("Δ", out, expected)
        pi = float(damping) ** 0.5
        eps = torch.finfo(out.dtype).eps
        rtol = _tolerance(args)
        d_out, d_in = grad_W.shape
        I_A = torch.eye(d_in, dtype=torch.float64)
        I_G = torch.eye(d_out, dtype=torch.float64)
        residual = (G.double() + pi * I_G) @ out.double() @ (A.double() + pi * I_A)
        testing.check_close("(G + √λI) Δ (A + √λI)", residual, grad_W.double(), rtol=max(rtol, 1e3 * eps),
                            hint="Δ must solve (G + √λI) Δ (A + √λI) = grad_W")
        testing.check_close("Δ", out, expected, rtol=rtol)

    def diagnose(self, case, args, out):
        grad_W, A, G = (x.double() for x in args[:3])
        damping = args[3]
        if isinstance(out, torch.Tensor) and out.dtype != args[0].dtype:
            return (f"Δ is {out.dtype} for inputs in {args[0].dtype}: compute in the inputs' dtype (no .double()), "
                    "or convert back with .to(grad_W.dtype)")
        if not isinstance(out, torch.Tensor) or not bool(torch.isfinite(out).all()):
            return None
        rtol = 1e-3 if args[0].dtype != torch.float64 else 1e-6
        tol = _tolerance(args)
        truth = kfac_precondition(grad_W, A, G, damping)
        found = []
        for message, make in _variants(grad_W, A, G, damping):
            try:
                alt = make()
            except Exception:  # a variant that cannot run on these inputs matches nothing
                continue
            if alt.shape != out.shape or not bool(torch.isfinite(alt).all()):
                continue
            gap = testing.relative_error(alt, truth) if alt.shape == truth.shape else float("inf")
            if gap <= tol:
                continue                             # within the tolerance of the right answer: tells nothing
            # Where the damping is tiny next to the factors, several mistakes give the same Δ: name each.
            if testing.relative_error(out, alt) <= min(rtol, 0.1 * gap):
                found.append(message)
        return " — or ".join(found) or None

