"""Students get no instructor tools; instructors get them on a grading folder; the release has one path.

Each server test starts a real JupyterLab (loopback, random token, ``--allow-root`` as root) the way a make
target does, and asks it over HTTP: the page config served in ``/lab`` (``disabledExtensions``, which is
what JupyterLab's front end obeys), and the routes of nbgrader's server extensions (``/formgrader`` is
the Formgrader's, ``/assignments/validate`` Validate's: 405 to a GET when loaded, 404 when not).

- ``make lab`` (students): the Formgrader, Create Assignment, the Nbgrader menu and the assignment and
  course lists are off, lab plugins and server extensions; Validate stays.
- ``make lab-instructor`` (instructors): all on, even over a student configuration lower on the path (as
  on a hub, whose environment turns the Formgrader off); the Formgrader's course is the grading folder,
  never the repository's ``course/``, so its Generate and Release never write ``assignments/``.
- postBuild (Binder) turns off what the student configuration turns off.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import nbformat
import pytest
from browser.labserver import _free_port, stop
from test_repo import postbuild_commands
from traitlets.config.loader import PyFileConfigLoader

REPO = Path(__file__).resolve().parents[1]
STUDENT = REPO / "deploy" / "jupyter" / "student"
INSTRUCTOR = REPO / "deploy" / "jupyter" / "instructor"
JUPYTER = Path(sys.executable).parent / "jupyter"
NBGRADER = "@jupyter/nbgrader:"
INSTRUCTOR_PLUGINS = {NBGRADER + p for p in ("menu", "formgrader", "create-assignment", "assignment-list",
                                             "course-list")}
VALIDATE_PLUGIN = NBGRADER + "validate-assignment"
INSTRUCTOR_SERVER = {"nbgrader.server_extensions." + m for m in ("formgrader", "assignment_list", "course_list")}
VALIDATE_SERVER = "nbgrader.server_extensions.validate_assignment"
START_TIMEOUT_S = 60


class Server:
    """A JupyterLab started by ``cmd`` in its own process group, asked over HTTP with its token."""

    def __init__(self, cmd: list[str], cwd: Path, port: int, token: str, env: dict[str, str], log: Path):
        self.url, self.token, self.log = f"http://127.0.0.1:{port}", token, log
        with open(log, "wb") as out:
            self.proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{shlex.join(cmd)} exited with {self.proc.returncode}:\n{self.tail()}")
            try:
                self.get("/api/status")
                return
            except OSError:
                if time.monotonic() > deadline:
                    self.close()
                    raise RuntimeError(f"no answer on {self.url} within {START_TIMEOUT_S} s:\n{self.tail()}") from None
                time.sleep(0.2)

    def get(self, path: str) -> tuple[int, str]:
        req = urllib.request.Request(self.url + path, headers={"Authorization": f"token {self.token}"})
        try:
            with urllib.request.urlopen(req, timeout=30) as resp:
                return resp.status, resp.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, ""

    def page_config(self) -> dict:
        status, html = self.get("/lab")
        assert status == 200, f"/lab answered {status}"
        found = re.search(r'<script id="jupyter-config-data" type="application/json">(.*?)</script>', html, re.S)
        assert found, "no page config in /lab"
        return json.loads(found.group(1))

    def loaded(self, route: str) -> bool:
        """Whether a server extension's handler answers ``route`` (any answer but 404)."""
        return self.get(route)[0] != 404

    def tail(self, n: int = 3000) -> str:
        return self.log.read_text(errors="replace")[-n:]

    def close(self) -> None:
        """The process group this test started: the make (if any), its shell and the server."""
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        stop(self.proc)


def _env(tmp: Path, token: str, **extra: str) -> dict[str, str]:
    """The environment of a server: its token, and its settings, workspaces and runtime files in ``tmp``."""
    env = dict(os.environ, JUPYTER_TOKEN=token, JUPYTERLAB_SETTINGS_DIR=str(tmp / "settings"),
               JUPYTERLAB_WORKSPACES_DIR=str(tmp / "workspaces"), JUPYTER_RUNTIME_DIR=str(tmp / "runtime"),
               PATH=f"{JUPYTER.parent}{os.pathsep}{os.environ.get('PATH', '')}", PYTHONUNBUFFERED="1")
    env.pop("JUPYTER_CONFIG_PATH", None)
    env.update(extra)
    return env


