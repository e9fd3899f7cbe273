r"""Exercise ``kfac_factors(a, g)`` (section 06): K-FAC's factors :math:`A = a^\top a / N`, :math:`G = g^\top g / N`.

The factors are uncentred second moments over the batch, normalized once by the batch size. The
diagnosis compares each returned factor with what the typical wrong formulas give: the factors
swapped, the :math:`N \times N` Gram matrix :math:`a a^\top`, a sum instead of a mean, a covariance
(``torch.cov``), the outer product of the batch means, per-example outer products left unaveraged, and
per-example gradients rescaled by :math:`N` as if they came from a mean-reduced loss. Where one output
fits several of these (at :math:`N = 2`, dividing by :math:`N - 1` is the plain sum), each is named.
"""

from __future__ import annotations

import torch

from .. import testing
from ..kfac import kfac_factors
from .base import Case, Exercise
from .generators import close_to, generator, matching, telling


def _batch(N, d_in, d_out, dtype, seed, bias=False, scale_a=1.0, scale_g=0.1):
    """Layer inputs a (N, d_in) with a non-zero mean (as after a tanh or ReLU) and output gradients g (N, d_out)."""
    gen = generator(3000 + seed)
    a = scale_a * (torch.randn(N, d_in, generator=gen, dtype=torch.float64) + 0.5)
    g = scale_g * torch.randn(N, d_out, generator=gen, dtype=torch.float64)
    if bias:
        a = torch.cat([a, torch.ones(N, 1, dtype=torch.float64)], dim=1)
    return a.to(dtype), g.to(dtype)


def _factor_variants(x, name, other):
    """Typical wrong versions of one factor from its rows ``x`` (N, d): (kind, output) pairs.

    ``other`` is the other factor's correct value. The messages are in :data:`_MESSAGES`, written for
    one factor or both (``{who}``), so a mistake made in both factors is named once.
    """
    N = x.shape[0]
    M = x.T @ x
    centred = x - x.mean(dim=0)
    variants = [
        ("swapped", lambda: other),
        ("gram", lambda: x @ x.T / N),
        ("sum", lambda: M),
        ("twice", lambda: M / N ** 2),
        ("n-1", lambda: M / (N - 1)),
        ("centred", lambda: centred.T @ centred / N),
        ("cov", lambda: centred.T @ centred / (N - 1)),
        ("means", lambda: torch.outer(x.mean(dim=0), x.mean(dim=0))),
        ("diagonal", lambda: torch.diag(torch.diagonal(M) / N)),
    ]
    if name == "G":
        variants.append(("g-times-N", lambda: M * N))
    return variants


_FORMULA = {"A": "A = aᵀa / N", "G": "G = gᵀg / N", "A and G": "A = aᵀa / N and G = gᵀg / N"}
_MESSAGES = {
    "swapped": "A and G are swapped: A = aᵀa / N comes from the inputs a (d_in × d_in), G = gᵀg / N from the "
               "output gradients g (d_out × d_out)",
    "gram": "{who}: an N × N Gram matrix of the examples (like a aᵀ / N) instead of the sum of outer products "
            "over the N examples, {formula} (d × d)",
    "sum": "{who}: not divided by N: each factor is the mean over the batch, {formula}, not the sum",
    "twice": "{who}: divided by N twice (N² in all): {formula}",
    "n-1": "{who}: divided by N − 1, as for a sample covariance: K-FAC's factors are plain means, {formula}",
    "centred": "{who}: the batch mean was subtracted (a covariance); K-FAC uses the uncentred second moment "
               "{formula}",
    "cov": "{who}: a sample covariance (torch.cov subtracts the batch mean and divides by N − 1); K-FAC uses the "
           "uncentred second moment {formula}",
    "means": "{who}: the outer product of the batch means (rank one); K-FAC averages the outer products of the "
             "examples, {formula}",
    "per-example": "{who}: the per-example outer products, shape (N, d, d), were not averaged over the batch: "
                   "{formula}",
    "diagonal": "{who}: only the diagonal was kept (a diagonal approximation); the factor is the full matrix "
                "{formula}",
    "g-times-N": "G: the rows of g were multiplied by N, as if they came from a mean-reduced loss; kfac_factors "
                 "receives each example's own gradient g_n, so G = gᵀg / N with g as given",
}


def _message(kinds, who):
    return " — or ".join(_MESSAGES[kind].format(who=who, formula=_FORMULA[who]) for kind in kinds)


