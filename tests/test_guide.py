"""The instructor guide's worked example of a new function exercise works as printed.

The exercise module and the mutant of `autograder/README.md` section 9 are taken from the guide's code blocks
and run: the reference passes every case on several draws of the hidden cases, the printed mutant and two more
wrong answers lose points, each with the misconception the guide's `diagnose` names.
"""

import re
import types

import pytest
import torch

from autograder.course import REPO

GUIDE = REPO / "autograder" / "README.md"


def _blocks() -> list[str]:
    """The guide's Python code blocks of section 9, dedented."""
    text = GUIDE.read_text()
    section = text[text.index("## 9. A new function exercise"):text.index("## 10.")]
    blocks = re.findall(r"^( *)```python\n(.*?)^\1```", section, re.M | re.S)
    return ["\n".join(line[len(indent):] for line in body.splitlines()) for indent, body in blocks]


def _module(source: str, name: str) -> types.ModuleType:
    module = types.ModuleType(name)
    exec(compile(source, f"<guide: {name}>", "exec"), module.__dict__)
    return module


@pytest.fixture(scope="module")
def example():
    exercise_src, test_cell, mutant_src = _blocks()
    assert "check(newton_direction)" in test_cell and "hidden=True" in test_cell
    return _module(exercise_src, "newton_direction"), _module(mutant_src, "wrong_sign")


def test_the_guides_reference_passes_on_every_draw(example):
    exercises, _ = example
    ex = exercises.NewtonDirection()
    assert any(c.hidden for c in ex.catalogue()) and any(not c.hidden for c in ex.catalogue())
    for draw in (None, 1, 2, 3):
        verdict = ex.run_in_process(exercises.newton_direction, hidden=True, draw=draw)
        assert verdict.fraction == 1.0, verdict.summary()


def test_the_guides_mutants_lose_points_with_their_misconception(example):
    exercises, wrong_sign = example
    ex = exercises.NewtonDirection()
    wrong = [(wrong_sign.newton_direction, wrong_sign.EXPECT),
             (lambda g, H: -H @ g, "multiplies g instead of solving"),
             (lambda g, H: -g, "steepest-descent")]
    for fn, expect in wrong:
        verdict = ex.run_in_process(fn, hidden=True, draw=5)
        assert verdict.fraction < 0.5 and expect in verdict.summary(), verdict.summary()
    # The hidden cases move with the draw, so a table of one draw's answers does not carry over.
    first, second = (ex.cases(d)[-1].make_args() for d in (1, 2))
    assert not torch.equal(first[0], second[0])
