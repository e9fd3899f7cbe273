"""The grading sandbox with and without bubblewrap: what each mode promises, in a second or two each."""

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from autograder.sandbox import NO_BWRAP_ENV, OUTPUT, Limits, Outcome, Sandbox, bwrap_available

REPO = Path(__file__).resolve().parents[1]
needs_isolation = pytest.mark.skipif(not bwrap_available(), reason="checks the sandbox's isolation: needs "
                                     "bubblewrap (apt-get install bubblewrap)")
as_root = pytest.mark.skipif(os.geteuid() != 0, reason="the uid switch happens only when grading runs as root")

WITHOUT_BWRAP = """
import warnings
from autograder.sandbox import Sandbox, bwrap_available
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    boxes = [Sandbox(), Sandbox(), Sandbox()]
print(bwrap_available(), boxes[0].isolation, len(caught), caught[0].category.__name__)
"""


def test_without_bubblewrap_grading_runs_with_limits_and_warns_once():
    env = {**os.environ, NO_BWRAP_ENV: "1"}
    out = subprocess.run([sys.executable, "-c", WITHOUT_BWRAP], cwd=REPO, env=env, capture_output=True, text=True,
                         check=True).stdout.split()
    assert out[0] == "False" and out[1] in ("cgroups", "rlimits") and out[2:] == ["1", "RuntimeWarning"], out


def test_require_isolation_refuses_without_bubblewrap():
    env = {**os.environ, NO_BWRAP_ENV: "1"}
    proc = subprocess.run([sys.executable, "-c", "from autograder.sandbox import Sandbox\n"
                           "Sandbox(require_isolation=True)"], cwd=REPO, env=env, capture_output=True, text=True)
    assert proc.returncode != 0 and "install the 'bubblewrap' package" in proc.stderr


@pytest.fixture(params=["bubblewrap+cgroups", "bubblewrap", "cgroups", "rlimits"])
def mode(request, monkeypatch):
    """A sandbox in each mode this machine can give: with or without bubblewrap, with or without cgroups."""
    has_bwrap, has_cgroups = Sandbox.probe()
    want_bwrap, want_cgroups = request.param.startswith("bubblewrap"), "cgroups" in request.param
    if (want_bwrap and not has_bwrap) or (want_cgroups and not has_cgroups):
        pytest.skip(f"{request.param} is not available here")
    monkeypatch.setattr(Sandbox, "_probe", (want_bwrap, want_cgroups))
    monkeypatch.setattr(Sandbox, "_warned", True)
    return Sandbox()


ESCAPE = """
import socket, sys
mine, theirs, secret = sys.argv[1:]
for path in (mine, theirs):
    try:
        open(path, "w").write("x")
        print("wrote")
    except OSError:
        print("blocked")
try:
    print(open(secret).read())
except OSError:
    print("hidden")
try:
    socket.create_connection(("1.1.1.1", 53), timeout=2)
    print("network")
except OSError:
    print("no network")
"""


@needs_isolation
def test_a_run_writes_only_its_output_folder_sees_no_hidden_path_and_has_no_network(tmp_path):
    work = tmp_path / "work"
    outside = Path(tempfile.mkdtemp(dir="/var/tmp"))        # not under /tmp: the sandbox has its own /tmp
    try:
        (outside / "secret").mkdir()
        (outside / "secret" / "gradebook.db").write_text("grades")
        outcome = Sandbox(hide=[outside / "secret"]).run(
            [sys.executable, "-c", ESCAPE, str(work / OUTPUT / "mine"), str(outside / "theirs"),
             str(outside / "secret" / "gradebook.db")], work, Limits(wall_s=30))
        assert outcome.ok, outcome.stderr
        assert outcome.stdout.split() == ["wrote", "blocked", "hidden", "no", "network"], outcome.stdout
        assert (work / OUTPUT / "mine").exists() and not (outside / "theirs").exists()
    finally:
        shutil.rmtree(outside)