def _needs_make():
    if shutil.which("make") is None:
        pytest.skip("no make")
    # The targets depend on the environment's stamp: run them only where that installs nothing.
    if subprocess.run(["make", "-q", ".venv/.installed"], cwd=REPO).returncode != 0:
        pytest.skip("the environment is not up to date (make env): the target would install first")


def _make(target: str, tmp: Path, *args: str, **env: str) -> Server:
    _needs_make()
    port, token = _free_port(), os.urandom(16).hex()
    return Server(["make", "--no-print-directory", target, f"PORT={port}", *args], REPO, port, token,
                  _env(tmp, token, **env), tmp / f"{target}.log")


def _jupyter_lab(root: Path, cwd: Path, tmp: Path, config_path: list[Path]) -> Server:
    """``jupyter lab`` serving ``root`` from ``cwd``, with ``config_path`` first on JUPYTER_CONFIG_PATH."""
    port, token = _free_port(), os.urandom(16).hex()
    cmd = [str(JUPYTER), "lab", "--no-browser", "--ip", "127.0.0.1", "--port", str(port),
           "--ServerApp.port_retries=0", f"--ServerApp.root_dir={root}"]
    if os.geteuid() == 0:
        cmd.append("--allow-root")
    env = _env(tmp, token, JUPYTER_CONFIG_PATH=os.pathsep.join(map(str, config_path)))
    return Server(cmd, cwd, port, token, env, tmp / "lab.log")


def _assert_student(server: Server) -> None:
    config = server.page_config()
    disabled = set(config["disabledExtensions"])
    assert INSTRUCTOR_PLUGINS <= disabled, f"still on for students: {sorted(INSTRUCTOR_PLUGINS - disabled)}"
    assert VALIDATE_PLUGIN not in disabled, "students need Validate"
    assert any(e["name"] == "@jupyter/nbgrader" for e in config["federated_extensions"]), \
        "nbgrader's lab extension is not served at all (Validate lives in it)"
    assert not server.loaded("/formgrader"), "the Formgrader's server extension is loaded for students"
    assert not server.loaded("/formgraders"), "the course list's server extension is loaded for students"
    assert server.loaded("/assignments/validate"), "Validate's server extension is not loaded"


def _assert_instructor(server: Server) -> None:
    disabled = set(server.page_config()["disabledExtensions"])
    assert not (INSTRUCTOR_PLUGINS | {VALIDATE_PLUGIN}) & disabled, f"off for the instructor: {sorted(disabled)}"
    status, _ = server.get("/formgrader")
    assert status == 200, f"/formgrader answered {status}:\n{server.tail()}"
    assert server.loaded("/assignments/validate")


def _grading_folder(root: Path, assignment: str) -> Path:
    """A grading folder as ``python -m autograder grade`` makes it, its source holding ``assignment``."""
    from autograder.course import CONFIG_TEMPLATE
    (root / "source" / assignment).mkdir(parents=True)
    nbformat.write(nbformat.v4.new_notebook(), root / "source" / assignment / f"{assignment}.ipynb")
    (root / "nbgrader_config.py").write_text(CONFIG_TEMPLATE.format(
        root=str(root), db_url=f"sqlite:///{root / 'gradebook.db'}"))
    return root


def _formgrader_assignments(server: Server) -> set[str]:
    status, body = server.get("/formgrader/api/assignments")
    assert status == 200, f"the Formgrader's assignment list answered {status}:\n{server.tail()}"
    return {a["name"] for a in json.loads(body)}


# --- the configuration folders, read as JupyterLab and jupyter_server read them -------------------------------

def _student_lists() -> tuple[set[str], set[str]]:
    page = json.loads((STUDENT / "labconfig" / "page_config.json").read_text())["disabledExtensions"]
    server = json.loads((STUDENT / "jupyter_server_config.json").read_text())["ServerApp"]["jpserver_extensions"]
    return {k for k, v in page.items() if v}, {k for k, v in server.items() if not v}


