"""Grading an instructor can trust: secret hidden cases, the answer in force, resuming without loss.

Each hostile or odd submission is graded beside two honest students, whose grades must not change.
"""

from __future__ import annotations

import csv
import json
import os
import signal
import stat
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import nbformat
import pytest
import torch
from autograder_fixtures import (
    MINI,
    rows_of,
    solution_answer,
    with_answer,
    write_submission,
)
from secondorder.exercises import get_exercise

from autograder import secret
from autograder.grade import Grader

REPO = Path(__file__).resolve().parents[1]


def _honest(subs: Path, release) -> None:
    for name in ("honest-a", "honest-b"):
        write_submission(subs, name, with_answer(release, "sr1_update", solution_answer()))


def _assert_honest_untouched(rows) -> None:
    for name in ("honest-a", "honest-b"):
        row = rows_of(rows, name)["test_sr1_update"]
        assert (row["status"], row["score"], row["max_score"]) == ("ok", "6", "6"), row


# -- the key and the draws -------------------------------------------------------------------------


def test_the_key_is_created_once_private_and_draws_differ_per_student_exercise_and_answer(tmp_path, monkeypatch):
    monkeypatch.delenv(secret.KEY_ENV, raising=False)
    key = secret.load_or_create_key(tmp_path / "grading")
    path = tmp_path / "grading" / secret.KEY_FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert secret.load_or_create_key(tmp_path / "grading") == key              # created once, then read
    other = secret.load_or_create_key(tmp_path / "elsewhere")
    assert other != key
    draws = {secret.draw_for(key, s, e, a) for s in ("alice", "bob") for e in ("sr1_update", "hvp")
             for a in ("def f(): pass", "def f(): return 1")}
    assert len(draws) == 8
    assert secret.draw_for(key, "alice", "hvp", "x") == secret.draw_for(key, "alice", "hvp", "x")
    assert secret.draw_for(other, "alice", "hvp", "x") != secret.draw_for(key, "alice", "hvp", "x")
    # One key for several grading folders, from a file the instructor names.
    monkeypatch.setenv(secret.KEY_ENV, str(path))
    assert secret.load_or_create_key(tmp_path / "third") == key
    path.write_text("not a key\n")
    with pytest.raises(secret.KeyFileError, match="not a hidden-case key"):
        secret.load_or_create_key(tmp_path / "third")


def test_hidden_cases_under_two_draws_differ_and_visible_cases_do_not():
    ex = get_exercise("sr1_update")
    base, d1, d2 = ex.cases(), ex.cases(draw=1), ex.cases(draw=2)
    for a, b, c in zip(base, d1, d2):
        x, y, z = a.make_args(), b.make_args(), c.make_args()
        same = all(torch.equal(p, q) if isinstance(p, torch.Tensor) else p == q for p, q in zip(x, y))
        if a.hidden:
            assert not all(torch.equal(p, q) if isinstance(p, torch.Tensor) else p == q for p, q in zip(y, z)), a.id
        else:
            assert same and all(torch.equal(p, q) if isinstance(p, torch.Tensor) else p == q
                                for p, q in zip(x, z)), a.id


def lookup_table_answer(exercise_name: str = "sr1_update", draws=range(2)) -> str:
    """An answer built from everything a student has: the reference's outputs on the public catalogue and on
    draws of its own choosing, looked up by the exact inputs; elsewhere it returns B unchanged."""
    ex = get_exercise(exercise_name)
    table = {}
    for d in (None, *draws):
        for case in ex.cases(d):
            args = case.make_args()
            table[repr([a.tolist() if isinstance(a, torch.Tensor) else a for a in args])] = ex.expected(args).tolist()
    return textwrap.dedent(f'''\
        import torch
        TABLE = {table!r}

        def sr1_update(*args):
            hit = TABLE.get(repr([a.tolist() if isinstance(a, torch.Tensor) else a for a in args]))
            return args[0].clone() if hit is None else torch.tensor(hit, dtype=args[0].dtype)
        ''')


def test_a_lookup_table_passes_the_cases_it_tabulated_and_fails_a_fresh_draw():
    namespace = {}
    exec(lookup_table_answer(), namespace)
    ex = get_exercise("sr1_update")
    assert ex.run_in_process(namespace["sr1_update"], hidden=True, draw=1).fraction == 1.0
    assert ex.run_in_process(namespace["sr1_update"], hidden=True, draw=987654321).fraction < 1.0


WRONG = solution_answer().replace("return B + torch.outer(v, v) / vs", "return B + torch.outer(v, v) / (2 * vs)")


def _duplicated(release, first: str, last: str):
    nb = with_answer(release, "sr1_update", first)
    i = next(k for k, c in enumerate(nb.cells) if c.metadata.get("nbgrader", {}).get("grade_id") == "sr1_update")
    copy = nbformat.from_dict(json.loads(json.dumps(nb.cells[i])))
    copy.source = last
    copy.pop("id", None)
    nb.cells.insert(i + 1, copy)
    return nb