VIEW = """
import json, os, sys
def readable(p):
    try:
        return open(p).read()
    except OSError as e:
        return type(e).__name__
print(json.dumps({"uid": os.getuid(), "gid": os.getgid(), "groups": os.getgroups(), "top": sorted(os.listdir("/")),
                  "repo": {name: os.path.exists(os.path.join(sys.argv[1], name))
                           for name in ("README.md", "autograder", "lib", ".git", ".venv")},
                  "home": os.path.exists("/home"),
                  "root": sorted(os.listdir("/root")) if os.path.isdir("/root") else None,
                  "shared": readable(sys.argv[2]), "private": readable(sys.argv[3]), "outside": readable(sys.argv[4]),
                  "input": readable("input.txt")}))
"""


@needs_isolation
def test_the_view_is_minimal_and_the_code_runs_unprivileged(tmp_path):
    """Only the system, Python and the run's own folders are there; root-only files stay unreadable, both
    outside the view and inside a folder bound into it. An honest file next to them reads fine."""
    import json

    bound, outside = tmp_path / "bound", tmp_path / "outside"
    bound.mkdir()
    outside.mkdir()
    (bound / "shared.txt").write_text("shared")
    for folder in (bound, outside):
        (folder / "private.txt").write_text("TOP-SECRET")
        (folder / "private.txt").chmod(0o600)
    work = tmp_path / "work"
    work.mkdir()
    (work / "input.txt").write_text("input")
    outcome = Sandbox().run([sys.executable, "-c", VIEW, str(REPO), str(bound / "shared.txt"),
                             str(bound / "private.txt"), str(outside / "private.txt")], work, Limits(wall_s=30),
                            readonly=[bound])
    assert outcome.ok, outcome.stderr
    seen = json.loads(outcome.stdout.strip().splitlines()[-1])
    assert set(seen["top"]) <= {"bin", "dev", "etc", "lib", "lib32", "lib64", "libx32", "proc", "sbin", "tmp", "usr",
                                *(Path(p).parts[1] for p in (sys.prefix, sys.base_prefix, tmp_path))}, seen["top"]
    assert seen["repo"] == {"README.md": False, "autograder": False, "lib": False, ".git": False,
                            ".venv": Path(sys.prefix).parent == REPO}, seen["repo"]
    assert not seen["home"] and seen["root"] in (None, [".pyenv"], []), seen
    assert seen["shared"] == "shared" and seen["input"] == "input"
    assert seen["outside"] == "FileNotFoundError"
    if os.geteuid() == 0:
        assert (seen["uid"], seen["gid"], seen["groups"]) == (65534, 65534, [])
        assert seen["private"] == "PermissionError"


@as_root
@needs_isolation
def test_root_only_files_of_the_machine_are_unreadable(tmp_path):
    """A 0600 file in a folder bound into the view (here the Python installation's own folder would do; a
    temporary one is used) is refused to the sandboxed uid, as is root's home."""
    secret = tmp_path / "ro" / "key"
    secret.parent.mkdir()
    secret.write_text("TOP-SECRET")
    secret.chmod(0o600)
    code = ("import os\nfor p in ('/root/.bashrc', '/etc/shadow', os.environ['SECRET']):\n    try:\n"
            "        print(open(p).read()[:20])\n    except OSError as e:\n        print(type(e).__name__)")
    outcome = Sandbox().run([sys.executable, "-c", code], tmp_path / "work", Limits(wall_s=30),
                            env={"SECRET": str(secret)}, readonly=[secret.parent])
    assert outcome.ok, outcome.stderr
    assert "TOP-SECRET" not in outcome.stdout and outcome.stdout.split()[-1] == "PermissionError", outcome.stdout


# A thread that never ends, SIGTERM and SIGINT ignored, and a setsid'd double-forked daemon: all must die
# at the wall clock. The daemon beats on a file in the output folder, so its death is visible on the host.
IMMORTAL = """
import os, signal, sys, threading, time
for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
    signal.signal(s, signal.SIG_IGN)
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        while True:
            with open("out/heartbeat", "a") as f:
                f.write(".")
            time.sleep(0.05)
    os._exit(0)
threading.Thread(target=lambda: [time.sleep(0.05) for _ in iter(int, 1)]).start()
print("started", flush=True)
if sys.argv[1] == "hang":
    while True:
        time.sleep(0.05)
"""


