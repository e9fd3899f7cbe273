"""Grading on a Dask cluster (a LocalCluster here) gives the same grades as grading on this machine.

Each unit (one submission: its sandboxed function checks and notebook run) goes to a worker as plain
data and comes back as plain data; the gradebook and grades.csv are written here. A worker killed in
the middle of a unit costs no student a grade: Dask reruns the unit on another worker.
"""

import os
import signal
import threading
import time
from pathlib import Path

import pytest
from autograder_fixtures import make_course, release_of, solution_answer, with_answer, write_submission

from autograder import secret
from autograder.executors import DaskExecutor, UnitLost
from autograder.grade import Grader
from autograder.hostile import CORPUS, wrong_answer

distributed = pytest.importorskip("distributed", reason="the 'cluster' extra (dask[distributed]) is not installed")
# Grades only, never isolation: these run with or without bubblewrap.
pytestmark = pytest.mark.slow
HOSTILE = ("patched_allclose",)


@pytest.fixture(scope="module")
def batch(tmp_path_factory):
    """The mini course and a batch: an honest, a blank and a hostile submission.

    Every grading folder of this module draws the hidden cases from one key (``AUTOGRADER_KEY_FILE``), as
    an instructor grading one class on two backends would: the grades can then be compared line by line.
    """
    root = tmp_path_factory.mktemp("dask")
    saved = os.environ.get(secret.KEY_ENV)
    os.environ[secret.KEY_ENV] = str(root / "shared.key")
    course = make_course(root)
    release = release_of(course, root / "release")
    answer = solution_answer()
    good = with_answer(release, "sr1_update", answer)
    subs = root / "subs"
    write_submission(subs, "honest", good)
    write_submission(subs, "blank", release)
    for h in CORPUS:
        if h.name in HOSTILE:
            write_submission(subs, h.name.replace("_", "-"), h.make(good, "sr1_update", answer))
    yield root, course, subs
    if saved is None:
        os.environ.pop(secret.KEY_ENV, None)
    else:
        os.environ[secret.KEY_ENV] = saved


@pytest.fixture(scope="module")
def client():
    cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None)
    with distributed.Client(cluster) as c:
        yield c
    cluster.close()


def _patched_allclose_score() -> float:
    """The score of that hostile submission's wrong answer, computed in process on the student's draw."""
    import torch
    from secondorder.exercises import get_exercise

    namespace = {"torch": torch}
    source = wrong_answer(solution_answer())
    exec(source, namespace)
    draw = secret.draw_for(secret.load_or_create_key(Path(".")), "patched-allclose", "sr1_update", source)
    results = get_exercise("sr1_update").run_in_process(namespace["sr1_update"], hidden=True, draw=draw).results
    return round(6 * sum(r.passed for r in results) / len(results), 2)


@pytest.fixture(scope="module")
def local_csv(batch):
    root, course, subs = batch
    t0 = time.perf_counter()
    Grader(root / "local", course=course, jobs=2, execute=False).grade(subs)
    print(f"\nlocal backend: {time.perf_counter() - t0:.1f} s")
    return (root / "local" / "grades.csv").read_text()


def test_same_grades_as_local(batch, client, local_csv):
    # Executed here on the cluster (grades never depend on the notebook run, only the feedback does).
    root, course, subs = batch
    t0 = time.perf_counter()
    Grader(root / "dask", course=course, cell_timeout_s=20, notebook_wall_s=60,
           executor=DaskExecutor(client=client)).grade(subs)
    print(f"dask backend (LocalCluster, 2 workers): {time.perf_counter() - t0:.1f} s")
    assert (root / "dask" / "grades.csv").read_text() == local_csv
    assert f"\npatched-allclose,patched-allclose,00_mini,test_sr1_update,{_patched_allclose_score()},6,tampered," \
        in local_csv
    # The executed notebook came back from the worker: the feedback shows the student's own output.
    html = (root / "dask" / "feedback" / "honest" / "00_mini" / "00_mini.html").read_text()
    assert "tensor([[" in html and "hidden=True" not in html


def test_killed_worker_loses_no_student(batch, client, local_csv):
    root, course, subs = batch
    out = root / "killed"
    pids = client.run(os.getpid)
    failures = []

    def grade():
        try:
            Grader(out, course=course, execute=False, executor=DaskExecutor(client=client)).grade(subs)
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            failures.append(exc)

    worker = threading.Thread(target=grade)
    worker.start()
    victim = None
    deadline = time.monotonic() + 60
    while victim is None and time.monotonic() < deadline and worker.is_alive():
        busy = {w: keys for w, keys in client.processing().items() if any(str(k).startswith("grade-") for k in keys)}
        if busy:
            victim = next(iter(busy))
            time.sleep(0.5)                        # well inside the unit: its sandboxed process is running
            os.kill(pids[victim], signal.SIGKILL)
        time.sleep(0.05)
    worker.join(timeout=120)
    assert victim is not None, "no unit was seen running on a worker"
    assert not failures and not worker.is_alive()
    # Every student has exactly the grade the local backend gave.
    assert (out / "grades.csv").read_text() == local_csv


class _LosingExecutor:
    """An executor whose cluster loses every unit (as Dask reports KilledWorker)."""

    slots = 1

    def describe(self):
        return "losing"

    def submit(self, unit, done, *, workroot: Path, sandbox):
        done(None, UnitLost("every Dask worker that tried to grade this submission died before finishing"))

    def close(self):
        pass


def test_lost_unit_is_a_grade_with_a_reason_and_is_retried(batch, local_csv):
    root, course, subs = batch
    out = root / "lost"
    rows = Grader(out, course=course, execute=False, executor=_LosingExecutor()).grade(subs)
    assert {r["status"] for r in rows} == {"error"} and {r["score"] for r in rows} == {"0"}
    assert all("worker" in r["message"] and "run the same command again" in r["message"] for r in rows)
    # A plain rerun (no --force) grades the lost students again.
    Grader(out, course=course, execute=False, jobs=2).grade(subs)
    assert (out / "grades.csv").read_text() == local_csv
