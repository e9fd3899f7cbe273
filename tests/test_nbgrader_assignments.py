"""Any nbgrader assignment grades as stock nbgrader grades it.

The oracle is nbgrader itself: its documentation's example course (``ps1``: ordinary assert-based test cells,
written answers, a coding free-response cell and a task; two students' submissions), shipped inside the
installed nbgrader package, graded once by stock ``nbgrader autograde`` and once by ``python -m autograder
grade``. Every cell must get the same score in both gradebooks.
"""

from __future__ import annotations

import csv
import json
import re
import shutil
import sqlite3
import warnings
import zipfile
from pathlib import Path

import nbformat
import nbgrader
import pytest
from nbgrader.api import Gradebook
from nbgrader.apps import NbGraderAPI
from nbgrader.coursedir import CourseDirectory

from autograder.course import nbgrader_config
from autograder.grade import Grader

pytestmark = pytest.mark.slow

EXAMPLE = Path(nbgrader.__file__).parent / "docs" / "source" / "user_guide"
needs_example = pytest.mark.skipif(not (EXAMPLE / "source" / "ps1").is_dir(),
                                   reason="this nbgrader installation ships no documentation example course")


def _scores(db: Path) -> dict:
    """(student, notebook, grade_id) -> (score, needs a manual grade) in the gradebook ``db``."""
    with Gradebook(f"sqlite:///{db}") as gb:
        return {(s.student.id, nb.name, g.name): (g.score, g.needs_manual_grade)
                for s in gb.assignment_submissions("ps1") for nb in s.notebooks for g in nb.grades}


def _stock(tmp: Path) -> dict:
    """The example graded by plain nbgrader: generate_assignment, then autograde each student."""
    root = tmp / "stock"
    shutil.copytree(EXAMPLE / "source" / "ps1", root / "source" / "ps1")
    shutil.copytree(EXAMPLE / "submitted", root / "submitted")
    config = nbgrader_config(root)
    api = NbGraderAPI(coursedir=CourseDirectory(config=config), config=config)
    assert api.generate_assignment("ps1", force=True, create=True)["success"]
    for student in ("bitdiddle", "hacker"):
        result = api.autograde("ps1", student, force=True, create=True)
        assert result["success"], result.get("log")
    return _scores(root / "gradebook.db")


FIGURE = "import matplotlib.pyplot as plt\nplt.plot([1, 4, 9])\nplt.title('my own figure')\nplt.show()"


@pytest.fixture(scope="module")
def ps1(tmp_path_factory):
    """The example graded by stock nbgrader and by this grader; hacker's notebook also draws a figure."""
    tmp = tmp_path_factory.mktemp("ps1")
    course = tmp / "course"
    shutil.copytree(EXAMPLE / "source" / "ps1", course / "ps1")
    stock = _stock(tmp)
    submitted = tmp / "submitted"
    shutil.copytree(EXAMPLE / "submitted", submitted)
    path = submitted / "hacker" / "ps1" / "problem1.ipynb"
    nb = nbformat.read(path, as_version=4)
    cell = nbformat.v4.new_code_cell(FIGURE)
    if nb.nbformat_minor < 5:                     # this notebook's format has no cell ids
        del cell["id"]
    nb.cells.append(cell)
    nbformat.write(nb, path)
    out = tmp / "grading"
    with warnings.catch_warnings(record=True) as caught:
        rows = Grader(out, course=course, jobs=2).grade(submitted)
    return {"course": course, "submitted": submitted, "out": out, "rows": rows, "stock": stock,
            "warnings": [str(w.message) for w in caught]}