def _key_hunter(release):
    """A correct answer, then a cell that looks for the key and the grading folder and prints what it finds."""
    nb = with_answer(release, "sr1_update", solution_answer())
    nb.cells.insert(3, nbformat.v4.new_code_cell(
        "import glob\nfound = [p for pat in ('/**/hidden_cases.key', '/**/grading*/**') for p in "
        "glob.glob(pat, recursive=True)][:20]\nprint('FOUND', found)\n"
        "for p in found:\n    try:\n        print(open(p).read()[:80])\n    except Exception as e:\n"
        "        print('unreadable', type(e).__name__)"))
    return nb


@pytest.fixture(scope="module")
def trust_run(mini, tmp_path_factory):
    """One grading run: two honest students beside a lookup table, a key hunter and duplicated answer cells."""
    root, course, release = mini
    tmp = tmp_path_factory.mktemp("trust")
    subs = tmp / "subs"
    _honest(subs, release)
    write_submission(subs, "lookup-table", with_answer(release, "sr1_update", lookup_table_answer()))
    write_submission(subs, "key-hunter", _key_hunter(release))
    write_submission(subs, "wrong-then-right", _duplicated(release, WRONG, solution_answer()))
    write_submission(subs, "right-then-wrong", _duplicated(release, solution_answer(), WRONG))
    out = tmp / "out"
    rows = Grader(out, course=course, jobs=2, cell_timeout_s=60, notebook_wall_s=120).grade(subs)
    return rows, out


@pytest.mark.slow
def test_a_lookup_table_of_the_public_cases_loses_points_and_the_key_stays_out_of_the_sandbox(trust_run):
    rows, out = trust_run
    _assert_honest_untouched(rows)
    table = rows_of(rows, "lookup-table")["test_sr1_update"]
    assert table["status"] == "failed" and float(table["score"]) < 6, table
    key_hex = (out / secret.KEY_FILE).read_text().strip()
    everything = (out / "grades.csv").read_text() + "".join(
        p.read_text() for p in (out / "feedback").rglob("*.html"))
    assert key_hex not in everything
    executed = next((out / ".work" / "key-hunter").rglob("out.ipynb")).read_text()
    assert key_hex not in executed and "FOUND" in executed


# -- the answer in force -----------------------------------------------------------------------------


@pytest.mark.slow
def test_duplicated_answer_cells_grade_the_last_copy_and_are_flagged(trust_run):
    rows, out = trust_run
    _assert_honest_untouched(rows)
    good = rows_of(rows, "wrong-then-right")["test_sr1_update"]
    bad = rows_of(rows, "right-then-wrong")["test_sr1_update"]
    assert good["score"] == "6" and good["status"] == "tampered" and "the last one" in good["message"]
    assert float(bad["score"]) < 6 and bad["status"] == "tampered" and "the last one" in bad["message"]
    from nbgrader.api import Gradebook
    with Gradebook(f"sqlite:///{out / 'gradebook.db'}") as gb:
        assert gb.find_submission(MINI, "wrong-then-right").score == 6.0
        assert gb.find_submission(MINI, "right-then-wrong").score == float(bad["score"])


# -- resuming a killed run -----------------------------------------------------------------------------

GRADE_SCRIPT = """
import sys
sys.path[:0] = [{repo!r}, {tests!r}]
from pathlib import Path
from autograder.grade import Grader
Grader(Path({out!r}), course=Path({course!r}), jobs=1, execute=False).grade(Path({subs!r}))
"""


