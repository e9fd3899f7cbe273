r"""Exercise ``secant_method(g, x0, x1, tol=1e-12, max_iter=50)`` (section 01): the 1-D secant method.

Arguments across processes
--------------------------
The student's function receives ``g`` as a callable, but the autograder sends the case arguments to
a separate process as plain data (``torch.save`` / ``torch.load(weights_only=True)``), where
``secondorder`` is not importable. So every ``g`` of the cases is a Python expression in ``x`` that
uses nothing but ``math`` (:data:`G_SOURCES`), and :meth:`SecantMethod.encode_args` writes it as
``{"__callable__": "lambda x: <expression>", "name": <name>}``; the autograder's process rebuilds it
with ``eval(source, {"math": math, "__builtins__": {}})``, which is what :func:`make_g` and
:meth:`SecantMethod.decode_args` do here. The autograder calls ``encode_args`` when an exercise has it.

Hidden cases under a draw
-------------------------
The functions are fixed, so under a draw (:meth:`~secondorder.exercises.base.Exercise.cases`) each
hidden case is moved by its own affine change of variable :math:`h(x) = a\,g((x - c)/b)`, with the
starts mapped by :math:`x \mapsto b x + c` (:func:`affine_source`): the source sent to the
autograder's process is that of :math:`h`, and the iterates are those of :math:`g`, mapped.

What is checked where
---------------------
The same checks run in both places: the iterates against the reference's, their type, the stopping
rules, the accuracy of the root, and the cost. For the cost, ``g`` is counted where the student's
function calls it: in process by :class:`CountedG`, out of process by the autograder's process, which
sends the counts back (``calls``). A function that evaluates ``g`` more than once per iterate (say
``g(x_k)`` and ``g(x_{k-1})`` afresh every step, doubling the cost when ``g`` is a gradient) fails
:meth:`SecantMethod.check_calls`.
"""

from __future__ import annotations

import math
import re

import torch
from torch import Tensor

from ..secant import secant_method
from .base import Case, Exercise
from .generators import close_to, draw_random, log_uniform, power_of_two, seed_of

#: The functions ``g`` of the cases: expressions in ``x`` using only ``math``. Each comment says why it
#: is there.
G_SOURCES: dict[str, str] = {
    "cube_minus_2": "x**3 - 2",                     # smooth simple root 2^(1/3)
    "cube_minus_8": "x**3 - 8",                     # g(2.0) == 0 exactly: the exact-root stop
    "cos_minus_x": "math.cos(x) - x",               # the Dottie number, no closed form
    "exp_minus_3": "math.exp(x) - 3",               # root log 3, strongly curved
    "quadratic_fprime": "3 * (x - 0.5)",            # f' of the quadratic 1.5 (x - 0.5)^2: one exact step
    "cubic_fprime": "x * x - 2",                    # f' of x^3/3 - 2x, a quadratic: minimizer sqrt(2)
    "x2_minus_4": "x * x - 4",                      # even: g(-a) == g(a), a flat secant
    "atan_minus_half": "math.atan(x) - 0.5",        # a start far out on a flat tail
}


def make_g(source: str):
    """The callable ``lambda x: <source>``, built as the autograder's process builds it."""
    # The sources are this module's constants (or their copies sent by the autograder), never user input.
    return eval("lambda x: " + source, {"math": math, "__builtins__": {}})


#: ``name -> g``, the callables built from :data:`G_SOURCES`.
TEST_FUNCTIONS = {name: make_g(source) for name, source in G_SOURCES.items()}

_DEFAULT_TOL, _DEFAULT_MAX_ITER = 1e-12, 50
_RTOL = 1e-9        # iterates must match the reference's to this, relative to max(1, |x|)
_ROOT_RTOL = 1e-10  # the final iterate must match the brentq root to this, for tight tol


class CountedG:
    """One of the :data:`TEST_FUNCTIONS`, or an affine change of variable of one, counting its calls.

    Parameters
    ----------
    name : str
        A key of :data:`G_SOURCES`.
    source : str, optional
        The expression actually used (default: ``G_SOURCES[name]``); :func:`affine_source` writes it for
        the hidden cases under a draw. It is what :meth:`SecantMethod.encode_args` sends.
    """

    def __init__(self, name: str, source: str | None = None):
        self.name = name
        self.source = G_SOURCES[name] if source is None else source
        self.fn = TEST_FUNCTIONS[name] if source is None else make_g(source)
        self.calls = 0

    def __call__(self, x):
        self.calls += 1
        return self.fn(x)

    def __repr__(self) -> str:
        return f"g(x) = {self.source}"