@pytest.mark.parametrize("main", ["hang", "exits"])
def test_every_process_dies_with_the_run(mode, tmp_path, main):
    """``hang``: the main thread never ends (killed at the wall clock); ``exits``: the main thread ends, but
    a thread and a daemon live on. Either way the run ends at its limit and the daemon stops beating."""
    t0 = time.monotonic()
    outcome = mode.run([sys.executable, "-c", IMMORTAL, main], tmp_path, Limits(wall_s=2.0))
    took = time.monotonic() - t0
    beat = tmp_path / OUTPUT / "heartbeat"
    assert "started" in outcome.stdout and beat.exists(), outcome.stderr
    size = beat.stat().st_size
    time.sleep(0.4)
    assert beat.stat().st_size == size, "the daemon outlived the run"
    assert took < 5, took
    assert outcome.timed_out and outcome.reason == "time" and not outcome.ok


def test_an_honest_run_is_not_held(mode, tmp_path):
    outcome = mode.run([sys.executable, "-c", "open('out/result', 'w').write('42')"], tmp_path, Limits(wall_s=20))
    assert outcome.ok and outcome.reason is None and outcome.seconds < 10, outcome
    assert (tmp_path / OUTPUT / "result").read_text() == "42"


FILL = """
import sys
folder, written = sys.argv[1], 0
for i in range(64):
    try:
        with open(f"{folder}/fill_{i}.bin", "wb") as f:
            for _ in range(8):
                f.write(b"\\0" * 2**20)
                written += 2**20
    except OSError as e:
        print("stopped", written, e.errno, flush=True)
        break
"""


@pytest.mark.parametrize("folder", [".", OUTPUT])
def test_disk_quota(mode, tmp_path, folder):
    """512 MiB written in 8 MiB files against a 32 MiB quota: the working folder refuses (bubblewrap's
    tmpfs: "No space left on device") or is killed over its quota (without); the output folder is
    killed over its cap. Nothing but the inputs is left on the host, and the outcome says why."""
    (tmp_path / "input.txt").write_text("kept")
    limits = Limits(wall_s=30, disk_bytes=32 * 2**20, output_bytes=16 * 2**20)
    outcome = mode.run([sys.executable, "-c", FILL, folder], tmp_path, limits)
    left = sum(p.stat().st_size for p in tmp_path.rglob("*") if p.is_file() and not p.name.startswith(".std"))
    assert left == len("kept"), sorted(p.name for p in tmp_path.rglob("*"))
    if folder == "." and mode.has_bwrap:
        assert outcome.ok and "stopped" in outcome.stdout and " 28" in outcome.stdout, outcome
        assert int(outcome.stdout.split()[1]) <= limits.disk_bytes
    else:
        assert outcome.disk and not outcome.ok and "MiB" in outcome.detail, outcome
        quota = "disk quota" if folder == "." else "its results may take"
        assert quota in outcome.detail, outcome.detail


def test_a_huge_print_is_cut_not_fatal(mode, tmp_path):
    """256 MiB on stdout (pipes the grader drains): the run ends normally, the host keeps about log_bytes."""
    code = "import sys\nfor _ in range(256):\n    print('x' * (2**20 - 1))\nprint('the end', file=sys.stderr)"
    outcome = mode.run([sys.executable, "-c", code], tmp_path, Limits(wall_s=60, log_bytes=2**16))
    assert outcome.ok and outcome.reason is None, outcome
    kept = (tmp_path / ".stdout").read_bytes()
    assert len(kept) < 2**16 + 200 and b"MiB of output left out" in kept
    assert outcome.stdout.endswith("x\n") and outcome.stderr.strip() == "the end"


# -- the function checks on top of it --------------------------------------------------------------------


def test_check_function_passes_the_draw_only_to_exercises_that_take_one(tmp_path):
    from autograder.function_checks import check_function

    seen = []

    class WithDraw:
        name = "with_draw"

        def cases(self, draw=None):
            seen.append(draw)
            return []

    class WithoutDraw:
        name = "without_draw"

        def cases(self):
            seen.append("none")
            return []

    for exercise in (WithDraw(), WithoutDraw()):
        verdict = check_function(exercise, "", [], tmp_path / exercise.name, Sandbox.__new__(Sandbox), draw=7)
        assert verdict.results == []
    assert seen == [7, "none"]


