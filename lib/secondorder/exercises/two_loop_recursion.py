r"""Exercise ``two_loop_recursion(g, s_hist, y_hist, gamma=None)`` (section 03): :math:`H_k g` by Algorithm 7.4.

The student's function must return the product of the L-BFGS matrix with ``g`` without forming it. One
hidden case has :math:`n = 10^6`: an answer that builds the :math:`n \times n` matrix (8 TB in float64)
fails there, and :meth:`TwoLoopRecursion.judge` says so in those words instead of quoting the allocator.
"""

from __future__ import annotations

import torch

from .. import testing
from ..two_loop import two_loop_recursion
from .base import Case, CaseResult
from .bfgs_inverse_update import RaisesOnInvalidInput
from .generators import close_to, random_spd, random_vector

LARGE_N = 1_000_000


def _history(n, m, dtype, seed, cond=100.0, as_tensor=False, container=list):
    """A vector g and m pairs y_i = A s_i with A positive definite (dense for small n, diagonal for large n)."""
    g = random_vector(n, seed, dtype)
    if n <= 200:
        A = random_spd(n, cond, seed + 1, torch.float64)
        apply = lambda s: A @ s                                          # noqa: E731
    else:
        lam = torch.logspace(0.0, float(torch.log10(torch.tensor(cond))), n, dtype=torch.float64)
        apply = lambda s: lam * s                                        # noqa: E731
    S = [random_vector(n, seed + 10 + i, torch.float64) for i in range(m)]
    Y = [apply(s) for s in S]
    S, Y = [s.to(dtype) for s in S], [y.to(dtype) for y in Y]
    if as_tensor:
        empty = torch.zeros(0, n, dtype=dtype)
        return g, (torch.stack(S) if m else empty), (torch.stack(Y) if m else empty)
    return g, container(S), container(Y)


def _with_gamma(n, m, dtype, seed, gamma):
    g, S, Y = _history(n, m, dtype, seed)
    return g, S, Y, gamma


def _secant(n, m, dtype, seed):
    """The newest y as g: the recursion must give back the newest s (H_k y_{k-1} = s_{k-1})."""
    _, S, Y = _history(n, m, dtype, seed)
    return Y[-1].clone(), S, Y


def _scaled_pairs(n, m, seed):
    """Pairs of very different lengths (1e-6 … 1e6): γ and ρ matter, not their absolute size."""
    g, S, Y = _history(n, m, torch.float64, seed)
    scales = torch.logspace(-6, 6, m, dtype=torch.float64)
    return g, [c * s for c, s in zip(scales, S)], [c * y for c, y in zip(scales, Y)]


def _bad_pair(n, m, dtype, seed, which, sign=-1.0):
    """Pair ``which`` has y = sign · A s: yᵀs < 0 (or = 0 with sign 0)."""
    g, S, Y = _history(n, m, dtype, seed)
    if sign == 0.0:
        S[which] = torch.zeros(n, dtype=dtype)
        S[which][0] = 1.0
        Y[which] = torch.zeros(n, dtype=dtype)
        Y[which][1] = 1.0
    else:
        Y[which] = sign * Y[which]
    return g, S, Y


def _large():
    return _history(LARGE_N, 3, torch.float64, 90)


def _general(g, S, Y, gamma="newest", first="newest", second="oldest", rho="ys", alpha_from="q",
             beta_from="y", sign=1.0):
    """The two-loop recursion with one knob per typical mistake, in float64 (for the diagnosis)."""
    g = g.double()
    S, Y = [s.double() for s in S], [y.double() for y in Y]
    m = len(S)
    if not m:
        gam = 1.0
    elif gamma == "newest":
        gam = float(S[-1] @ Y[-1] / (Y[-1] @ Y[-1]))
    elif gamma == "oldest":
        gam = float(S[0] @ Y[0] / (Y[0] @ Y[0]))
    elif gamma == "inverted":
        gam = float(Y[-1] @ Y[-1] / (S[-1] @ Y[-1]))
    elif gamma == "one":
        gam = 1.0
    else:
        gam = float(gamma)
    rhos = {"ys": [1 / float(y @ s) for s, y in zip(S, Y)], "ss": [1 / float(s @ s) for s in S],
            "yy": [1 / float(y @ y) for y in Y], "inverse": [float(y @ s) for s, y in zip(S, Y)]}[rho]
    order1 = list(reversed(range(m))) if first == "newest" else list(range(m))
    order2 = list(range(m)) if second == "oldest" else list(reversed(range(m)))
    q = g.clone()
    alpha = [0.0] * m
    for i in order1:
        alpha[i] = rhos[i] * float(S[i] @ (q if alpha_from == "q" else g))
        q = q - alpha[i] * Y[i]
    r = gam * q
    for i in order2:
        beta = rhos[i] * float((Y[i] if beta_from == "y" else S[i]) @ r)
        r = r + (alpha[i] - beta) * S[i]
    return sign * r