@needs_example
def test_an_nbgrader_assignment_gets_stock_nbgraders_scores(ps1):
    stock, out, rows = ps1["stock"], ps1["out"], ps1["rows"]
    ours = _scores(out / "gradebook.db")

    assert set(ours) == set(stock) and len(stock) == 2 * 9
    assert ours == stock
    # Some cells pass and some fail, so the comparison decides something.
    autograded = [v for (_, nb, g), v in stock.items() if not v[1] and nb == "problem1"]
    assert {s for s, _ in autograded} >= {0.0, 1.0}

    by_cell = {(r["grading_id"], r["grade_id"]): r for r in rows}
    assert len(by_cell) == len(rows) == len(stock)        # one row per cell of both gradebooks, tasks included
    for (student, _, gid), (score, manual) in stock.items():
        row = by_cell[(student, gid)]
        if manual:
            assert (row["score"], row["status"]) == ("", "awaiting"), row
        else:
            assert float(row["score"]) == pytest.approx(score), row
            assert row["status"] in ("ok", "failed", "missing"), row
    # A failing assert says what failed; an unanswered stub is 0 and "missing", as nbgrader scores it.
    failed = [r for r in rows if r["status"] == "failed"]
    assert failed and all("points" in r["message"] and ": " in r["message"] for r in failed)
    assert any(r["status"] == "missing" and r["score"] == "0" for r in rows)

    # nbgrader's own export agrees with grades.csv, student by student.
    config = nbgrader_config(out)
    api = NbGraderAPI(coursedir=CourseDirectory(config=config), config=config)
    with api.gradebook as gb:
        totals = {s.student.id: s.score for s in gb.assignment_submissions("ps1")}
    with open(out / "grades.csv") as f:
        csv_rows = list(csv.DictReader(f))
    for student, total in totals.items():
        assert sum(float(r["score"] or 0) for r in csv_rows if r["grading_id"] == student) == pytest.approx(total)
    assert not [w for w in ps1["warnings"] if "not in session" in w]    # SQLAlchemy's noise is not shown


def _feedback(out: Path, student: str, notebook: str = "problem1") -> str:
    return (out / "feedback" / student / "ps1" / f"{notebook}.html").read_text()


@needs_example
def test_feedback_is_right_when_returned_and_refreshed_after_hand_grading(ps1):
    out, course, submitted = ps1["out"], ps1["course"], ps1["submitted"]
    page = _feedback(out, "bitdiddle")
    # Awaiting answers say so; the total counts what is graded so far; math is MathML, no script, no CDN.
    assert re.search(r"<code>sum_of_squares_equation</code></a>:\s*<span class=\"awaiting\">awaiting a hand grade",
                     page)
    assert "Score so far: <b>1.5 / 5</b>" in page
    assert "<math" in page and "<script" not in page and "cdnjs" not in page and "$\\sum" not in page
    # The student's own plt.show() figure is in their feedback (inline backend in the sandbox).
    hacker = _feedback(out, "hacker")
    assert hacker.count("data:image/png;base64") >= 1 + page.count("data:image/png;base64")

    # A hand grade and a comment in the gradebook (as the Formgrader saves them), then the same command again.
    with Gradebook(f"sqlite:///{out / 'gradebook.db'}") as gb:
        grade = gb.find_grade("sum_of_squares_equation", "problem1", "ps1", "bitdiddle")
        grade.manual_score = 1.0
        grade.needs_manual_grade = False
        gb.find_comment("sum_of_squares_equation", "problem1", "ps1", "bitdiddle").manual_comment = "Well put."
        gb.db.commit()
    grader = Grader(out, course=course, jobs=2)
    rows = grader.grade(submitted)
    assert grader.stats["refreshed"] == 1 and grader.stats["graded"] == 0 and grader.stats["recorded"] == 0
    page = _feedback(out, "bitdiddle")
    assert "Well put." in page and "Score so far: <b>2.5 / 6</b>" in page
    row = next(r for r in rows if (r["grading_id"], r["grade_id"]) == ("bitdiddle", "sum_of_squares_equation"))
    assert (row["score"], row["status"]) == ("1", "hand-graded") and "graded by hand" in row["message"]
    # Nothing changed for hacker: its feedback is not rewritten; a third run rewrites nothing.
    again = Grader(out, course=course, jobs=2)
    again.grade(submitted)
    assert again.stats["refreshed"] == 0
    assert sqlite3.connect(out / "gradebook.db").execute("select count(*) from submitted_assignment").fetchone() == (2,)


