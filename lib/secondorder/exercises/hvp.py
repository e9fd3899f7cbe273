r"""Exercise ``hvp(f, x, v)`` (section 05): :math:`\nabla^2 f(x)\, v` by Pearlmutter's trick.

The student's function must return the Hessian-vector product exactly (to rounding) without forming
the Hessian. The test functions are :class:`~secondorder.exercises.base.SourceFunction` objects
(a ``lambda`` with bound tensors), so the autograder's sandboxed process can rebuild them.

Three properties separate the right answer from the usual wrong ones:

* **exact to rounding**: every float64 case is compared at a relative tolerance of ``1e-12``. The
  exact methods (double backward, forward-over-reverse) agree with a float64 dense Hessian to about
  ``4e-15`` on these cases; the best central finite difference (step :math:`u^{1/3}`) is off by
  ``1e-11`` to ``1e-9``, a forward difference by ``1e-8``, so an approximation fails;
* **never the n×n Hessian**: one hidden case has :math:`n = 10^6` (a separable function plus a
  rank-3 coupling), where the Hessian would take 8 TB; :meth:`HVP.judge` says so in those words
  instead of quoting the allocator;
* **dtype, shape, inputs**: float32 in, float32 out; a matrix-shaped ``x`` gives a matrix-shaped
  result; ``x`` and ``v`` are not modified; a linear ``f`` gives zero.
"""

from __future__ import annotations

import math

import torch

from .. import testing
from ..curvature.hvp import hvp
from .base import Case, Exercise, SourceFunction
from .generators import close_to, generator, matching, random_vector, telling

LARGE_N = 1_000_000
RTOL = {torch.float64: 1e-12, torch.float32: 1e-4}

#: The test functions: ``name -> source``; each names its bound tensors.
SOURCES = {
    "quadratic": "lambda x: 0.5 * x @ (A @ x) - b @ x",
    "sin + coupling": "lambda x: (x.sin() * x).sum() + (A @ x).pow(2).sum()",
    "logsumexp": "lambda x: torch.logsumexp(W @ x, 0) + 0.5 * (x * x).sum()",
    "tanh layer": "lambda x: 0.5 * torch.tanh(W @ x).pow(2).sum()",
    "rosenbrock": "lambda x: (100 * (x[1:] - x[:-1] ** 2) ** 2 + (1 - x[:-1]) ** 2).sum()",
    "matrix": "lambda X: 0.25 * (X.T @ X).pow(2).sum() + (C * X).sin().sum()",
    "linear": "lambda x: c @ x + 3.0",
    "cubic + linear": "lambda x: x[0] ** 3 + c @ x",
}


def _gen(seed: int) -> torch.Generator:
    return generator(5000 + seed)


def _bound(name: str, n: int, seed: int, shape=None) -> dict:
    """The tensors ``SOURCES[name]`` refers to, in float64."""
    g, f64 = _gen(seed), torch.float64
    if name == "quadratic":
        M = torch.randn(n, n, generator=g, dtype=f64)
        return {"A": 0.5 * (M + M.T), "b": torch.randn(n, generator=g, dtype=f64)}
    if name == "sin + coupling":
        return {"A": torch.randn(3, n, generator=g, dtype=f64) / math.sqrt(n)}
    if name == "logsumexp":
        return {"W": torch.randn(2 * n, n, generator=g, dtype=f64)}
    if name == "tanh layer":
        return {"W": torch.randn(n, n, generator=g, dtype=f64) / math.sqrt(n)}
    if name == "matrix":
        return {"C": torch.randn(*shape, generator=g, dtype=f64)}
    if name in ("linear", "cubic + linear"):
        return {"c": torch.randn(n, generator=g, dtype=f64)}
    return {}


def _case(name: str, n: int, seed: int, dtype=torch.float64, scale: float = 1.0, shape=None,
          v_scale: float = 1.0, x_requires_grad: bool = False):
    """``(f, x, v)`` for the function ``name`` at a random point of size ``scale``."""
    shape = shape or (n,)
    bound = {k: t.to(dtype) for k, t in _bound(name, n, seed, shape).items()}
    f = SourceFunction(SOURCES[name], bound, label=f"f(x) = {SOURCES[name][len('lambda x: '):]}")
    x = (scale * random_vector(math.prod(shape), 7 * seed + 1)).reshape(shape).to(dtype)
    v = (v_scale * random_vector(math.prod(shape), 7 * seed + 2)).reshape(shape).to(dtype)
    if x_requires_grad:
        x.requires_grad_(True)
    return f, x, v


def _large():
    return _case("sin + coupling", LARGE_N, 90, scale=2.0)