def test_postbuild_hides_what_make_lab_hides():
    """Binder (postBuild) and ``make lab`` (deploy/jupyter/student) turn off the same tools."""
    commands = postbuild_commands()
    lab = {a for c in commands if c[:3] == ["jupyter", "labextension", "disable"] for a in c[3:]
           if not a.startswith("-")}
    server = {a for c in commands if c[:4] == ["jupyter", "server", "extension", "disable"] for a in c[4:]
              if not a.startswith("-")}
    student_lab, student_server = _student_lists()
    assert lab == student_lab == INSTRUCTOR_PLUGINS
    assert server == student_server == INSTRUCTOR_SERVER


def test_the_instructor_folder_turns_on_what_the_student_folder_turns_off():
    page = json.loads((INSTRUCTOR / "labconfig" / "page_config.json").read_text())["disabledExtensions"]
    server = json.loads((INSTRUCTOR / "jupyter_server_config.json").read_text())["ServerApp"]["jpserver_extensions"]
    student_lab, student_server = _student_lists()
    # An explicit false (not a missing key) is what overrides an "off" lower on the config path.
    assert {k for k, v in page.items() if v is False} >= student_lab | {VALIDATE_PLUGIN}
    assert {k for k, v in server.items() if v is True} >= student_server | {VALIDATE_SERVER}


def test_the_repository_gradebook_stays_out_of_the_repository_root():
    config = PyFileConfigLoader("nbgrader_config.py", path=str(REPO)).load_config()
    db = config.CourseDirectory.db_url
    assert db.startswith("sqlite:///"), db
    path = Path(db[len("sqlite:///"):])
    assert path.parent != REPO and path.is_relative_to(REPO / "build"), f"{path}: not in the git-ignored build/"
    ignored = subprocess.run(["git", "check-ignore", "-q", str(path)], cwd=REPO).returncode == 0
    assert ignored or not (REPO / ".git").exists(), f"{path} is not git-ignored"


# --- real servers ---------------------------------------------------------------------------------------------

def test_make_lab_is_the_student_view(tmp_path):
    server = _make("lab", tmp_path)
    try:
        _assert_student(server)
    finally:
        server.close()


def test_make_lab_instructor_opens_the_formgrader_on_the_grading_folder(tmp_path):
    """Over a student configuration already on JUPYTER_CONFIG_PATH (a hub's "off"), the instructor's is first."""
    grading = _grading_folder(tmp_path / "grading", "only_in_grading")
    server = _make("lab-instructor", tmp_path, f"OUT={grading}", JUPYTER_CONFIG_PATH=str(STUDENT))
    try:
        _assert_instructor(server)
        assert _formgrader_assignments(server) == {"only_in_grading"}
    finally:
        server.close()
    assert (grading / "gradebook.db").exists(), "the Formgrader's gradebook is not the grading folder's"


def test_instructor_lab_in_the_repository_grades_the_grading_folder_not_the_course(tmp_path):
    """``make lab-instructor``'s default layout: the repository served, the server started in ./grading.

    The Formgrader (whose config is the working directory's nbgrader_config.py) must list the grading
    folder's assignments, not the repository's ``course/``: its Generate and Release then never touch
    ``assignments/``. A scratch copy of the repository's nbgrader_config.py stands for the repository.
    """
    repo = tmp_path / "repo"
    (repo / "course" / "only_in_course").mkdir(parents=True)
    nbformat.write(nbformat.v4.new_notebook(), repo / "course" / "only_in_course" / "only_in_course.ipynb")
    shutil.copyfile(REPO / "nbgrader_config.py", repo / "nbgrader_config.py")
    grading = _grading_folder(repo / "grading", "only_in_grading")
    server = _jupyter_lab(repo, grading, tmp_path, [INSTRUCTOR, STUDENT])
    try:
        _assert_instructor(server)
        assert _formgrader_assignments(server) == {"only_in_grading"}
    finally:
        server.close()
    assert not (repo / "gradebook.db").exists()
    assert not (repo / "assignments").exists()