def affine_source(source: str, a: float, b: float, c: float) -> str:
    r"""The expression of :math:`h(x) = a\,g((x - c)/b)` for the expression ``source`` of :math:`g`.

    The secant iterates are affine-equivariant: started from :math:`b x_0 + c, b x_1 + c` on :math:`h`,
    they are :math:`b x_k + c` for the iterates :math:`x_k` on :math:`g` (the factor :math:`a` cancels
    in the step). With :math:`b` a power of two and :math:`c` a multiple of 1/16, :math:`(x - c)/b` is
    exact at the mapped starts, so an exact root (:math:`a \cdot 0 = 0`), a flat secant (equal values
    stay equal) and the one-step root of a linear :math:`g` stay exact, whatever :math:`a`.
    """
    u = "x" if c == 0 else (f"(x - {c!r})" if c > 0 else f"(x + {-c!r})")
    if b != 1:
        u = f"({u} / {b!r})"
    inner = re.sub(r"\bx\b", lambda _: u, source)
    return f"{a!r} * ({inner})"


def _transformed_case(name: str, x0, x1, options: tuple, seed: int) -> tuple:
    """``(g, x0, x1, *options)`` as written, or moved by a drawn affine change of variable under a draw."""
    rng = draw_random(seed)
    if rng is None:
        return (CountedG(name), x0, x1, *options)
    a = rng.choice((-1.0, 1.0)) * log_uniform(rng, 1e-3, 1e3)
    if isinstance(x0, int) and isinstance(x1, int):       # integer starts stay integers ("returns floats")
        b, c = rng.choice((-8, -4, -2, -1, 1, 2, 4, 8)), rng.randint(-16, 16)
    else:
        b, c = power_of_two(rng, -6, 6, signed=True), rng.randint(-256, 256) / 16
    return (CountedG(name, affine_source(G_SOURCES[name], a, b, c)), b * x0 + c, b * x1 + c, *options)


def _unwrap(g):
    return g.fn if isinstance(g, CountedG) else g


def _options(args: tuple) -> tuple[float, int]:
    tol = args[3] if len(args) > 3 else _DEFAULT_TOL
    max_iter = args[4] if len(args) > 4 else _DEFAULT_MAX_ITER
    return tol, max_iter


def _close(a: float, b: float, rtol: float = _RTOL) -> bool:
    return abs(a - b) <= rtol * max(1.0, abs(b))


def _stop_reason(g, iterates: list[float], tol: float, max_iter: int) -> str:
    """Why the reference stopped: ``"step"``, ``"max_iter"``, ``"root"`` or ``"flat"``."""
    if len(iterates) > 2 and abs(iterates[-1] - iterates[-2]) <= tol * max(1.0, abs(iterates[-2])):
        return "step"
    if len(iterates) - 2 == max_iter:
        return "max_iter"
    g_last = float(g(iterates[-1]))
    return "root" if g_last == 0.0 else "flat"


_REASONS = {
    "step": "the step test |x_{{k+1}} − x_k| ≤ tol·max(1, |x_k|) holds after x_{n}",
    "max_iter": "it has made max_iter = {max_iter} new iterates",
    "root": "g(x_{n}) == 0 exactly",
    "flat": "g(x_{n}) == g(x_{m}): the secant is flat and has no zero",
}


def _root_near(g, x: float) -> float | None:
    """The root of ``g`` next to ``x`` to full precision (brentq on a tiny bracket), or None."""
    from scipy.optimize import brentq

    gx = float(g(x))
    if gx == 0.0:
        return x
    delta = 1e-6 * max(1.0, abs(x))
    a, b = x - delta, x + delta
    if not float(g(a)) * float(g(b)) < 0:
        return None
    return brentq(lambda t: float(g(t)), a, b, xtol=1e-15)