def _gradient(f, x):
    z = x.detach().requires_grad_(True)
    with torch.enable_grad():
        (g,) = torch.autograd.grad(f(z), z, allow_unused=True)
    return torch.zeros_like(x) if g is None else g


def _central_difference(f, x, v):
    u = torch.finfo(x.dtype).eps
    h = u ** (1 / 3) * (1 + float(x.detach().norm())) / max(float(v.norm()), 1e-300)
    return (_gradient(f, x + h * v) - _gradient(f, x - h * v)) / (2 * h)


def _bytes(size: int) -> str:
    for unit, factor in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6)):
        if size >= factor:
            return f"{size / factor:,.0f} {unit}"
    return f"{size:,} bytes"


_NO_GRAPH = ("does not require grad", "does not have a grad_fn", "appears to not have been used")
_NOT_SCALAR = ("1D tensors expected", "cannot be multiplied", "only for scalar outputs", "inconsistent tensor size")


class HVP(Exercise):
    """``hvp(f, x, v)``: the Hessian-vector product by double backward, exact, never the Hessian."""

    name = "hvp"
    reference = staticmethod(hvp)
    arg_names = ("f", "x", "v")
    returns_detached = True

    def catalogue(self):
        f64, f32 = torch.float64, torch.float32
        cases = [
            Case("quadratic/n=6", "Hv", lambda: _case("quadratic", 6, 0)),
            Case("sin + coupling/n=10", "Hv", lambda: _case("sin + coupling", 10, 1)),
            Case("logsumexp/n=8/float32", "dtype", lambda: _case("logsumexp", 8, 2, f32)),
            Case("matrix x/(3, 4)", "shape", lambda: _case("matrix", 12, 3, shape=(3, 4))),
            Case("linear f/n=5: Hv = 0", "linear f", lambda: _case("linear", 5, 27)),
        ]
        for name, n, dtype, scale, seed in (("quadratic", 40, f64, 1.0, 10), ("quadratic", 25, f32, 1.0, 11),
                                            ("sin + coupling", 200, f64, 3.0, 12),
                                            ("logsumexp", 30, f64, 1.0, 13), ("tanh layer", 30, f32, 1.0, 14),
                                            ("tanh layer", 50, f64, 2.0, 15), ("rosenbrock", 20, f64, 1.5, 16),
                                            ("cubic + linear", 9, f64, 1.0, 17)):
            cases.append(Case(f"{name}/n={n}/{str(dtype)[6:]}", "Hv",
                              lambda name=name, n=n, dtype=dtype, scale=scale, seed=seed:
                              _case(name, n, seed, dtype, scale), hidden=True))
        cases += [
            Case("exact to rounding/rosenbrock/n=30", "exact, not approximate",
                 lambda: _case("rosenbrock", 30, 20, scale=2.0), hidden=True),
            Case("exact to rounding/tanh layer/n=40", "exact, not approximate",
                 lambda: _case("tanh layer", 40, 21, scale=3.0), hidden=True),
            Case("matrix x/(5, 3)/float32", "shape", lambda: _case("matrix", 15, 22, f32, shape=(5, 3)),
                 hidden=True),
            Case("linear f: Hv = 0", "linear f", lambda: _case("linear", 7, 23), hidden=True),
            Case("v = 0", "linear in v", lambda: _case("sin + coupling", 6, 24, v_scale=0.0), hidden=True),
            Case("‖v‖ = 1e6", "linear in v", lambda: _case("logsumexp", 6, 25, v_scale=1e6), hidden=True),
            Case("x requires grad", "inputs", lambda: _case("tanh layer", 8, 26, x_requires_grad=True),
                 hidden=True),
            Case(f"large/n={LARGE_N:,}", "never the n×n Hessian", _large, hidden=True, timeout_s=20.0),
        ]
        return cases

    def judge(self, case, args, out, args_after=None, error=None, calls=None, flops=None):
        if error is not None:
            n = args[1].numel()
            if any(k in error for k in ("can't allocate", "MemoryError", "DefaultCPUAllocator", "out of memory")):
                size = n * n * args[1].element_size()
                error = (f"MemoryError: ran out of memory — built the n×n Hessian? At n = {n:,} it takes "
                         f"{_bytes(size)}: differentiate ∇f(x)ᵀv instead (two backward passes, O(n) memory)")
            elif any(k in error for k in _NO_GRAPH):
                if case.group == "linear f":
                    error += (" — likely cause: f is linear here, so ∇f(x) does not depend on x and autograd has "
                              "nothing to differentiate a second time: Hv = 0, return zeros shaped like x (test "
                              "g.requires_grad) — or x itself does not require grad: differentiate with respect to "
                              "z = x.detach().requires_grad_(True)")
                else:
                    error += (" — likely cause: the second backward pass has no graph to follow. x must require "
                              "grad (x = x.detach().requires_grad_(True)), the first torch.autograd.grad needs "
                              "create_graph=True, and the gradient must not be detached before ∇f(x)ᵀv")
            elif "Mismatch in shape" in error:
                error += (" — likely cause: grad_outputs must have the shape of the gradient, which is the shape of x "
                          f"{tuple(args[1].shape)}: pass v as given, not flattened or reshaped")
            elif any(k in error for k in _NOT_SCALAR):
                where = f" (x has shape {tuple(args[1].shape)} here)" if args[1].ndim > 1 else ""
                error += (f" — likely cause: ∇f(x)ᵀv is not formed as a scalar{where}: it is the sum of the "
                          "elementwise products, (g * v).sum(), or pass grad_outputs=v; torch.dot and @ take the "
                          "inner product of vectors only")
        return super().judge(case, args, out, args_after=args_after, error=error, calls=calls, flops=flops)

    def compare(self, case, args, out, expected):
        testing.check_tensor_like("Hv", out, expected)
        rtol = RTOL.get(expected.dtype, 1e-4)
        err = float(torch.linalg.vector_norm(out.detach().double() - expected.double()))
        scale = float(torch.linalg.vector_norm(expected.double()))
        if not err <= rtol * scale:
            relative = f"{err / scale:.1e} (relative" if scale > 0 else f"{err:.1e} (absolute: Hv is 0 here"
            raise AssertionError(f"Hv differs from ∇²f(x) v by {relative}; tolerance {rtol:.0e}) for "
                                 f"{args[0]!r}")

    def diagnose(self, case, args, out):
        f, x, v = args
        fn = f.fn if isinstance(f, SourceFunction) else f
        if not isinstance(out, torch.Tensor):
            return None
        if out.dtype != x.dtype:
            return (f"the result is {out.dtype} for x in {x.dtype}: compute in the dtype of x (no .double() or "
                    ".float() conversions) and return a tensor like x")
        if out.shape != x.shape:
            if out.numel() == x.numel():
                return "the result is flattened or transposed: Hv has the shape of x (reshape it back)"
            if out.ndim == 2 and out.shape[0] == out.shape[1] == x.numel():
                return "returned the Hessian itself; the exercise asks for the product Hv, without forming H"
            return None
        vnorm = float(v.norm())
        if not bool(torch.isfinite(out).all()) and vnorm == 0.0:
            return "v = 0 gives NaN: v was normalized (0/0)? Hv is linear in v, so use v as given (H·0 = 0)"
        exact = hvp(fn, x.detach(), v)
        grad = _gradient(fn, x)
        variants = [
            ("returned the gradient ∇f(x), not the Hessian-vector product: differentiate ∇f(x)ᵀv a second "
             "time", lambda: grad),
            ("returned ∇f(x) + Hv: x.grad accumulates over the two .backward() calls (zero it in between, or "
             "use torch.autograd.grad, which never touches .grad)", lambda: grad + exact),
            ("returned −Hv: the sign is wrong (Hv = ∇ₓ(∇f(x)ᵀv), no minus)", lambda: -exact),
            ("v was normalized: Hv is linear in v, so use v as given", lambda: exact / vnorm),
            ("returned Hv twice over: the second backward pass should see ∇f(x)ᵀv once", lambda: 2 * exact),
            ("returned (∇f(x)ᵀv)·v or another outer-product shortcut: the Hessian is needed, not the gradient",
             lambda: float(grad.flatten() @ v.flatten()) * v),
            ("returned Hv with v = ∇f(x): use the v passed in", lambda: hvp(fn, x.detach(), grad)),
            ("∇f(x)ᵀv was averaged (.mean()) instead of summed: the inner product is (g * v).sum(), so the result "
             f"came out divided by the {x.numel()} entries of x", lambda: exact / x.numel()),
        ]
        rtol = 1e-4 if x.dtype != torch.float64 else 1e-8
        # Where one output fits several mistakes (v = 0 makes ∇f(x) + Hv the gradient), name each.
        found = matching(out, telling(exact, variants, 1e-6), rtol)
        if found:
            return " — or ".join(found)
        near_miss = ("the result is close to Hv but not exact to rounding: a finite-difference approximation of "
                     "the gradient along v? Autograd gives the exact product by differentiating ∇f(x)ᵀv")
        if x.dtype == torch.float64:
            return close_to(out, [(near_miss, lambda: exact)], rtol=1e-5)
        return close_to(out, [(near_miss, lambda: _central_difference(fn, x.detach(), v))], rtol=1e-3)
