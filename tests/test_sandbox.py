"""The grading sandbox with and without bubblewrap: what each mode promises, in a second or two."""

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from autograder.sandbox import NO_BWRAP_ENV, Limits, Sandbox, bwrap_available

REPO = Path(__file__).resolve().parents[1]
needs_isolation = pytest.mark.skipif(not bwrap_available(), reason="checks the sandbox's isolation: needs "
                                     "bubblewrap (apt-get install bubblewrap)")

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
def test_a_run_writes_only_its_folder_sees_no_hidden_path_and_has_no_network(tmp_path):
    work = tmp_path / "work"
    outside = Path(tempfile.mkdtemp(dir="/var/tmp"))        # not under /tmp: the sandbox has its own /tmp
    try:
        (outside / "secret").mkdir()
        (outside / "secret" / "gradebook.db").write_text("grades")
        outcome = Sandbox(hide=[outside / "secret"]).run(
            [sys.executable, "-c", ESCAPE, str(work / "mine"), str(outside / "theirs"),
             str(outside / "secret" / "gradebook.db")], work, Limits(wall_s=30))
        assert outcome.ok, outcome.stderr
        assert outcome.stdout.split() == ["wrote", "blocked", "hidden", "no", "network"], outcome.stdout
        assert (work / "mine").exists() and not (outside / "theirs").exists()
    finally:
        shutil.rmtree(outside)


def test_make_test_and_the_readme_name_the_system_packages():
    makefile, readme = (REPO / "Makefile").read_text(), (REPO / "README.md").read_text()
    for package in ("bubblewrap", "chromium"):
        assert f"apt-get install {package}" in makefile and f"apt-get install {package}" in readme