def _run(g, x0, x1, tol, max_iter, step) -> list[float]:
    """The reference loop with another step formula ``step(x_prev, x_cur, g_prev, g_cur)``."""
    x_prev, x_cur = float(x0), float(x1)
    g_prev, g_cur = float(g(x_prev)), float(g(x_cur))
    iterates = [x_prev, x_cur]
    while g_cur != 0.0 and g_cur != g_prev:
        x_next = step(x_prev, x_cur, g_prev, g_cur)
        iterates.append(x_next)
        if abs(x_next - x_cur) <= tol * max(1.0, abs(x_cur)) or len(iterates) - 2 == max_iter:
            break
        x_prev, g_prev = x_cur, g_cur
        x_cur, g_cur = x_next, float(g(x_next))
    return iterates


class SecantMethod(Exercise):
    """``secant_method(g, x0, x1, tol=1e-12, max_iter=50)``: all iterates of the secant method."""

    name = "secant_method"
    reference = staticmethod(secant_method)
    arg_names = ("g", "x0", "x1", "tol", "max_iter")

    def catalogue(self):
        def case(id, group, g, x0, x1, *options, hidden=False):
            # Under a draw every case is moved by its own affine change of variable (affine_source).
            return Case(id, group, lambda: _transformed_case(g, x0, x1, options, seed_of(f"secant/{id}")),
                        hidden=hidden)

        return [
            case("converge/cube/defaults", "convergence", "cube_minus_2", 1.0, 2.0),
            case("converge/cos", "convergence", "cos_minus_x", 0.0, 1.0, 1e-12, 50),
            case("tol/loose", "step test", "cube_minus_2", 1.0, 2.0, 1e-3, 50),
            case("max_iter/3", "max_iter", "exp_minus_3", 0.0, 2.0, 1e-12, 3),
            case("flat/symmetric-starts", "flat secant", "x2_minus_4", -1.0, 1.0, 1e-12, 50),
            # hidden
            case("converge/exp", "convergence", "exp_minus_3", 0.0, 2.0, hidden=True),
            case("converge/quadratic-fprime", "exact root", "quadratic_fprime", 0.0, 1.0, hidden=True),
            case("converge/cubic-fprime", "convergence", "cubic_fprime", 1.0, 2.0, hidden=True),
            case("converge/cos/reversed", "convergence", "cos_minus_x", 1.0, 0.0, hidden=True),
            case("converge/cube/from-above", "convergence", "cube_minus_2", 3.0, 2.5, hidden=True),
            case("converge/atan/far-start", "convergence", "atan_minus_half", 3.0, 2.0, hidden=True),
            case("root/at-x1", "exact root", "cube_minus_8", 1.0, 2.0, hidden=True),
            case("root/at-x0", "exact root", "cube_minus_8", 2.0, 3.0, hidden=True),
            case("flat/wide", "flat secant", "x2_minus_4", -3.0, 3.0, 1e-12, 50, hidden=True),
            case("max_iter/1", "max_iter", "cube_minus_2", 1.0, 2.0, 1e-12, 1, hidden=True),
            case("max_iter/5/far-start", "max_iter", "atan_minus_half", 3.0, 2.0, 1e-12, 5, hidden=True),
            case("tol/1e-6", "step test", "exp_minus_3", 0.0, 2.0, 1e-6, 50, hidden=True),
            case("types/int-starts", "returns floats", "cos_minus_x", 0, 1, 1e-12, 50, hidden=True),
        ]

    # -- plain-data arguments for the autograder (see the module docstring) ------------------

    def encode_args(self, args: tuple) -> tuple:
        """``(g, x0, x1[, tol, max_iter])`` as plain data, ``g`` as ``{"__callable__": source, "name": name}``."""
        g, *rest = args
        if not isinstance(g, CountedG):
            raise ValueError(f"g must be one of the exercise's test functions, got {g!r}")
        return ({"__callable__": "lambda x: " + g.source, "name": g.name}, *rest)

    @staticmethod
    def decode_args(data: tuple) -> tuple:
        """Inverse of :meth:`encode_args` (up to the counter): ``g`` rebuilt from its source."""
        g, *rest = data
        return (eval(g["__callable__"], {"math": math, "__builtins__": {}}), *rest)

    # -- judging ---------------------------------------------------------------------------

    def expected(self, args):
        # The reference calls the raw g, so the counter sees only the student's calls.
        return secant_method(_unwrap(args[0]), *args[1:])

    def judge(self, case, args, out, args_after=None, error=None, calls=None, flops=None):
        self._returned = len(out) if isinstance(out, list) else 0     # for check_calls
        if error is not None and "ZeroDivisionError" in error:
            error = ("ZeroDivisionError: the step divided by g(x_k) − g(x_{k−1}) = 0. When the two values "
                     "are equal the secant is flat and has no zero: stop and return the iterates so far")
        return super().judge(case, args, out, args_after=args_after, error=error, calls=calls, flops=flops)

    def compare(self, case, args, out, expected):
        g, x0, x1 = args[:3]
        tol, max_iter = _options(args)
        _check_type(out)
        if len(out) < 2 or out[0] != float(x0) or out[1] != float(x1):
            raise AssertionError(f"the list should start with x0 = {float(x0)!r} and x1 = {float(x1)!r} "
                                 f"(it holds every iterate, the starting points included); it starts "
                                 f"with {out[:2]}")
        if len(out) - 2 > max_iter:
            raise AssertionError(f"max_iter = {max_iter} allows at most {max_iter} new "
                                 f"iterate{'s' if max_iter != 1 else ''} after x0 and x1, got {len(out) - 2}")
        if not all(math.isfinite(v) for v in out):
            raise AssertionError("the iterates contain NaN or infinite values")
        for k, (a, b) in enumerate(zip(out, expected)):
            if not _close(a, b):
                raise AssertionError(f"x_{k} = {a!r} differs from the expected {b!r} "
                                     f"(x_0 … x_{k - 1} agree; g(x) = {_unwrap_source(g)})")
        # A list of another length is accepted only where the extra steps are at the rounding level: with a
        # loose tol the step test fires well above it, and a longer list is a missed stop.
        if len(out) != len(expected) and not (tol <= 1e-10 and _same_limit(out, expected)):
            n = len(expected) - 1
            reason = _REASONS[_stop_reason(_unwrap(g), expected, tol, max_iter)].format(
                n=n, m=n - 1, max_iter=max_iter)
            raise AssertionError(f"returned {len(out)} iterates, expected {len(expected)}: the method "
                                 f"should stop after x_{n} because {reason}")
        if tol <= 1e-10 and _stop_reason(_unwrap(g), expected, tol, max_iter) in ("step", "root"):
            root = _root_near(_unwrap(g), expected[-1])
            if root is not None and not _close(out[-1], root, _ROOT_RTOL):
                raise AssertionError(f"the last iterate {out[-1]!r} is not the root {root!r} to "
                                     f"{_ROOT_RTOL:.0e} (relative)")

    def check_calls(self, case, args, calls):
        # One call per iterate at most, counting the iterates the function returned where it made more
        # than the reference (steps at the rounding level, see _same_limit); two more calls are allowed.
        # Counted here in process, by the autograder out of process.
        g = args[0]
        n_calls = calls[0] if calls else (g.calls if isinstance(g, CountedG) else None)
        if n_calls is None:
            return
        n_iterates = max(len(self.expected(args)), getattr(self, "_returned", 0))
        if n_calls > n_iterates + 2:
            raise AssertionError(f"g was called {n_calls} times for about {n_iterates} iterates: evaluate g "
                                 "once at each new point and keep the value at the previous one (every call "
                                 "of g can be a full gradient evaluation)")

    def diagnose(self, case, args, out):
        g, x0, x1 = _unwrap(args[0]), args[1], args[2]
        tol, max_iter = _options(args)
        expected = secant_method(g, x0, x1, tol, max_iter)
        reason = _stop_reason(g, expected, tol, max_iter)
        if isinstance(out, float | int | Tensor) and not isinstance(out, bool):
            if isinstance(out, Tensor) and out.numel() != 1:
                return None
            if _close(float(out), expected[-1], 1e-6):
                return ("only the final x is returned; the exercise asks for the list of all iterates "
                        "[x0, x1, x2, …]")
            return None
        if not isinstance(out, list | tuple):
            return None
        try:
            values = torch.tensor([float(v) for v in out], dtype=torch.float64)
        except (TypeError, ValueError, RuntimeError):
            return None
        if not bool(torch.isfinite(values).all()):
            if reason == "flat":
                return ("the secant became flat (g(x_k) == g(x_{k−1})) and the step divided by zero: stop "
                        "before dividing")
            return None

        def run(step, tol=tol, max_iter=max_iter):
            return lambda: _as_variant(_run(g, x0, x1, tol, max_iter, step), expected)

        def ref(**kwargs):
            options = dict(tol=tol, max_iter=max_iter) | kwargs
            return lambda: _as_variant(secant_method(g, x0, x1, **options), expected)

        def sliced(start, stop=None):
            return lambda: _as_variant(expected[start:stop], expected)

        off_by_one = ("off by one in max_iter: max_iter counts the new iterates after x0 and x1 (exactly "
                      "max_iter of them when the run does not stop earlier)")
        variants = [
            ("the step has the wrong sign: the secant slope is (g_k − g_{k−1})/(x_k − x_{k−1}), so the step "
             "is −g_k·(x_k − x_{k−1})/(g_k − g_{k−1}); with x_{k−1} − x_k it moves away from the root",
             run(lambda xp, xc, gp, gc: xc - gc * (xp - xc) / (gc - gp))),
            ("the numerator uses g at the older point: the step is −g(x_k)·(x_k − x_{k−1})/(g_k − g_{k−1}), "
             "with g at the newest point x_k",
             run(lambda xp, xc, gp, gc: xc - gp * (xc - xp) / (gc - gp))),
            ("g_k is multiplied by the secant slope; Newton divides by the derivative, so the step is "
             "−g_k / b_k with b_k = (g_k − g_{k−1})/(x_k − x_{k−1})",
             run(lambda xp, xc, gp, gc: xc - gc * (gc - gp) / (xc - xp))),
            ("x0 and x1 are missing from the list: it should hold every iterate, the starting points "
             "included", sliced(2)),
            ("x0 is missing from the list: it should hold every iterate, starting with x0", sliced(1)),
            (off_by_one, ref(max_iter=max_iter + 1)),
            (off_by_one, ref(max_iter=max(max_iter - 1, 1))),
            ("max_iter counts the new iterates, not the entries of the list (x0 and x1 come on top)",
             ref(max_iter=max(max_iter - 2, 1))),
            ("tol seems ignored: stop as soon as |x_{k+1} − x_k| ≤ tol·max(1, |x_k|)", ref(tol=0.0)),
            (off_by_one if reason == "max_iter"
             else "the last iterate is missing: append x_{k+1} to the list before testing whether to stop",
             sliced(0, -1)),
        ]
        return close_to(values, variants, rtol=1e-9)