def _kill_when(script: str, ready, timeout_s: float = 240.0) -> None:
    proc = subprocess.Popen([sys.executable, "-c", script], cwd=REPO, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    t0 = time.monotonic()
    try:
        while not ready():
            if proc.poll() is not None:
                raise AssertionError("the run ended before the point where it was to be killed:\n"
                                     + proc.stderr.read().decode()[-2000:])
            assert time.monotonic() - t0 < timeout_s
            time.sleep(0.02)
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait()


def _gradebook_students(out: Path) -> set[str]:
    from nbgrader.api import Gradebook
    with Gradebook(f"sqlite:///{out / 'gradebook.db'}") as gb:
        return {s.student.id for s in gb.assignment_submissions(MINI)}


@pytest.mark.slow
@pytest.mark.parametrize("phase", ["sandbox", "gradebook"])
def test_a_run_killed_in_either_phase_and_rerun_loses_nothing(mini, tmp_path, phase):
    root, course, release = mini
    subs = tmp_path / "subs"
    students = [f"s{i:02d}" for i in range(6)]
    for i, sid in enumerate(students):
        write_submission(subs, sid, with_answer(release, "sr1_update", solution_answer() if i % 2 else WRONG))
    out = tmp_path / "out"
    script = GRADE_SCRIPT.format(repo=str(REPO), tests=str(Path(__file__).parent), out=str(out), course=str(course),
                                 subs=str(subs))
    if phase == "sandbox":
        ready = lambda: len(list((out / ".results").glob("*/*.json"))) >= 2     # noqa: E731
    else:
        ready = lambda: len(list((out / "feedback").glob("*/*/*.html"))) >= 2   # noqa: E731
    _kill_when(script, ready)
    rows = Grader(out, course=course, jobs=2, execute=False).grade(subs)
    assert sorted({r["student_id"] for r in rows}) == students
    assert _gradebook_students(out) == set(students)
    for i, sid in enumerate(students):
        row = rows_of(rows, sid)["test_sr1_update"]
        assert (row["score"] == "6") == bool(i % 2), row
        assert (out / "feedback" / sid / MINI / f"{MINI}.html").exists()
    from nbgrader.api import Gradebook
    with Gradebook(f"sqlite:///{out / 'gradebook.db'}") as gb:
        for sid in students:
            sub = gb.find_submission(MINI, sid)
            assert sub.score == float(rows_of(rows, sid)["test_sr1_update"]["score"])
            assert not sub.needs_manual_grade or sub.notebooks[0].needs_manual_grade   # only the written answer
    assert sum(1 for r in rows if r["grade_id"] == "test_sr1_update") == len(students)   # nothing doubled
    with open(out / "grades.csv") as f:
        assert len(list(csv.DictReader(f))) == len(rows)


# -- odd results are the answer's, not the grader's ----------------------------------------------------

ODD_RESULTS = [None, "text", {"a": 1}, {"__unsupported_type__": "Foo", "repr": "<Foo>"}, [1, 2], (), 3.0, True,
               float("nan"), torch.zeros(0), torch.zeros(2, 2, 2), torch.full((3, 3), float("nan")),
               torch.zeros(3, dtype=torch.complex128), torch.zeros(2, dtype=torch.int64), [torch.zeros(2)] * 3]


@pytest.mark.parametrize("name", sorted(__import__("secondorder.exercises", fromlist=["EXERCISES"]).EXERCISES))
def test_judging_an_odd_result_fails_the_case_and_never_raises(name):
    ex = get_exercise(name)
    case = ex.cases()[0]
    args = case.make_args()
    for out in ODD_RESULTS:
        result = ex.judge(case, args, out)
        assert not result.passed and result.status == "failed" and result.message, (name, out, result)


# -- no student dropped --------------------------------------------------------------------------------


@pytest.mark.slow
def test_every_student_in_an_lms_zip_gets_rows_graded_or_refused_with_the_reason(mini, tmp_path, monkeypatch):
    import zipfile

    import autograder.submissions as submissions
    root, course, release = mini
    good = nbformat.writes(with_answer(release, "sr1_update", solution_answer())).encode()
    long_name = "x" * 300
    names = ["honest-a", "honest-b", "étudiant", "学生", "Jean Dupont", long_name]
    archive = tmp_path / "export.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_STORED) as zf:
        for name in names:
            zf.writestr(f"export/{name}/{MINI}/{MINI}.ipynb", good)
        zf.writestr(f"export/damaged/{MINI}/{MINI}.ipynb", good.replace(b"Mini section", b"MINI SECTION", 1))
        zf.writestr(f"export/too-big/{MINI}/{MINI}.ipynb", good + b" " * 4096)
        zf.writestr(f"export/stray/{MINI}.ipynb", good)
    data = bytearray(archive.read_bytes())
    # Damage the stored copy after its CRC was computed: a bad CRC-32 in that one entry.
    crc_ok = good.replace(b"Mini section", b"MINI SECTION", 1)
    at = data.index(crc_ok)
    data[at: at + len(crc_ok)] = good
    archive.write_bytes(bytes(data))
    monkeypatch.setattr(submissions, "MAX_NOTEBOOK_BYTES", len(good) + 1024)
    out = tmp_path / "out"
    rows = Grader(out, course=course, jobs=2, execute=False).grade(archive)
    _assert_honest_untouched(rows)
    by_student = {}
    for r in rows:
        by_student.setdefault(r["student_id"], []).append(r)
    for name in ("étudiant", "学生", "Jean Dupont", long_name):
        row = next(r for r in by_student[name] if r["grade_id"] == "test_sr1_update")
        assert (row["status"], row["score"]) == ("ok", "6"), (name, row)
        assert row["grading_id"] != name and len(row["grading_id"]) <= 64
    damaged = next(r for r in by_student["damaged"] if r["grade_id"] == "test_sr1_update")
    assert damaged["status"] == "refused" and "CRC" in damaged["message"]
    big = next(r for r in by_student["too-big"] if r["grade_id"] == "test_sr1_update")
    assert big["status"] == "refused" and "limit" in big["message"]
    stray = by_student["stray"]
    assert [r["status"] for r in stray] == ["refused"] and "not graded" in stray[0]["message"]
    from nbgrader.api import Gradebook
    with Gradebook(f"sqlite:///{out / 'gradebook.db'}") as gb:
        ids = {s.student.id for s in gb.assignment_submissions(MINI)}
    graded = {r["grading_id"] for r in rows if r["grading_id"]}
    assert graded <= ids and len(graded) == len(names) + 2


def test_an_unusable_zip_is_refused_in_one_line_with_exit_status_2(tmp_path):
    bad = tmp_path / "export.zip"
    bad.write_bytes(b"PK\x03\x04 this is not really a zip")
    proc = subprocess.run([sys.executable, "-m", "autograder", "grade", str(bad), "--out", str(tmp_path / "out")],
                          cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip().startswith("error:") and "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
