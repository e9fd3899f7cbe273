"""A one-function course for exercising the grading pipeline quickly, and submission builders."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

MINI = "00_mini"

SETUP = "import math\nimport torch\nimport secondorder as so\ntorch.set_default_dtype(torch.float64)"
SOLUTION = '''def sr1_update(B, s, y, r=1e-8):
    """Symmetric rank-one update with the skip rule."""
    ### BEGIN SOLUTION
    v = y - B @ s
    vs = v @ s
    if abs(vs) <= r * torch.linalg.vector_norm(s) * torch.linalg.vector_norm(v):
        return B.clone()
    return B + torch.outer(v, v) / vs
    ### END SOLUTION'''
TEST = '''from secondorder.exercises import check
check(sr1_update)
### BEGIN HIDDEN TESTS
check(sr1_update, hidden=True)
### END HIDDEN TESTS'''
DEMO = '''update = so.exercises.use_student(sr1_update)
B = update(torch.eye(2), torch.tensor([1.0, 0.0]), torch.tensor([2.0, 1.0]))
print(B)'''


def _meta(grade_id, *, grade=False, solution=False, locked=False, points=None):
    meta = {"grade": grade, "solution": solution, "locked": locked, "grade_id": grade_id,
            "schema_version": 3, "task": False}
    if points is not None:
        meta["points"] = points
    return {"nbgrader": meta}


def mini_source() -> nbformat.NotebookNode:
    nb = new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells = [
        new_markdown_cell("# Mini section\nWrite `sr1_update`."),
        new_code_cell(SETUP, metadata=_meta("setup", locked=True)),
        new_code_cell(SOLUTION, metadata=_meta("sr1_update", solution=True)),
        new_code_cell(TEST, metadata=_meta("test_sr1_update", grade=True, locked=True, points=6)),
        new_code_cell(DEMO, metadata=_meta("demo", locked=True)),
        new_markdown_cell("Why must the SR1 update sometimes be skipped?\n\nBecause vᵀs can vanish.",
                          metadata=_meta("q_skip", grade=True, solution=True, points=2)),
    ]
    return nb


def make_course(root: Path) -> Path:
    """A course folder holding the mini section; returns it."""
    course = root / "course"
    (course / MINI).mkdir(parents=True, exist_ok=True)
    nbformat.write(mini_source(), course / MINI / f"{MINI}.ipynb")
    return course


def release_of(course: Path, tmp: Path) -> nbformat.NotebookNode:
    """nbgrader's student version of the mini section."""
    import autograder.build as build
    from autograder.build import generate_release

    saved = build.COURSE
    build.COURSE = course
    try:
        out = generate_release(MINI, tmp)
    finally:
        build.COURSE = saved
    return nbformat.read(out / f"{MINI}.ipynb", as_version=4)


def cell_by_id(nb, grade_id):
    return next(c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade_id") == grade_id)


def with_answer(release: nbformat.NotebookNode, grade_id: str, source: str) -> nbformat.NotebookNode:
    nb = nbformat.from_dict(json.loads(json.dumps(release)))
    cell_by_id(nb, grade_id).source = source
    return nb


def solution_answer() -> str:
    return SOLUTION.replace("    ### BEGIN SOLUTION\n", "").replace("    ### END SOLUTION", "")


def write_submission(root: Path, student: str, nb, assignment: str = MINI, raw: bytes | None = None) -> Path:
    folder = root / student / assignment
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    path = folder / f"{assignment}.ipynb"
    if raw is not None:
        path.write_bytes(raw)
    else:
        nbformat.write(nb, path)
    return path


def rows_of(rows, student):
    """``{grade_id: row}`` of one student's rows of ``grades.csv``."""
    return {r["grade_id"]: r for r in rows if r["student_id"] == student}