@needs_example
def test_a_canvas_zip_with_a_roster_grades_under_the_roster_ids(ps1, tmp_path):
    """Canvas' flat download (late mark, a resubmission, a renamed notebook) of the example, with a class list."""
    zpath = tmp_path / "submissions.zip"
    hacker, bitdiddle = (ps1["submitted"] / s / "ps1" for s in ("hacker", "bitdiddle"))
    with zipfile.ZipFile(zpath, "w") as z:
        z.write(hacker / "problem1.ipynb", "hackerben_1001_5001_problem1.ipynb")
        z.write(hacker / "problem2.ipynb", "hackerben_1001_5001_problem2.ipynb")
        z.writestr("bitdiddlealyssa_LATE_1002_5002_problem1.ipynb", "{not a notebook: replaced by -1")
        z.write(bitdiddle / "problem1.ipynb", "bitdiddlealyssa_LATE_1002_5002_problem1-1.ipynb")
        z.write(bitdiddle / "problem2.ipynb", "bitdiddlealyssa_1002_5002_my homework.ipynb")
    roster = tmp_path / "roster.csv"
    roster.write_text("id,name,email,canvas_id\nhacker,\"Hacker, Ben\",ben@example.org,1001\n"
                      "bitdiddle,Alyssa Bitdiddle,alyssa@example.org,1002\ncarol,Carol Reyes,carol@example.org,1003\n")
    out = tmp_path / "grading"
    rows = Grader(out, course=ps1["course"], jobs=2).grade(zpath, roster=roster)

    assert _scores(out / "gradebook.db") == ps1["stock"]          # same ids, same scores as nbgrader's own tree
    with Gradebook(f"sqlite:///{out / 'gradebook.db'}") as gb:
        names = {s.id: (s.first_name, s.last_name, s.email) for s in gb.students}
    assert names == {"hacker": ("Ben", "Hacker", "ben@example.org"),
                     "bitdiddle": ("Alyssa", "Bitdiddle", "alyssa@example.org"),
                     "carol": ("Carol", "Reyes", "carol@example.org")}
    carol = [r for r in rows if r["grading_id"] == "carol"]
    assert [(r["status"], r["score"]) for r in carol] == [("missing", "0")] and "no submission" in carol[0]["message"]
    record = json.loads((out / ".results" / "bitdiddle" / "ps1.json").read_text())
    assert any("late" in p for p in record["problems"]) and record["original"] == "bitdiddlealyssa"


@needs_example
def test_an_assignment_of_several_notebooks_builds_like_a_section(tmp_path, monkeypatch):
    """`python -m autograder build ps1`: release and executed solutions for each notebook; then up to date."""
    from autograder import build
    course = tmp_path / "course"
    shutil.copytree(EXAMPLE / "source" / "ps1", course / "ps1")
    for name, folder in (("COURSE", course), ("RELEASE", tmp_path / "assignments"),
                         ("SOLUTIONS", tmp_path / "solutions")):
        monkeypatch.setattr(build, name, folder)
    assert build.build(["ps1"]) == 0
    release = nbformat.read(tmp_path / "assignments" / "ps1" / "problem1.ipynb", as_version=4)
    answer = next(c for c in release.cells if c.metadata.get("nbgrader", {}).get("grade_id") == "squares")
    assert "raise NotImplementedError()" in answer.source and "BEGIN SOLUTION" not in answer.source
    for name in ("problem1", "problem2"):
        solved = nbformat.read(tmp_path / "solutions" / "ps1" / f"{name}.ipynb", as_version=4)
        assert all(c.get("execution_count") for c in solved.cells if c.cell_type == "code")
    assert (tmp_path / "solutions" / "ps1" / "jupyter.png").exists()
    assert build.build(["ps1"], check=True) == 0
    with pytest.raises(SystemExit, match="unknown sections"):
        build.build(["ps2"])
