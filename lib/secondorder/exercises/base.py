"""The pieces every graded exercise is made of: cases, an exercise, a verdict.

A graded exercise is a function the student writes with the same name and signature as a reference
in ``secondorder``. It is checked on a catalogue of seeded cases: each case builds its arguments
deterministically, the student's output is compared with the reference's by the property checks in
:mod:`secondorder.testing`, and when they disagree the exercise tries to *name the misconception*
("s and y look swapped") by comparing the output with what typical wrong answers would return.

The same catalogue serves the notebook's visible checks, the hidden checks and the autograder, which
runs the student's function in a separate process and compares its outputs here, in a process the
submission never touched.
"""

from __future__ import annotations

import inspect
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

import torch
from torch import Tensor

from ..cost_model import counted_flops
from .generators import drawn

LIKELY_CAUSE = " — likely cause: "
_NUMBER = re.compile(r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?")


@dataclass(frozen=True)
class Case:
    """One seeded test case of an exercise.

    Attributes
    ----------
    id : str
        Unique within the exercise, e.g. ``"secant/n=5/float64"``.
    group : str
        The property it tests, shown to the student ("secant equation", "skip rule", ...).
    make_args : callable
        ``make_args() -> tuple`` of positional arguments, identical on every call.
    hidden : bool
        Hidden cases run only in the hidden tests and the autograder.
    timeout_s : float
        Wall-clock budget for one call of the student's function in the autograder.
    count_flops : bool
        Count the FLOPs of the matrix products the call runs (:func:`count_matmul_flops`), in the notebook's
        checks and in the autograder alike, for :meth:`Exercise.check_cost`.
    """

    id: str
    group: str
    make_args: Callable[[], tuple]
    hidden: bool = False
    timeout_s: float = 10.0
    count_flops: bool = False


def count_matmul_flops(fn: Callable, *args):
    """``(fn(*args), FLOPs)``: the result and :func:`~secondorder.cost_model.counted_flops` of the call.

    PyTorch's count of matrix products is the same on every device: a cost check on it is a property of the
    code, not of the machine's speed.
    """
    out = []
    flops = counted_flops(lambda: out.append(fn(*args)))
    return out[0], flops


@dataclass
class CaseResult:
    """Outcome of one case: passed or not, and the message that explains a failure."""

    case: Case
    passed: bool
    message: str = ""
    status: str = "ok"      # ok | failed | error | timeout | delegated | missing


@dataclass
class Verdict:
    """Outcome of all cases of one exercise for one submission."""

    name: str
    results: list[CaseResult] = field(default_factory=list)

    @property
    def fraction(self) -> float:
        """Share of cases passed, in [0, 1]."""
        return sum(r.passed for r in self.results) / max(len(self.results), 1)

    @property
    def status(self) -> str:
        """``ok`` when every case passed, otherwise the most telling failure status."""
        order = ("delegated", "missing", "timeout", "error", "failed")
        statuses = {r.status for r in self.results if not r.passed}
        return next((s for s in order if s in statuses), "ok")

    def groups(self) -> list[dict]:
        """The failures merged by what they say: one entry per message (numbers aside) and likely cause.

        Each entry has ``properties`` (the case groups, in order), ``cases`` (how many failed that
        way), ``what`` (the first such message, without its cause) and ``cause`` (or "").
        """
        merged: dict[tuple[str, str], dict] = {}
        for r in self.results:
            if r.passed:
                continue
            what, _, cause = r.message.partition(LIKELY_CAUSE)
            entry = merged.setdefault((_NUMBER.sub("#", what), cause),
                                      {"properties": [], "cases": 0, "what": what, "cause": cause})
            entry["cases"] += 1
            if r.case.group not in entry["properties"]:
                entry["properties"].append(r.case.group)
        return list(merged.values())

    def summary(self, limit: int = 3) -> str:
        """A short explanation: what passed, and each different failure once, with its likely cause.

        Failures that say the same thing (up to the numbers in them) are one line with their case
        count; a likely cause shared by every failure is said once, at the end.
        """
        failed = [r for r in self.results if not r.passed]
        head = f"{self.name}: {len(self.results) - len(failed)}/{len(self.results)} checks passed"
        if not failed:
            return head
        if all(r.status == "missing" for r in failed):
            return f"{head}\n- {failed[0].message}"
        groups = self.groups()
        causes = {g["cause"] for g in groups}
        shared = next(iter(causes)) if len(causes) == 1 and len(groups) > 1 else ""
        lines = [head]
        for g in groups[:limit]:
            count = f" ({g['cases']} cases)" if g["cases"] > 1 else ""
            line = f"- [{', '.join(g['properties'])}]{count} {g['what']}"
            if g["cause"] and not shared:
                line += LIKELY_CAUSE + g["cause"]
            lines.append(line)
        if len(groups) > limit:
            rest = sum(g["cases"] for g in groups[limit:])
            lines.append(f"- … and {rest} more failing case{'s' if rest > 1 else ''} of "
                         f"{len(groups) - limit} other kind{'s' if len(groups) - limit > 1 else ''}")
        if shared:
            lines.append(f"likely cause (all of them): {shared}")
        return "\n".join(lines)


def _describe(value) -> str:
    """A short description of a value's type and shape, for messages."""
    if isinstance(value, Tensor):
        return f"a {value.dtype} tensor of shape {tuple(value.shape)}"
    if isinstance(value, dict) and "__unsupported_type__" in value:
        return f"an object of type {value['__unsupported_type__']}"
    if isinstance(value, list | tuple):
        return f"a {type(value).__name__} of length {len(value)}"
    return f"a value of type {type(value).__name__}"


def _under_draw(draw: int, make: Callable[[], tuple]) -> Callable[[], tuple]:
    def make_drawn() -> tuple:
        with drawn(draw):
            return make()
    return make_drawn


def build_callable(source: str, bound: dict | None = None) -> Callable:
    """Evaluate ``source`` (a ``lambda``) with ``math``, ``torch`` and the ``bound`` tensors as its only names.

    This is how the autograder's process rebuilds a test function from plain data; the sources are
    the exercises' own constants, never a submission's code.
    """
    return eval(source, {"math": math, "torch": torch, "__builtins__": {}, **(bound or {})})


class SourceFunction:
    """A test function given by its source and bound tensors, counting its calls.

    Exercises whose argument is a function (``hvp(f, x, v)``, ``power_iteration(matvec, v0)``) pass
    one of these: in process it is called directly; for the autograder :meth:`encode` turns it into
    plain data, ``{"__callable__": source, "bound": {...}}``, that the sandboxed process rebuilds with
    :func:`build_callable` and counts there. The counts come back as ``calls`` for
    :meth:`Exercise.check_calls`.

    Parameters
    ----------
    source : str
        A ``lambda`` using only ``math``, ``torch`` and the names in ``bound``, e.g.
        ``"lambda v: A @ v"``.
    bound : dict, optional
        Tensors the lambda refers to by name.
    label : str, optional
        How the function is shown in messages (defaults to the source).
    """

    def __init__(self, source: str, bound: dict | None = None, label: str | None = None):
        self.source, self.bound, self.label = source, dict(bound or {}), label or source
        self.fn = build_callable(source, self.bound)
        self.calls = 0

    def __call__(self, *args, **kwargs):
        self.calls += 1
        return self.fn(*args, **kwargs)

    def fresh(self) -> SourceFunction:
        """The same function with its own counter at zero."""
        return SourceFunction(self.source, self.bound, self.label)

    def encode(self) -> dict:
        """Plain data for the autograder's process."""
        return {"__callable__": self.source, "bound": dict(self.bound)}

    def __repr__(self) -> str:
        return self.label


def source_functions(args) -> list[SourceFunction]:
    """The :class:`SourceFunction` objects in ``args``, in the order the autograder's process counts them."""
    found = []

    def walk(a):
        if isinstance(a, SourceFunction):
            found.append(a)
        elif isinstance(a, list | tuple):
            for x in a:
                walk(x)
    walk(args)
    return found


def clone_args(args: Sequence) -> tuple:
    """Deep copy of an argument tuple (tensors cloned, lists copied) so a call cannot alter the original."""
    def copy(a):
        if isinstance(a, Tensor):
            return a.clone()
        if isinstance(a, SourceFunction):
            return a.fresh()
        if isinstance(a, list | tuple):
            return type(a)(copy(x) for x in a)
        return a
    return tuple(copy(a) for a in args)


def args_equal(a, b) -> bool:
    """Exact equality of two argument structures (NaNs compare equal)."""
    if isinstance(a, Tensor) and isinstance(b, Tensor):
        return a.shape == b.shape and a.dtype == b.dtype and torch.equal(
            torch.nan_to_num(a, nan=1.2345e-7), torch.nan_to_num(b, nan=1.2345e-7))
    if isinstance(a, list | tuple) and isinstance(b, list | tuple):
        return len(a) == len(b) and all(args_equal(x, y) for x, y in zip(a, b))
    return type(a) is type(b) and a == b


class Exercise:
    """A graded function: its reference, its cases, and how to compare and diagnose.

    Subclasses set :attr:`name` and :attr:`reference` and implement :meth:`cases` and
    :meth:`compare`; :meth:`diagnose` is optional.
    """

    name: str = ""
    reference: Callable = None
    arg_names: tuple[str, ...] = ()
    #: True when the statement asks for a result detached from the autograd graph: a tensor that still
    #: requires grad then fails. Otherwise such a result is detached before it is compared.
    returns_detached: bool = False

    def catalogue(self) -> list[Case]:
        """The cases as written, visible first: their inputs when no draw is in force."""
        raise NotImplementedError

    def cases(self, draw: int | None = None) -> list[Case]:
        """The catalogue, with the hidden cases' inputs drawn under ``draw`` (None: as written).

        Visible cases never change, so a student sees the same checks as the notebook. Each hidden case
        builds its inputs inside :func:`~secondorder.exercises.generators.drawn`, so its family (size,
        conditioning, the property it pins down) stays and its numbers come from the draw.
        """
        cases = self.catalogue()
        if draw is None:
            return cases
        return [replace(c, make_args=_under_draw(draw, c.make_args)) if c.hidden else c for c in cases]

    def compare(self, case: Case, args: tuple, out, expected) -> None:
        """Raise AssertionError with a teaching message when ``out`` is wrong for ``args``."""
        raise NotImplementedError

    def check_calls(self, case: Case, args: tuple, calls: list[int] | None) -> None:
        """Raise AssertionError when the function arguments were called too often (optional)."""

    def check_cost(self, case: Case, args: tuple, flops: int) -> None:
        """Raise AssertionError when the call's matrix products cost too much (cases with ``count_flops``)."""

    def diagnose(self, case: Case, args: tuple, out) -> str | None:
        """Name the likely misconception behind a wrong ``out``, or return None."""
        return None

    def encode_args(self, args: tuple) -> tuple:
        """``args`` as plain data for the autograder's process: each :class:`SourceFunction` encoded."""
        def enc(a):
            if isinstance(a, SourceFunction):
                return a.encode()
            if isinstance(a, list | tuple):
                return type(a)(enc(x) for x in a)
            return a
        return tuple(enc(a) for a in args)

    # -- shared machinery ------------------------------------------------------------------

    def signature(self) -> inspect.Signature:
        """The signature a student's function must have (the reference's)."""
        return inspect.signature(self.reference)

    def expected(self, args: tuple):
        """The reference output for ``args`` (the reference never modifies its inputs)."""
        return type(self).reference(*args)

    def judge(self, case: Case, args: tuple, out, args_after: tuple | None = None,
              error: str | None = None, calls: list[int] | None = None, flops: int | None = None) -> CaseResult:
        """Judge one call: ``out`` returned (or ``error`` raised) with ``args``; ``args_after`` as left.

        ``calls`` counts the calls of each function argument, ``flops`` the FLOPs of the call's matrix
        products (for cases with ``count_flops``), for exercises that check cost.
        """
        if error is not None:
            if "DelegationError" in error:
                return CaseResult(case, False, error.split(":", 1)[-1].strip(), "delegated")
            if "NotImplementedError" in error:
                return CaseResult(case, False, f"{self.name} is not written yet (NotImplementedError)",
                                  "missing")
            return CaseResult(case, False, f"raised {error}", "error")
        if args_after is not None:
            for name, before, after in zip(self.arg_names, args, args_after):
                if callable(before):                          # functions are passed, not data
                    continue
                if not args_equal(before, after):
                    return CaseResult(case, False, f"the input {name} was modified in place; work on a "
                                      f"copy (e.g. {name}.clone()) or build a new tensor", "failed")
        if isinstance(out, torch.Tensor) and out.requires_grad:
            if self.returns_detached:
                return CaseResult(case, False, "the result still requires grad: it is attached to the autograd "
                                  "graph, which stays in memory as long as the result lives; return it detached "
                                  "(… .detach(), or no create_graph=True in the last backward pass)", "failed")
            out = out.detach()
        expected = self.expected(args)          # the reference's failure would be the grader's, not the student's
        try:
            try:
                self.compare(case, args, out, expected)
                self.check_calls(case, args, calls)
                if flops is not None:
                    self.check_cost(case, args, flops)
            except AssertionError:
                raise
            except Exception as exc:  # an answer of a shape or type the checks did not foresee is still the answer's
                raise AssertionError(f"the result ({_describe(out)}) cannot be checked against the expected "
                                     f"{_describe(expected)}: comparing them raised {type(exc).__name__}: "
                                     f"{str(exc)[:200]}") from None
        except AssertionError as exc:
            hint = None
            try:
                hint = self.diagnose(case, args, out)
            except Exception:  # a diagnosis is a bonus; never let it hide the failure
                hint = None
            message = str(exc) + (f"{LIKELY_CAUSE}{hint}" if hint else "")
            return CaseResult(case, False, message, "failed")
        return CaseResult(case, True)

    def run_in_process(self, fn: Callable, hidden: bool = False, draw: int | None = None) -> Verdict:
        """Call ``fn`` on the cases here (visible ones, plus hidden ones drawn under ``draw`` when asked)."""
        verdict = Verdict(self.name)
        for case in self.cases(draw):
            if case.hidden and not hidden:
                continue
            args = case.make_args()
            work = clone_args(args)
            counted = source_functions(work)
            flops = None
            try:
                if case.count_flops:
                    out, flops = count_matmul_flops(fn, *work)
                else:
                    out = fn(*work)
            except Exception as exc:  # the student's error is the result being judged
                verdict.results.append(self.judge(case, args, None, error=f"{type(exc).__name__}: {exc}"))
                continue
            verdict.results.append(self.judge(case, args, out, args_after=work,
                                              calls=[c.calls for c in counted] if counted else None, flops=flops))
        return verdict
