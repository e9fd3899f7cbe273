"""Graded exercises: the checks behind the course notebooks and the autograder.

In a notebook::

    from secondorder.exercises import check, use_student

    check(sr1_update)                    # visible checks: say which property failed and by how much
    update = use_student(sr1_update)     # the demo runs on your function once it is written

Every exercise lives in its own module with its seeded cases and the misconceptions it can name.
"""

from __future__ import annotations

import secrets
import textwrap
from collections.abc import Callable

from .base import Case, CaseResult, Exercise, Verdict
from .bfgs_inverse_update import BFGSInverseUpdate
from .cholesky_with_jitter import CholeskyWithJitter
from .hvp import HVP
from .kfac_factors import KFACFactors
from .kfac_precondition import KFACPrecondition
from .matrix_inverse_root import MatrixInverseRoot
from .newton_schulz import NewtonSchulz
from .powell_damped_y import PowellDampedY
from .power_iteration import PowerIteration
from .secant_method import SecantMethod
from .sr1_update import SR1Update
from .two_loop_recursion import TwoLoopRecursion
from .wolfe_conditions import WolfeConditions

EXERCISES: dict[str, Exercise] = {ex.name: ex for ex in (
    SR1Update(),                # 01
    SecantMethod(),             # 01
    BFGSInverseUpdate(),        # 02
    WolfeConditions(),          # 02
    TwoLoopRecursion(),         # 03
    PowellDampedY(),            # 04
    CholeskyWithJitter(),       # 04
    HVP(),                      # 05
    PowerIteration(),           # 05
    KFACFactors(),              # 06
    KFACPrecondition(),         # 06
    NewtonSchulz(),             # 07
    MatrixInverseRoot(),        # 07
)}


def get_exercise(name: str) -> Exercise:
    """The exercise graded under ``name`` (the function's name, which is also the nbgrader grade_id)."""
    try:
        return EXERCISES[name]
    except KeyError:
        raise ValueError(f"no exercise named {name!r}; known: {sorted(EXERCISES)}") from None


class CheckFailed(AssertionError):
    """Some checks of an exercise failed. The message is the verdict's summary.

    In IPython (a notebook, nbgrader's Validate) the error shows as the diagnosis alone, wrapped to
    the width of a notebook cell, without a traceback through this library: IPython calls
    :meth:`_render_traceback_` for exceptions that define it.
    """

    WIDTH = 92

    def __init__(self, verdict: Verdict, hidden: bool = False, draw: int | None = None):
        super().__init__(verdict.summary())
        self.verdict, self.hidden, self.draw = verdict, hidden, draw

    def diagnosis(self) -> list[str]:
        """The lines a student reads: what failed, how often, by how much, the likely cause."""
        v = self.verdict
        failed = [r for r in v.results if not r.passed]
        which = "hidden and visible" if self.hidden else "visible"
        lines = [f"✗ {v.name}: {len(v.results) - len(failed)} of {len(v.results)} {which} checks passed"]
        if failed and all(r.status == "missing" for r in failed):
            lines.append(f"  {failed[0].message}: write it in the answer cell above (replace the "
                         "`raise NotImplementedError()` line), run that cell, then run this one again.")
        else:
            lines += ["  " + line for line in str(self).splitlines()[1:]]
            if self.draw is not None and any(r.case.hidden for r in failed):
                lines.append(f"  (hidden cases drawn afresh; check({v.name}, hidden=True, draw={self.draw}) "
                             "repeats this draw)")
        wrapped = []
        for line in lines:
            prefix = len(line) - len(line.lstrip(" -"))
            indent = " " * (prefix if line.lstrip().startswith("- ") else prefix + 2)   # hang under the text
            wrapped += textwrap.wrap(line, self.WIDTH, subsequent_indent=indent, break_on_hyphens=False) or [""]
        return wrapped

    def _render_traceback_(self) -> list[str]:
        lines = self.diagnosis()
        return [f"\x1b[1;31m{lines[0]}\x1b[0m", *lines[1:]]


def check(fn: Callable, name: str | None = None, hidden: bool = False, draw: int | None = None) -> None:
    """Run the checks for ``fn``; print one line if all pass, else raise :class:`CheckFailed`.

    ``name`` defaults to ``fn.__name__``. With ``hidden=True`` the hidden case families run too, on
    inputs drawn afresh at every call (``draw``, printed on failure, repeats one draw). The autograder
    draws them from the instructor's key instead, so what runs here is practice on the same
    families, never the graded inputs. Returns nothing, so a test cell that ends with ``check(fn)``
    shows only the message (nbgrader would try to read a returned value as a score). The notebooks tag
    their check cells ``raises-exception``, so a failing check does not stop Run All, while Validate
    and the autograder still see it fail.
    """
    exercise = get_exercise(name or getattr(fn, "__name__", ""))
    if hidden and draw is None:
        draw = secrets.randbits(62)
    verdict = exercise.run_in_process(fn, hidden=hidden, draw=draw if hidden else None)
    if verdict.fraction < 1:
        raise CheckFailed(verdict, hidden=hidden, draw=draw if hidden else None)
    print(f"✓ {exercise.name}: all {len(verdict.results)} {'hidden and visible' if hidden else 'visible'} "
          "checks passed")


def use_student(fn: Callable, name: str | None = None) -> Callable:
    """Return the student's ``fn`` once it is written, else the reference, saying which is used.

    A written but wrong function is returned all the same, with a warning: the demo then shows what
    the bug does.
    """
    exercise = get_exercise(name or getattr(fn, "__name__", ""))
    verdict = exercise.run_in_process(fn)
    if verdict.status == "missing":
        print(f"Using the reference secondorder {exercise.name} until yours is written.")
        return type(exercise).reference
    if verdict.fraction < 1:
        print(f"⚠ Using YOUR {exercise.name}, which fails some checks — watch what it does:\n"
              + verdict.summary())
    else:
        print(f"Using your {exercise.name}.")
    return fn


__all__ = ["EXERCISES", "Case", "CaseResult", "CheckFailed", "Exercise", "Verdict", "check", "get_exercise",
           "use_student"]
