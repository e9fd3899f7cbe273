r"""Exercise ``bfgs_inverse_update(H, s, y)`` (section 02): the BFGS update of the inverse Hessian.

Some cases have arguments the reference refuses (here :math:`y^\top s \le 0`): their expected outcome is
a raised ``ValueError``, not a value. :class:`RaisesOnInvalidInput` judges those cases, for this
exercise and for ``wolfe_conditions``; the other cases are judged by :meth:`Exercise.judge` as usual.
"""

from __future__ import annotations

import torch

from .. import testing
from ..quasi_newton import bfgs_inverse_update
from .base import Case, CaseResult, Exercise
from .generators import close_to, random_spd, random_vector, telling


class RaisesOnInvalidInput(Exercise):
    """An exercise whose reference raises ``ValueError`` on some cases, which the student's must too.

    Subclasses implement :meth:`invalid_reason`; a case whose arguments have a reason passes exactly when
    the student's function raises ``ValueError``.
    """

    def invalid_reason(self, args: tuple) -> str | None:
        """Why the reference refuses ``args`` (a sentence for the student), or None when it accepts them."""
        return None

    def judge(self, case, args, out, args_after=None, error=None, calls=None, flops=None):
        reason = self.invalid_reason(args)
        if reason is None:
            if error is not None and error.startswith("ValueError"):
                hint = None
                try:
                    hint = self.diagnose_refused(case, args, error)
                except Exception:  # a diagnosis is a bonus; never let it hide the failure
                    hint = None
                if hint:
                    return CaseResult(case, False, hint, "error")
            return super().judge(case, args, out, args_after=args_after, error=error, calls=calls, flops=flops)
        if error is not None:
            if error.startswith("ValueError"):
                return CaseResult(case, True)
            if "NotImplementedError" in error or "DelegationError" in error or error.startswith("the answer"):
                return super().judge(case, args, out, error=error)
            return CaseResult(case, False, f"raised {error.split(':', 1)[0]} where a ValueError is expected: "
                              f"{reason}", "failed")
        hint = None
        try:
            hint = self.diagnose_invalid(case, args, out)
        except Exception:  # a diagnosis is a bonus; never let it hide the failure
            hint = None
        return CaseResult(case, False, f"returned a result instead of raising ValueError: {reason}"
                          + (f" — likely cause: {hint}" if hint else ""), "failed")

    def diagnose_invalid(self, case: Case, args: tuple, out) -> str | None:
        """Name the likely misconception behind returning ``out`` for arguments that must be refused."""
        return None

    def diagnose_refused(self, case: Case, args: tuple, error: str) -> str | None:
        """Explain the ``ValueError`` ``error`` raised for arguments the reference accepts (a full message), or None."""
        return None


def _pair(n, dtype, seed, cond_H=10.0, cond_A=100.0):
    """A positive definite H and an exact quadratic pair y = A s (so yᵀs > 0)."""
    H = random_spd(n, cond_H, seed, dtype) / cond_H ** 0.5     # differs from A⁻¹ even at n = 1
    A = random_spd(n, cond_A, seed + 1, dtype)
    s = random_vector(n, seed + 2, dtype)
    return H, s, A @ s


def _scaled(n, dtype, scale):
    """The pair of a small step, scale · (s, y): yᵀs is tiny in absolute terms but the update is not."""
    H, s, y = _pair(n, dtype, 21)
    return H, scale * s, scale * y


def _nearly_orthogonal(n, dtype, cosine):
    """yᵀs > 0 but small relative to ‖s‖‖y‖: a large ρ, a legal but delicate update."""
    H = random_spd(n, 10.0, 31, dtype)
    s = random_vector(n, 32, dtype)
    w = random_vector(n, 33, dtype)
    w = w - (w @ s) / (s @ s) * s                             # w ⟂ s
    y = w / torch.linalg.vector_norm(w) + cosine * s / torch.linalg.vector_norm(s)
    return H, s, y


def _negative_curvature(n, dtype, seed):
    """A pair with y = −A s, A positive definite: yᵀs < 0, as on a concave stretch."""
    H, s, y = _pair(n, dtype, seed)
    return H, s, -y