@pytest.mark.parametrize("reason,expect,avoid", [
    ("disk", "512 MiB disk quota", "memory"),
    ("memory", "2 GiB memory limit", "disk"),
    ("killed", "killed by SIGKILL", "memory limit"),
    ("file size", "larger than", "memory"),
])
def test_the_reason_a_check_died_is_named(reason, expect, avoid):
    from autograder.function_checks import _death

    detail = {"disk": "it wrote more than the 512 MiB disk quota", "memory": "it went over the 2 GiB memory limit",
              "killed": "it was killed by SIGKILL (the system ran out of memory?)",
              "file size": "it wrote a file larger than 256 MiB"}[reason]
    message = _death(Outcome(-9, "", "", False, reason == "memory", 1.0, reason, detail), "during this case")
    assert expect in message and avoid not in message, message


@pytest.mark.slow
@pytest.mark.parametrize("prefix", ["", "thread", "unkillable"])
def test_a_function_check_ends_when_its_results_are_in(tmp_path, prefix):
    """A correct answer graded in seconds, whatever the answer cell leaves running: a non-daemon endless
    thread, or that plus ignored signals and a disabled ``os._exit`` (the grader's own kill ends it)."""
    sys.path.insert(0, str(Path(__file__).parent))
    from autograder_fixtures import solution_answer
    from secondorder.exercises import get_exercise

    from autograder.function_checks import check_function
    from autograder.hostile import THREAD

    answer = solution_answer()
    if prefix == "thread":
        answer = THREAD + answer
    elif prefix == "unkillable":
        answer = ("import os, signal\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\nos._exit = lambda *a: None\n"
                  + THREAD + answer)
    t0 = time.monotonic()
    verdict = check_function(get_exercise("sr1_update"), answer, ["import math", "import torch"], tmp_path / "check",
                             Sandbox(), extra_hide=[REPO / "lib"])
    assert verdict.status == "ok" and verdict.fraction == 1.0, verdict.summary()
    assert time.monotonic() - t0 < 30


@pytest.mark.slow
def test_a_notebook_run_ends_and_keeps_its_outputs_small(tmp_path):
    """One notebook with an endless thread, a setsid'd daemon, a 1 GiB print and (with bubblewrap) a disk
    filler: it runs to the end, well inside its limit, with the print cut to a note and the honest cells'
    outputs intact."""
    import nbformat
    from nbformat.v4 import new_code_cell, new_notebook

    from autograder.executors import run_notebook
    from autograder.hostile import THREAD

    cells = [THREAD + "print('thread started')",
             "import os, time\nif os.fork() == 0:\n    os.setsid()\n    if os.fork() == 0:\n"
             "        while True:\n            time.sleep(0.1)\n    os._exit(0)\nprint('daemon started')",
             "for _ in range(1024):\n    print('x' * (2**20 - 1))",
             "try:\n    with open('fill.bin', 'wb') as f:\n        for _ in range(1024):\n"
             "            f.write(b'\\0' * 2**20)\nexcept OSError as e:\n    print('refused', e.errno)",
             "import secondorder\nprint('library', secondorder.__name__)"]
    if not bwrap_available():        # without the tmpfs quota the filler is killed, and the run's outputs go
        cells[3] = "print('refused')"
    nb = new_notebook(cells=[new_code_cell(c) for c in cells])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    t0 = time.monotonic()
    text, status = run_notebook(nbformat.writes(nb), {}, tmp_path / "run", Sandbox(), 30, 90)
    assert status == "ok" and time.monotonic() - t0 < 60, status
    ran = nbformat.reads(text, as_version=4)
    shown = ["".join(o.get("text", "") for o in c.outputs) for c in ran.cells]
    assert shown[0] == "thread started\n" and shown[1] == "daemon started\n" and shown[4] == "library secondorder\n"
    assert "output cut" in shown[2] and len(shown[2]) < 3 * 2**20
    assert "refused" in shown[3], shown[3]
    assert len(text) < 4 * 2**20