class KFACFactors(Exercise):
    """``kfac_factors(a, g)``: (A, G) = (aᵀa / N, gᵀg / N)."""

    name = "kfac_factors"
    reference = staticmethod(kfac_factors)
    arg_names = ("a", "g")

    def catalogue(self):
        f64, f32 = torch.float64, torch.float32
        cases = [
            Case("N=6/d_in=4/d_out=3", "factors", lambda: _batch(6, 4, 3, f64, 0)),
            Case("square/N=8/d_in=d_out=5", "factors", lambda: _batch(8, 5, 5, f64, 1)),
            Case("bias column/N=10", "bias column of ones", lambda: _batch(10, 3, 2, f64, 2, bias=True)),
            Case("float32/N=16", "dtype", lambda: _batch(16, 6, 4, f32, 3)),
            Case("N=1", "one example", lambda: _batch(1, 3, 2, f64, 4)),
        ]
        for N, d_in, d_out, dtype in ((512, 257, 128, f32), (300, 65, 10, f64), (64, 2, 50, f64),
                                      (64, 100, 3, f32), (3, 20, 7, f64), (2, 5, 5, f32)):
            cases.append(Case(f"N={N}/d_in={d_in}/d_out={d_out}/{str(dtype)[6:]}", "larger and rectangular layers",
                              lambda N=N, d_in=d_in, d_out=d_out, dtype=dtype: _batch(N, d_in, d_out, dtype, N + d_in),
                              hidden=True))
        cases += [
            Case("scaled/a~1e3/g~1e-6", "scale", lambda: _batch(20, 6, 4, f64, 50, scale_a=1e3, scale_g=1e-6),
                 hidden=True),
            Case("bias column/float32", "bias column of ones", lambda: _batch(40, 9, 9, f32, 51, bias=True),
                 hidden=True),
            Case("N=1/float32", "one example", lambda: _batch(1, 7, 4, f32, 52), hidden=True),
            Case("square/N=32/d=16", "factors", lambda: _batch(32, 16, 16, f64, 53), hidden=True),
        ]
        return cases

    def compare(self, case, args, out, expected):
        if not isinstance(out, tuple | list) or len(out) != 2:
            raise AssertionError(f"the result should be the pair (A, G), got {type(out).__name__}"
                                 + (f" of length {len(out)}" if isinstance(out, tuple | list) else ""))
        rtol = testing.default_rtol(*args) * 10
        for name, M, M_ref in zip(("A", "G"), out, expected):
            testing.check_tensor_like(name, M, M_ref)
            testing.check_symmetric(name, M)
            testing.check_close(name, M, M_ref, rtol=rtol)

    def diagnose(self, case, args, out):
        if not isinstance(out, tuple | list) or len(out) != 2:
            return "return both factors: `return A, G`"
        wrong_dtype = [f"{name} is {M.dtype}" for name, M in zip("AG", out)
                       if isinstance(M, torch.Tensor) and M.dtype != args[0].dtype]
        if wrong_dtype:
            return (f"{' and '.join(wrong_dtype)} for inputs in {args[0].dtype}: compute in the inputs' dtype (no "
                    ".double()), or convert back with .to(a.dtype)")
        a, g = (x.double() for x in args)
        if a.shape[0] == 1 and any(isinstance(M, torch.Tensor) and not bool(torch.isfinite(M).all()) for M in out):
            return ("NaN for N = 1: divided by N − 1 = 0, as for a sample covariance (torch.cov)? K-FAC's factors "
                    "are plain means, A = aᵀa / N and G = gᵀg / N")
        A_ref, G_ref = kfac_factors(a, g)
        rtol = 1e-3 if args[0].dtype != torch.float64 else 1e-6
        kinds = {}
        for name, M, x, ref, other in (("A", out[0], a, A_ref, G_ref), ("G", out[1], g, G_ref, A_ref)):
            if close_to(M, [("", lambda ref=ref: ref)], rtol=rtol) is not None:
                continue                                     # this factor is right
            # Every variant that fits (at N = 2, dividing by N − 1 is the plain sum): name each.
            found = tuple(matching(M, telling(ref, _factor_variants(x, name, other), rtol), rtol))
            if not found and isinstance(M, torch.Tensor) and M.shape != ref.shape:
                found = ("per-example",) if M.shape == (x.shape[0], *ref.shape) else ("size",)
            if found:
                kinds[name] = found
        if kinds.get("A") == kinds.get("G") == ("size",):
            return (f"the factors have the wrong size: A is d_in × d_in ({tuple(A_ref.shape)}), G is d_out × d_out "
                    f"({tuple(G_ref.shape)}), both sums over the N = {a.shape[0]} examples")
        if "A" in kinds and kinds.get("A") == kinds.get("G"):
            return _message(kinds["A"], "A and G")
        hints = [_message(found, name) if found != ("size",) else f"{name} has the wrong size"
                 for name, found in kinds.items()]
        return "; ".join(hints) or None