def _unwrap_source(g) -> str:
    return g.source if isinstance(g, CountedG) else getattr(g, "__name__", "g")


def _check_type(out) -> None:
    if out is None:
        raise AssertionError("secant_method returned None (did the function forget to return?)")
    if isinstance(out, Tensor):
        what = "one number" if out.numel() == 1 else "a tensor"
        raise AssertionError(f"returned {what} (a torch.Tensor); return a Python list of floats "
                             "[x0, x1, x2, …] holding every iterate")
    if isinstance(out, float | int) and not isinstance(out, bool):
        raise AssertionError(f"returned a single number ({out!r}) instead of the list of all iterates "
                             "[x0, x1, x2, …]")
    if not isinstance(out, list):
        raise AssertionError(f"should return a list of floats, got {type(out).__name__}")
    for k, v in enumerate(out):
        if isinstance(v, Tensor):
            raise AssertionError(f"x_{k} is a torch.Tensor, not a Python float: convert with float(...) "
                                 "(g may return a 0-d tensor)")
        if not isinstance(v, float):
            raise AssertionError(f"x_{k} = {v!r} is of type {type(v).__name__}, not float: convert with "
                                 "float(...) (the starting points too)")


def _same_limit(a: list[float], b: list[float]) -> bool:
    """Lists of different length that agree on their common part and have both converged.

    Equivalent formulas round differently, so one of them may make an extra step of the size of the
    rounding error before a stopping rule fires; that is not a mistake.
    """
    short, long = sorted((a, b), key=len)
    tail = long[len(short) - 1:]
    return max(tail) - min(tail) <= _RTOL * max(1.0, abs(short[-1]))


def _as_variant(iterates: list[float], expected: list[float]) -> Tensor | None:
    """``iterates`` as a tensor for :func:`close_to`, or None when they equal the expected ones."""
    if len(iterates) == len(expected) and all(_close(a, b, 1e-12) for a, b in zip(iterates, expected)):
        return None
    return torch.tensor(iterates, dtype=torch.float64)
