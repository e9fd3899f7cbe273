"""The grading pipeline on a one-function course: honest, blank and hostile submissions."""

import csv
import hashlib
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from autograder_fixtures import MINI, make_course, release_of, solution_answer, with_answer, write_submission

from autograder.grade import STATUSES, Grader
from autograder.hostile import CORPUS
from autograder.sandbox import Sandbox
from autograder.submissions import SubmissionsError

REPO = Path(__file__).resolve().parents[1]
needs_bwrap = pytest.mark.skipif(not Sandbox(require_isolation=False).has_bwrap,
                                 reason="bubblewrap is not installed (CI installs it)")
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def mini(tmp_path_factory):
    root = tmp_path_factory.mktemp("mini")
    course = make_course(root)
    return root, course, release_of(course, root / "release")


def _rows(rows, student):
    return {r["grade_id"]: r for r in rows if r["student_id"] == student}


def _tree_digest(path: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(path.rglob("*")):
        if p.is_file() and ".git" not in p.parts and ".venv" not in p.parts and "__pycache__" not in p.parts \
                and ".pytest_cache" not in p.parts:
            h.update(str(p).encode())
            h.update(p.read_bytes())
    return h.hexdigest()


@needs_bwrap
def test_honest_blank_and_hostile_in_one_run(mini, tmp_path):
    root, course, release = mini
    answer = solution_answer()
    good = with_answer(release, "sr1_update", answer)
    subs = tmp_path / "subs"
    write_submission(subs, "honest", good)
    write_submission(subs, "blank", release)
    for h in CORPUS:
        made = h.make(good, "sr1_update", answer)
        write_submission(subs, h.name.replace("_", "-"), None if isinstance(made, bytes) else made,
                         raw=made if isinstance(made, bytes) else None)
    before = _tree_digest(REPO / "course"), (REPO / "README.md").read_bytes()
    rows = Grader(tmp_path / "out", course=course, jobs=2, cell_timeout_s=20, notebook_wall_s=90).grade(subs)
    assert {r["status"] for r in rows} <= set(STATUSES)

    honest = _rows(rows, "honest")
    assert honest["test_sr1_update"]["status"] == "ok" and honest["test_sr1_update"]["score"] == "6"
    blank = _rows(rows, "blank")
    assert blank["test_sr1_update"]["score"] == "0" and blank["test_sr1_update"]["status"] == "missing"
    assert blank["q_skip"]["status"] == "missing"
    failures = []
    for h in CORPUS:
        row = _rows(rows, h.name.replace("_", "-"))["test_sr1_update"]
        full = row["score"] == row["max_score"]
        if row["status"] != h.status or full != h.full_marks or not row["message"]:
            failures.append(f"{h.name}: got {row['status']} {row['score']}/{row['max_score']} "
                            f"({row['message'][:160]!r}), expected {h.status} full={h.full_marks}")
    assert not failures, "\n".join(failures)
    # Nothing outside the grading folder changed, and the gradebook still holds everyone's grades.
    assert (_tree_digest(REPO / "course"), (REPO / "README.md").read_bytes()) == before
    assert not (REPO / "course" / "pwned.txt").exists()
    from nbgrader.api import Gradebook
    with Gradebook(f"sqlite:///{tmp_path / 'out' / 'gradebook.db'}") as gb:
        assert gb.find_submission(MINI, "honest").score == 6.0
    # Feedback exists for the honest student and does not show the hidden tests' source.
    html = (tmp_path / "out" / "feedback" / "honest" / MINI / f"{MINI}.html").read_text()
    assert "sr1_update" in html and "hidden=True" not in html and "BEGIN HIDDEN" not in html


@needs_bwrap
def test_rerun_resumes_and_force_regrades(mini, tmp_path):
    root, course, release = mini
    subs = tmp_path / "subs"
    write_submission(subs, "alice", with_answer(release, "sr1_update", solution_answer()))
    out = tmp_path / "out"
    first = Grader(out, course=course, execute=False).grade(subs)
    stamp = (out / ".results" / "alice" / f"{MINI}.json").stat().st_mtime_ns
    again = Grader(out, course=course, execute=False).grade(subs)
    assert again == first
    assert (out / ".results" / "alice" / f"{MINI}.json").stat().st_mtime_ns == stamp
    Grader(out, course=course, execute=False, force=True).grade(subs)
    assert (out / ".results" / "alice" / f"{MINI}.json").stat().st_mtime_ns != stamp
    with open(out / "grades.csv") as f:
        assert [r["status"] for r in csv.DictReader(f)] == ["ok", "missing"]


@needs_bwrap
def test_lms_zip_and_unsafe_zip(mini, tmp_path):
    root, course, release = mini
    subs = tmp_path / "subs"
    write_submission(subs, "carol", with_answer(release, "sr1_update", solution_answer()))
    archive = tmp_path / "export.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for p in subs.rglob("*.ipynb"):
            zf.write(p, Path("export") / p.relative_to(subs))
    rows = Grader(tmp_path / "out", course=course, execute=False).grade(archive)
    assert _rows(rows, "carol")["test_sr1_update"]["status"] == "ok"
    evil = tmp_path / "evil.zip"
    with zipfile.ZipFile(evil, "w") as zf:
        zf.writestr("../../escape/00_mini/00_mini.ipynb", "{}")
    with pytest.raises(SubmissionsError, match="unsafe path"):
        Grader(tmp_path / "out2", course=course, execute=False).grade(evil)


def test_cli_exit_status(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "autograder", "grade", str(tmp_path / "nothing"),
                           "--out", str(tmp_path / "out")], cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 2 and "neither a folder nor a zip" in proc.stderr
    proc = subprocess.run([sys.executable, "-m", "autograder", "grade", str(tmp_path), "--assignment", "99_x"],
                          cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 2 and "unknown assignment" in proc.stderr


@needs_bwrap
def test_corrupted_notebook_is_recorded_with_reasons(mini, tmp_path):
    root, course, release = mini
    subs = tmp_path / "subs"
    write_submission(subs, "dave", None, raw=b'{"cells": [')
    rows = Grader(tmp_path / "out", course=course, execute=False).grade(subs)
    assert {r["status"] for r in rows} == {"error"} and all("could not be read" in r["message"] for r in rows)
    from nbgrader.api import Gradebook
    with Gradebook(f"sqlite:///{tmp_path / 'out' / 'gradebook.db'}") as gb:
        sub = gb.find_submission(MINI, "dave")
        assert sub.score == 0.0 and not sub.needs_manual_grade
    assert (tmp_path / "out" / ".received" / "dave" / MINI / f"{MINI}.ipynb").read_bytes() == b'{"cells": ['
