"""Self-test of a section's grading: solution, blank release, and every catalogued mutant.

``python -m autograder selftest [SECTION ...]`` grades, for each section, the worked solution (must
score full marks on every autograded cell), the blank release (must score 0 without crashing the
pipeline) and one submission per mutant in ``autograder/mutants/<function>/`` (each must lose
points), then prints the mutation score.
"""

from __future__ import annotations

import ast
import json
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

import nbformat

from .build import generate_release
from .course import COURSE, assignments_in_course
from .grade import Grader

MUTANTS = Path(__file__).resolve().parent / "mutants"
SOLUTION_REGION = re.compile(r"^[ \t]*### (BEGIN|END) SOLUTION[ \t]*\n", re.M)


@dataclass
class Mutant:
    """A wrong answer for one graded function."""

    function: str
    name: str
    source: str
    misconception: str
    expect: str | None


def mutants_for(function: str) -> list[Mutant]:
    """The catalogue of wrong answers for ``function``."""
    found = []
    for path in sorted((MUTANTS / function).glob("*.py")):
        text = path.read_text()
        tree = ast.parse(text)
        expect = next((n.value.value for n in tree.body if isinstance(n, ast.Assign)
                       and getattr(n.targets[0], "id", "") == "EXPECT"), None)
        found.append(Mutant(function, path.stem, text, (ast.get_docstring(tree) or "").splitlines()[0], expect))
    return found


def _meta(cell) -> dict:
    return cell.metadata.get("nbgrader", {})


def solution_answers(aid: str, course: Path = COURSE) -> dict[str, str]:
    """``{grade_id: answer}`` of the instructor notebook, with the solution markers removed."""
    nb = nbformat.read(course / aid / f"{aid}.ipynb", as_version=4)
    return {_meta(c)["grade_id"]: SOLUTION_REGION.sub("", c.source) for c in nb.cells if _meta(c).get("solution")}


def filled(release: nbformat.NotebookNode, answers: dict[str, str]) -> nbformat.NotebookNode:
    """The release with the given answers typed into their cells."""
    nb = nbformat.from_dict(json.loads(json.dumps(release)))
    for cell in nb.cells:
        gid = _meta(cell).get("grade_id")
        if gid in answers:
            cell.source = answers[gid]
    return nb


def graded_functions(aid: str, course: Path = COURSE) -> list[str]:
    nb = nbformat.read(course / aid / f"{aid}.ipynb", as_version=4)
    return [_meta(c)["grade_id"] for c in nb.cells
            if c.cell_type == "code" and _meta(c).get("solution") and not _meta(c).get("grade")]


def write(root: Path, student: str, aid: str, nb) -> None:
    folder = root / student / aid
    folder.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, folder / f"{aid}.ipynb")


def run(sections: list[str] | None = None, out: Path | None = None, execute: bool = True) -> dict:
    """Grade solution, blank and mutants of each section; return the findings per section."""
    report = {}
    for aid in sorted(sections or assignments_in_course()):
        with tempfile.TemporaryDirectory() as tmp:
            tmp = Path(tmp)
            release = nbformat.read(generate_release(aid, tmp / "release") / f"{aid}.ipynb", as_version=4)
            answers = solution_answers(aid)
            subs, mutant_subs = tmp / "subs", tmp / "mutants"
            write(subs, "solution", aid, filled(release, answers))
            write(subs, "blank", aid, release)
            mutants = [m for f in graded_functions(aid) for m in mutants_for(f)]
            for m in mutants:
                write(mutant_subs, f"mutant-{m.function}-{m.name}".replace("_", "-"), aid,
                      filled(release, {**answers, m.function: m.source}))
            base = Path(out) / aid if out else tmp / "out"
            rows = Grader(base / "main", course=COURSE, execute=execute, force=True).grade(subs)
            mutant_rows = Grader(base / "mutants", course=COURSE, execute=False, force=True).grade(mutant_subs) \
                if mutants else []
        report[aid] = _summarize(rows, mutant_rows, mutants)
    return report


def _summarize(rows, mutant_rows, mutants) -> dict:
    auto = [r for r in rows if r["grade_id"].startswith("test_")]
    solution = [r for r in auto if r["student_id"] == "solution"]
    blank = [r for r in rows if r["student_id"] == "blank"]
    killed, survivors, missing_hint = 0, [], []
    for m in mutants:
        row = next(r for r in mutant_rows if r["student_id"] == f"mutant-{m.function}-{m.name}".replace("_", "-")
                   and r["grade_id"] == f"test_{m.function}")
        if float(row["score"]) < float(row["max_score"]):
            killed += 1
        else:
            survivors.append(f"{m.function}/{m.name}")
        if m.expect and m.expect not in row["message"]:
            missing_hint.append(f"{m.function}/{m.name}: expected {m.expect!r} in {row['message'][:200]!r}")
    return {
        "solution_full": all(r["score"] == r["max_score"] and r["status"] == "ok" for r in solution),
        "solution_rows": solution,
        "blank_zero": all(r["score"] in ("0", "") for r in blank) and all(
            r["score"] == "0" for r in blank if r["grade_id"].startswith("test_")),
        "blank_rows": blank,
        "mutants": len(mutants), "killed": killed, "survivors": survivors, "missing_hints": missing_hint,
    }


def main(sections: list[str] | None) -> int:
    report = run(sections)
    ok = True
    for aid, r in report.items():
        score = r["killed"] / r["mutants"] if r["mutants"] else 1.0
        print(f"{aid}: solution full marks: {r['solution_full']}; blank scores 0: {r['blank_zero']}; "
              f"mutation score {r['killed']}/{r['mutants']} = {score:.0%}")
        for s in r["survivors"]:
            print(f"  surviving mutant: {s}")
        for s in r["missing_hints"]:
            print(f"  explanation missing: {s}")
        ok = ok and r["solution_full"] and r["blank_zero"] and not r["survivors"]
    return 0 if ok else 1