class TwoLoopRecursion(RaisesOnInvalidInput):
    """``two_loop_recursion(g, s_hist, y_hist, gamma=None)``: H_k g of L-BFGS in O(mn), Algorithm 7.4."""

    name = "two_loop_recursion"
    reference = staticmethod(two_loop_recursion)
    arg_names = ("g", "s_hist", "y_hist", "gamma")

    def catalogue(self):
        f64, f32 = torch.float64, torch.float32
        cases = [
            Case("m=0/n=5", "empty history", lambda: _history(5, 0, f64, 0)),
            Case("m=1/n=4/float64", "H_k g", lambda: _history(4, 1, f64, 1)),
            Case("m=5/n=20/float64", "H_k g", lambda: _history(20, 5, f64, 2)),
            Case("m=3/n=10/float32", "H_k g", lambda: _history(10, 3, f32, 3)),
            Case("secant/m=4", "secant equation H_k y = s", lambda: _secant(12, 4, f64, 4)),
            Case("curvature/pair 1 of 3", "curvature condition", lambda: _bad_pair(6, 3, f64, 5, 1)),
        ]
        for m in (0, 1, 5, 10):
            for n, dtype in ((3, f64), (30, f32), (150, f64), (600, f32), (1500, f64)):
                cases.append(Case(f"m={m}/n={n}/{str(dtype)[6:]}", "H_k g",
                                  lambda n=n, m=m, dtype=dtype: _history(n, m, dtype, 100 + 7 * m + n % 97),
                                  hidden=True))
        cases += [
            Case("secant/m=1/float32", "secant equation H_k y = s", lambda: _secant(8, 1, f32, 41), hidden=True),
            Case("secant/m=10", "secant equation H_k y = s", lambda: _secant(40, 10, f64, 42), hidden=True),
            Case("gamma=0.25", "explicit γ", lambda: _with_gamma(10, 4, f64, 43, 0.25), hidden=True),
            Case("gamma=7/m=0", "explicit γ", lambda: _with_gamma(6, 0, f64, 44, 7.0), hidden=True),
            Case("gamma=tensor/float32", "explicit γ",
                 lambda: _with_gamma(9, 3, f32, 45, torch.tensor(3.0, dtype=f32)), hidden=True),
            Case("ill-conditioned/cond=1e8", "ill-conditioned pairs",
                 lambda: _history(30, 6, f64, 46, cond=1e8), hidden=True),
            Case("ill-conditioned/cond=1e4/float32", "ill-conditioned pairs",
                 lambda: _history(20, 5, f32, 47, cond=1e4), hidden=True),
            Case("scaled pairs/1e-6…1e6", "ill-conditioned pairs", lambda: _scaled_pairs(25, 5, 48), hidden=True),
            Case("tuples", "inputs unmodified", lambda: _history(10, 4, f64, 49, container=tuple), hidden=True),
            Case("tensor histories (m, n)", "inputs unmodified",
                 lambda: _history(10, 4, f64, 50, as_tensor=True), hidden=True),
            Case("tensor histories, m=0", "inputs unmodified",
                 lambda: _history(7, 0, f64, 51, as_tensor=True), hidden=True),
            Case("curvature/newest yᵀs<0", "curvature condition", lambda: _bad_pair(8, 4, f64, 52, 3), hidden=True),
            Case("curvature/oldest yᵀs<0/float32", "curvature condition",
                 lambda: _bad_pair(8, 4, f32, 53, 0), hidden=True),
            Case("curvature/yᵀs=0", "curvature condition", lambda: _bad_pair(5, 2, f64, 54, 0, sign=0.0),
                 hidden=True),
            Case(f"large/n={LARGE_N:,}/m=3", "never an n×n matrix", _large, hidden=True, timeout_s=20.0),
        ]
        return cases

    def invalid_reason(self, args):
        s_hist, y_hist = args[1], args[2]
        for i, (s, y) in enumerate(zip(s_hist, y_hist)):
            sy = torch.dot(s, y)
            if not bool(sy > 0):
                return (f"pair {i} has yᵀs = {float(sy):.2e} ≤ 0: it violates the curvature condition, so "
                        "ρ = 1/(yᵀs) is not positive and the pair must never have been stored")
        return None

    def diagnose_invalid(self, case, args, out):
        return "the curvature check is missing: test yᵢᵀsᵢ > 0 for every stored pair and raise ValueError otherwise"

    def judge(self, case, args, out, args_after=None, error=None, calls=None, flops=None):
        if error is not None and any(k in error for k in ("can't allocate", "MemoryError", "DefaultCPUAllocator",
                                                           "out of memory")):
            n = args[0].shape[0]
            size = n * n * args[0].element_size()
            return CaseResult(case, False, f"ran out of memory — built an n×n matrix? at n = {n:,} that is "
                              f"{_bytes(size)}: apply H_k with the two loops over the pairs, O(mn), instead",
                              "error")
        return super().judge(case, args, out, args_after=args_after, error=error, calls=calls, flops=flops)

    def compare(self, case, args, out, expected):
        g, s_hist, y_hist = args[:3]
        testing.check_tensor_like("H_k g", out, expected)
        rtol = testing.default_rtol(out) * 100
        if case.group.startswith("secant"):
            testing.check_close("H_k y_newest", out, s_hist[-1], rtol=rtol,
                                hint="the newest pair must satisfy the secant equation H_k y = s")
        testing.check_close("H_k g", out, expected, rtol=rtol)

    def diagnose(self, case, args, out):
        g, S, Y = args[:3]
        gamma = args[3] if len(args) > 3 else None
        S, Y = list(S), list(Y)
        if not len(S):
            return close_to(out, [("returned −γ g (the search direction); the function returns H_k g = γ g",
                                   lambda: -g.double() * (1.0 if gamma is None else float(gamma)))], rtol=1e-4) \
                or "with an empty history H_k = γI: return γ·g (γ = 1 when gamma is None), a new tensor"
        gam = "newest" if gamma is None else float(gamma)
        variants = [
            ("returned −H_k g (the search direction); the function returns H_k g, the caller negates it",
             lambda: _general(g, S, Y, gamma=gam, sign=-1.0)),
            ("the second loop runs in the wrong order: it must go oldest → newest (the first loop newest → oldest)",
             lambda: _general(g, S, Y, gamma=gam, second="newest")),
            ("the first loop runs in the wrong order: it must go newest → oldest (the second loop oldest → newest)",
             lambda: _general(g, S, Y, gamma=gam, first="oldest")),
            ("both loops run in the wrong order: the first must go newest → oldest, the second oldest → newest",
             lambda: _general(g, S, Y, gamma=gam, first="oldest", second="newest")),
            ("ρ should be 1/(yᵢᵀsᵢ), not 1/(sᵢᵀsᵢ)", lambda: _general(g, S, Y, gamma=gam, rho="ss")),
            ("ρ should be 1/(yᵢᵀsᵢ), not 1/(yᵢᵀyᵢ)", lambda: _general(g, S, Y, gamma=gam, rho="yy")),
            ("ρ should be 1/(yᵢᵀsᵢ), not yᵢᵀsᵢ", lambda: _general(g, S, Y, gamma=gam, rho="inverse")),
            ("αᵢ comes from the wrong vector: αᵢ = ρᵢ sᵢᵀq with the q updated so far, not sᵢᵀg",
             lambda: _general(g, S, Y, gamma=gam, alpha_from="g")),
            ("β comes from the wrong vector: β = ρᵢ yᵢᵀr, not ρᵢ sᵢᵀr",
             lambda: _general(g, S, Y, gamma=gam, beta_from="s")),
        ]
        if gamma is None:
            variants += [
                ("the γ scaling is missing: H_k⁰ = γI with γ = sᵀy/yᵀy of the newest pair when gamma is None",
                 lambda: _general(g, S, Y, gamma="one")),
                ("γ comes from the oldest pair: use the newest, γ = s_{k-1}ᵀy_{k-1}/y_{k-1}ᵀy_{k-1}",
                 lambda: _general(g, S, Y, gamma="oldest")),
                ("γ is inverted: γ = sᵀy/yᵀy (an inverse curvature), not yᵀy/sᵀy",
                 lambda: _general(g, S, Y, gamma="inverted")),
            ]
        else:
            variants.append(("the gamma argument is ignored: when it is given, H_k⁰ = gamma·I",
                             lambda: _general(g, S, Y, gamma="newest")))
        rtol = 1e-3 if g.dtype != torch.float64 else 1e-6
        truth = _general(g, S, Y, gamma=gam)
        telling = [v for v in variants if close_to(truth, [v], rtol=rtol) is None]
        return close_to(out, telling, rtol=rtol)


def _bytes(size: int) -> str:
    for unit, factor in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6)):
        if size >= factor:
            return f"{size / factor:,.0f} {unit}"
    return f"{size:,} bytes"
