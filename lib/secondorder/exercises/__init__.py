"""Graded exercises: the checks behind the course notebooks and the autograder.

In a notebook::

    from secondorder.exercises import check, use_student

    check(sr1_update)                    # visible checks: say which property failed and by how much
    update = use_student(sr1_update)     # the demo runs on your function once it is written

Every exercise lives in its own module with its seeded cases and the misconceptions it can name.
"""

from __future__ import annotations

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


def check(fn: Callable, name: str | None = None, hidden: bool = False) -> None:
    """Run the checks for ``fn`` and raise AssertionError with the explanation if any fails.

    ``name`` defaults to ``fn.__name__``. With ``hidden=True`` the hidden cases run too. Returns
    nothing, so a test cell that ends with ``check(fn)`` shows only the message (nbgrader would try
    to read a returned value as a score).
    """
    exercise = get_exercise(name or getattr(fn, "__name__", ""))
    verdict = exercise.run_in_process(fn, hidden=hidden)
    if verdict.fraction < 1:
        raise AssertionError(verdict.summary())
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


__all__ = ["EXERCISES", "Case", "CaseResult", "Exercise", "Verdict", "check", "get_exercise", "use_student"]
