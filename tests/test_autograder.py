"""The grading pipeline on a one-function course: honest, blank and hostile submissions."""

import csv
import hashlib
import subprocess
import sys
import zipfile
from pathlib import Path

import nbformat
import pytest
from autograder_fixtures import MINI, rows_of, solution_answer, with_answer, write_submission

from autograder import secret
from autograder.grade import STATUSES, Grader
from autograder.hostile import CORPUS
from autograder.sandbox import bwrap_available, processes_capped
from autograder.submissions import SubmissionsError

REPO = Path(__file__).resolve().parents[1]
# Grades come out the same with resource limits alone; only the isolation itself needs bubblewrap.
ISOLATED = bwrap_available()
needs_isolation = pytest.mark.skipif(not ISOLATED, reason="checks the sandbox's isolation: needs bubblewrap "
                                     "(apt-get install bubblewrap)")
# Without bubblewrap the submissions that escape their folder are left out: they would really write there.
# Without a cap on processes (root, no cgroups) the fork bomb is left out: nothing would stop it.
HOSTILE = [h for h in CORPUS if (ISOLATED or not h.needs_isolation) and (processes_capped() or not h.needs_process_cap)]
pytestmark = pytest.mark.slow
MARKER = "f3c1-honest-secret-8d2e"


def _tree_digest(path: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(path.rglob("*")):
        if p.is_file() and ".git" not in p.parts and ".venv" not in p.parts and "__pycache__" not in p.parts \
                and ".pytest_cache" not in p.parts:
            h.update(str(p).encode())
            h.update(p.read_bytes())
    return h.hexdigest()


@pytest.fixture(scope="module")
def hostile_run(mini, tmp_path_factory):
    """One grading run: an honest, a blank and every hostile submission (those that escape only with bubblewrap)."""
    root, course, release = mini
    tmp = tmp_path_factory.mktemp("hostile")
    answer = solution_answer()
    good = with_answer(release, "sr1_update", answer)
    subs = tmp / "subs"
    # A secret in the honest student's notebook and in a root-only file beside the submissions: no other
    # student's code may read either.
    honest = with_answer(release, "sr1_update", answer)
    honest.cells.append(nbformat.v4.new_markdown_cell(f"my notes {MARKER}"))
    write_submission(subs, "honest", honest)
    secret_file = tmp / "instructor-only.txt"
    secret_file.write_text(MARKER)
    secret_file.chmod(0o600)
    write_submission(subs, "blank", release)
    for h in HOSTILE:
        made = h.make(good, "sr1_update", answer)
        write_submission(subs, h.name.replace("_", "-"), None if isinstance(made, bytes) else made,
                         raw=made if isinstance(made, bytes) else None)
    before = _tree_digest(REPO / "course"), (REPO / "README.md").read_bytes()
    rows = Grader(tmp / "out", course=course, jobs=2, cell_timeout_s=20, notebook_wall_s=90).grade(subs)
    return rows, tmp / "out", before


def test_honest_blank_and_hostile_in_one_run(hostile_run):
    rows, out, _ = hostile_run
    assert {r["status"] for r in rows} <= set(STATUSES)

    honest = rows_of(rows, "honest")
    assert honest["test_sr1_update"]["status"] == "ok" and honest["test_sr1_update"]["score"] == "6"
    blank = rows_of(rows, "blank")
    assert blank["test_sr1_update"]["score"] == "0" and blank["test_sr1_update"]["status"] == "missing"
    assert blank["q_skip"]["status"] == "missing"
    failures = []
    for h in HOSTILE:
        row = rows_of(rows, h.name.replace("_", "-"))["test_sr1_update"]
        full = row["score"] == row["max_score"]
        if row["status"] != h.status or full != h.full_marks or not row["message"]:
            failures.append(f"{h.name}: got {row['status']} {row['score']}/{row['max_score']} "
                            f"({row['message'][:160]!r}), expected {h.status} full={h.full_marks}")
    assert not failures, "\n".join(failures)
    from nbgrader.api import Gradebook
    with Gradebook(f"sqlite:///{out / 'gradebook.db'}") as gb:
        assert gb.find_submission(MINI, "honest").score == 6.0
    # Feedback exists for the honest student and does not show the hidden tests' source.
    html = (out / "feedback" / "honest" / MINI / f"{MINI}.html").read_text()
    assert "sr1_update" in html and "hidden=True" not in html and "BEGIN HIDDEN" not in html


@needs_isolation
def test_hostile_submissions_stay_in_their_folder(hostile_run):
    rows, out, before = hostile_run
    escapes = [h.name for h in CORPUS if h.needs_isolation]
    assert escapes and all(rows_of(rows, name.replace("_", "-")) for name in escapes)
    # Nothing outside the grading folder changed, and the gradebook still holds everyone's grades.
    assert (_tree_digest(REPO / "course"), (REPO / "README.md").read_bytes()) == before
    assert not (REPO / "course" / "pwned.txt").exists()
    # What the snooping submissions printed holds neither the honest student's notebook, nor the root-only
    # file, nor the instructor's key; and the work folders hold only results.
    key_hex = (out / secret.KEY_FILE).read_text().strip()
    leaks = [str(p.relative_to(out)) for p in [out / "grades.csv", *(out / "feedback").rglob("*.html"),
                                               *(out / ".work").rglob("*.ipynb")]
             if "honest" not in p.parts and (MARKER in p.read_text(errors="replace")
                                             or key_hex in p.read_text(errors="replace"))]
    assert not leaks
    assert sum(p.stat().st_size for p in (out / ".work").rglob("*") if p.is_file()) < 64 * 2**20
    from nbgrader.api import Gradebook
    with Gradebook(f"sqlite:///{out / 'gradebook.db'}") as gb:
        assert gb.find_submission(MINI, "honest").score == 6.0
        assert gb.find_submission(MINI, "read-gradebook").score == 6.0


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


def test_lms_zip_and_unsafe_zip(mini, tmp_path):
    root, course, release = mini
    subs = tmp_path / "subs"
    write_submission(subs, "carol", with_answer(release, "sr1_update", solution_answer()))
    archive = tmp_path / "export.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for p in subs.rglob("*.ipynb"):
            zf.write(p, Path("export") / p.relative_to(subs))
    rows = Grader(tmp_path / "out", course=course, execute=False).grade(archive)
    assert rows_of(rows, "carol")["test_sr1_update"]["status"] == "ok"
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