def _orthogonal(n, dtype):
    """yᵀs = 0 exactly: ρ = 1/(yᵀs) does not exist."""
    H = random_spd(n, 10.0, 41, dtype)
    s = torch.zeros(n, dtype=dtype)
    s[0] = 1.0
    y = torch.zeros(n, dtype=dtype)
    y[1] = 2.0
    return H, s, y


def _slightly_negative(dtype):
    """yᵀs = −1e-12 · ‖s‖‖y‖: negative, however little."""
    H, s, y = _nearly_orthogonal(5, dtype, 0.0)
    return H, s, y - 1e-12 * s / torch.linalg.vector_norm(s)


class BFGSInverseUpdate(RaisesOnInvalidInput):
    """``bfgs_inverse_update(H, s, y)``: (I − ρ s yᵀ) H (I − ρ y sᵀ) + ρ s sᵀ, ρ = 1/(yᵀs); ValueError if yᵀs ≤ 0."""

    name = "bfgs_inverse_update"
    reference = staticmethod(bfgs_inverse_update)
    arg_names = ("H", "s", "y")

    def catalogue(self):
        f64, f32 = torch.float64, torch.float32
        cases = [
            Case("secant/n=3/float64", "inverse secant equation", lambda: _pair(3, f64, 0)),
            Case("secant/n=5/float32", "inverse secant equation", lambda: _pair(5, f32, 1)),
            Case("curvature/yᵀs<0", "curvature condition", lambda: _negative_curvature(4, f64, 2)),
        ]
        for n in (1, 2, 8, 20, 60):
            for dtype in (f64, f32):
                cases.append(Case(f"secant/n={n}/{str(dtype)[6:]}", "inverse secant equation",
                                  lambda n=n, dtype=dtype: _pair(n, dtype, 100 + n), hidden=True))
        cases += [
            Case("identity/H=I", "inverse secant equation",
                 lambda: (torch.eye(4, dtype=f64), *_pair(4, f64, 51)[1:]), hidden=True),
            Case("ill-conditioned/H/cond=1e6", "ill-conditioned H", lambda: _pair(8, f64, 52, cond_H=1e6),
                 hidden=True),
            Case("ill-conditioned/pair/cond=1e8", "ill-conditioned pair", lambda: _pair(8, f64, 53, cond_A=1e8),
                 hidden=True),
            Case("ill-conditioned/pair/float32", "ill-conditioned pair", lambda: _pair(6, f32, 54, cond_A=1e4),
                 hidden=True),
            Case("nearly-orthogonal/cos=1e-3", "small yᵀs", lambda: _nearly_orthogonal(6, f64, 1e-3), hidden=True),
            Case("scale/1e-8", "scale", lambda: _scaled(6, f64, 1e-8), hidden=True),
            Case("scale/1e-7/n=5", "scale", lambda: _scaled(5, f64, 1e-7)),
            Case("scale/1e6", "scale", lambda: _scaled(6, f64, 1e6), hidden=True),
            Case("curvature/yᵀs<0/float32", "curvature condition", lambda: _negative_curvature(5, f32, 61),
                 hidden=True),
            Case("curvature/yᵀs<0/n=1", "curvature condition", lambda: _negative_curvature(1, f64, 62),
                 hidden=True),
            Case("curvature/yᵀs=0", "curvature condition", lambda: _orthogonal(4, f64), hidden=True),
            Case("curvature/yᵀs=-1e-12", "curvature condition", lambda: _slightly_negative(f64), hidden=True),
        ]
        return cases

    def invalid_reason(self, args):
        s, y = args[1], args[2]
        sy = torch.dot(s, y)
        if bool(sy > 0):                                      # the reference's test, in the inputs' dtype
            return None
        return (f"yᵀs = {float(sy):.2e} ≤ 0, so the curvature condition fails: no positive definite matrix satisfies "
                "H y = s, and ρ = 1/(yᵀs) is not positive (or does not exist)")

    def compare(self, case, args, out, expected):
        H, s, y = args
        testing.check_tensor_like("H_new", out, expected)
        testing.check_symmetric("H_new", out)
        testing.check_inverse_secant_equation(out, s, y)
        testing.check_close("H_new", out, expected, rtol=testing.default_rtol(out) * 10)

    def diagnose(self, case, args, out):
        H, s, y = (a.double() for a in args)
        n = s.shape[0]
        eye = torch.eye(n, dtype=torch.float64)
        rho = 1.0 / (y @ s)
        Hy = H @ y

        def product(left, right, extra):
            return left @ H @ right + extra

        ss = torch.outer(s, s)
        variants = [
            ("s and y look swapped: H maps gradient changes to steps, so H_new y = s",
             lambda: bfgs_inverse_update(H, y, s)),
            ("ρ has the wrong sign: ρ = 1/(yᵀs) > 0, and the factors are (I − ρ s yᵀ) and (I − ρ y sᵀ)",
             lambda: product(eye + rho * torch.outer(s, y), eye + rho * torch.outer(y, s), -rho * ss)),
            ("ρ has the wrong sign in the factors: they are (I − ρ s yᵀ) and (I − ρ y sᵀ)",
             lambda: product(eye + rho * torch.outer(s, y), eye + rho * torch.outer(y, s), rho * ss)),
            ("ρ should be 1/(yᵀs), not yᵀs",
             lambda: product(eye - torch.outer(s, y) / rho, eye - torch.outer(y, s) / rho, ss / rho)),
            ("the term + ρ s sᵀ is missing: without it H_new y = 0, not s",
             lambda: product(eye - rho * torch.outer(s, y), eye - rho * torch.outer(y, s), 0 * ss)),
            ("the factors are transposed: H_new = (I − ρ s yᵀ) H (I − ρ y sᵀ) + ρ s sᵀ (s yᵀ on the left)",
             lambda: product(eye - rho * torch.outer(y, s), eye - rho * torch.outer(s, y), rho * ss)),
            ("only one factor is applied: H_new = (I − ρ s yᵀ) H (I − ρ y sᵀ) + ρ s sᵀ needs both, which is "
             "also what makes it symmetric",
             lambda: product(eye, eye - rho * torch.outer(y, s), rho * ss)),
            ("only one factor is applied: H_new = (I − ρ s yᵀ) H (I − ρ y sᵀ) + ρ s sᵀ needs both, which is "
             "also what makes it symmetric",
             lambda: product(eye - rho * torch.outer(s, y), eye, rho * ss)),
            ("in the expanded form the coefficient of s sᵀ is ρ² yᵀHy + ρ (the ρ² is missing)",
             lambda: H - rho * (torch.outer(s, Hy) + torch.outer(Hy, s)) + (rho * (y @ Hy) + rho) * ss),
            ("this is the DFP update (6.15), H − H y yᵀ H/(yᵀHy) + s sᵀ/(yᵀs), not BFGS",
             lambda: H - torch.outer(Hy, Hy) / (y @ Hy) + rho * ss),
            ("the direct BFGS formula for B (6.19) was applied to H; the inverse update is (6.17)",
             lambda: H - torch.outer(H @ s, H @ s) / (s @ H @ s) + rho * torch.outer(y, y)),
        ]
        rtol = 1e-3 if args[0].dtype != torch.float64 else 1e-6
        expected = bfgs_inverse_update(H, s, y)
        return close_to(out, telling(expected, variants, rtol), rtol=rtol)

    def diagnose_refused(self, case, args, error):
        s, y = (a.double() for a in args[1:])
        sy = float(s @ y)
        cosine = sy / float(torch.linalg.vector_norm(s) * torch.linalg.vector_norm(y))
        message = (f"raised ValueError although yᵀs = {sy:.1e} > 0: the pair satisfies the curvature condition, so "
                   "the update must be made; refuse only yᵀs ≤ 0")
        if cosine < 1e-2:
            return message + (f" — the pair is nearly orthogonal (yᵀs/(‖y‖‖s‖) = {cosine:.1e}), which makes ρ large "
                              "but the update valid; a relative tolerance that rejects it is too strict")
        if abs(sy) < 1e-6:
            return message + (f" — yᵀs is small only because the step is short (‖s‖ = "
                              f"{float(torch.linalg.vector_norm(s)):.1e}, yᵀs/(‖y‖‖s‖) = {cosine:.2f}): an absolute "
                              "threshold on yᵀs, such as yᵀs < 1e-10, depends on the units of x and rejects valid "
                              "short steps")
        return message

    def diagnose_invalid(self, case, args, out):
        return ("the curvature check is missing: test yᵀs > 0 before forming ρ = 1/(yᵀs), and raise ValueError "
                "otherwise (a relative or absolute tolerance must not reject small positive yᵀs)")
