"""The JupyterHub configuration under deploy/ parses, agrees with itself, and works with nbgrader's exchange.

The round trip runs the hub's workflow on one machine with the shipped configuration (paths moved
into a temporary folder): release, a student's fetch and submit, collect, ``python -m autograder
grade`` on the collected folder, release and fetch of the feedback.
"""

import subprocess
from pathlib import Path

import nbformat
import pytest
from autograder_fixtures import MINI, make_course, release_of, solution_answer, with_answer
from secondorder.exercises import get_exercise
from traitlets.config import Config
from traitlets.config.loader import PyFileConfigLoader

from autograder.course import CONFIG_TEMPLATE

REPO = Path(__file__).resolve().parents[1]
DEPLOY = REPO / "deploy"
EXCHANGE = "/srv/nbgrader/exchange"


def _load(path: Path) -> Config:
    return PyFileConfigLoader(path.name, path=str(path.parent)).load_config()


def _values() -> dict:
    yaml = pytest.importorskip("yaml")
    return yaml.safe_load((DEPLOY / "z2jh" / "values.yaml").read_text())


def _z2jh_nbgrader_config() -> Config:
    source = _values()["singleuser"]["extraFiles"]["nbgrader-config"]["stringData"]
    config = Config()
    exec(compile(source, "values.yaml:nbgrader-config", "exec"), {"get_config": lambda: config})
    return config


def test_tljh_configs_set_course_and_exchange():
    everyone = _load(DEPLOY / "tljh" / "nbgrader_config.py")
    grader = _load(DEPLOY / "tljh" / "grader_nbgrader_config.py")
    assert everyone.Exchange.root == grader.Exchange.root == EXCHANGE
    assert everyone.CourseDirectory.course_id == grader.CourseDirectory.course_id
    # The grader's own config points at the grading folder, laid out as `python -m autograder grade` makes it;
    # release and collect run in the checkout, whose nbgrader_config.py (this repository's) makes it the root.
    assert grader.CourseDirectory.root == "/home/jupyter-grader/grading"
    made = Config()
    exec(CONFIG_TEMPLATE.format(root="/g", db_url="sqlite:////g/gradebook.db"), {"get_config": lambda: made})
    for key in ("source_directory", "release_directory"):
        assert getattr(grader.CourseDirectory, key) == getattr(made.CourseDirectory, key)
    ours = _load(REPO / "nbgrader_config.py")
    assert (ours.CourseDirectory.source_directory, ours.CourseDirectory.release_directory) == ("course", "assignments")
    setup = (DEPLOY / "tljh" / "setup.sh").read_text()
    assert f"EXCHANGE={EXCHANGE}" in setup and "GRADER=${GRADER:-jupyter-grader}" in setup
    assert "/home/$GRADER/grading" in setup and "COURSE_DIR=/home/$GRADER/secondorder" in setup
    assert subprocess.run(["bash", "-n", str(DEPLOY / "tljh" / "setup.sh")]).returncode == 0


def test_z2jh_values_mount_the_exchange_and_the_config():
    values = _values()
    single = values["singleuser"]
    assert single["image"]["name"] and single["image"]["tag"]
    claim = {v["name"]: v["persistentVolumeClaim"]["claimName"] for v in single["storage"]["extraVolumes"]}
    mounts = {m["name"]: m["mountPath"] for m in single["storage"]["extraVolumeMounts"]}
    assert mounts["nbgrader-exchange"] == EXCHANGE and "nbgrader-exchange" in claim
    import yaml
    pvc = next(yaml.safe_load_all((DEPLOY / "z2jh" / "exchange-pvc.yaml").read_text()))
    assert pvc["metadata"]["name"] == claim["nbgrader-exchange"] and "ReadWriteMany" in pvc["spec"]["accessModes"]
    assert single["extraFiles"]["nbgrader-config"]["mountPath"] == "/etc/jupyter/nbgrader_config.py"
    z2jh = _z2jh_nbgrader_config()
    tljh = _load(DEPLOY / "tljh" / "nbgrader_config.py")
    assert z2jh.CourseDirectory.course_id == tljh.CourseDirectory.course_id
    assert z2jh.Exchange.root == EXCHANGE
    assert "grader" in values["hub"]["config"]["Authenticator"]["admin_users"]


@pytest.mark.slow
def test_exchange_round_trip_with_the_shipped_config(tmp_path, monkeypatch):
    from nbgrader.apps import NbGraderAPI
    from nbgrader.auth import Authenticator
    from nbgrader.coursedir import CourseDirectory
    from nbgrader.exchange.default import ExchangeFetchAssignment, ExchangeFetchFeedback, ExchangeSubmit

    from autograder.grade import Grader

    exchange = tmp_path / "exchange"
    exchange.mkdir()
    exchange.chmod(0o1777)

    def config(*paths: Path, **course) -> Config:
        c = Config()
        for path in paths:                       # later files take precedence, as nbgrader loads them
            c.merge(_load(path))
        c.Exchange.root = str(exchange)
        for k, v in course.items():
            setattr(c.CourseDirectory, k, v)
        c.NbGraderAPI.log_level = "WARN"
        return c

    def api(c: Config) -> NbGraderAPI:
        return NbGraderAPI(coursedir=CourseDirectory(config=c), config=c)

    # The grader's checkout: course/ and the release that `python -m autograder build` writes.
    checkout = tmp_path / "secondorder"
    course = make_course(checkout)
    release_of(course, checkout / "assignments")
    grader = config(DEPLOY / "tljh" / "nbgrader_config.py", DEPLOY / "tljh" / "grader_nbgrader_config.py",
                    REPO / "nbgrader_config.py", root=str(checkout))
    result = api(grader).release_assignment(MINI)
    assert result["success"], result

    # A student: fetch, answer, submit. nbgrader's student id is the login name, or JUPYTERHUB_USER when
    # the login name is jovyan (Zero to JupyterHub's pods): the latter lets one test process be alice.
    import nbgrader.utils
    monkeypatch.setattr(nbgrader.utils, "get_osusername", lambda: "jovyan")
    monkeypatch.setenv("JUPYTERHUB_USER", "alice")
    home = tmp_path / "alice"
    home.mkdir()
    student = config(DEPLOY / "tljh" / "nbgrader_config.py", assignment_id=MINI)
    student.Exchange.assignment_dir = str(home)
    student.Exchange.cache = str(tmp_path / "alice-cache")
    for app in (ExchangeFetchAssignment, ExchangeSubmit):
        if app is ExchangeSubmit:
            path = home / MINI / f"{MINI}.ipynb"
            nb = nbformat.read(path, as_version=4)
            nbformat.write(with_answer(nb, "sr1_update", solution_answer()), path)
        app(coursedir=CourseDirectory(config=student), authenticator=Authenticator(config=student),
            config=student).start()
    monkeypatch.delenv("JUPYTERHUB_USER")

    # Collect, then grade the collected folder as it is.
    result = api(grader).collect(MINI)
    assert result["success"], result
    collected = checkout / "submitted" / "alice" / MINI
    assert {p.name for p in collected.iterdir()} >= {f"{MINI}.ipynb", "timestamp.txt", "submission_secret.txt"}
    grading = tmp_path / "grading"
    rows = Grader(grading, course=course, execute=False).grade(checkout / "submitted")
    assert {(r["student_id"], r["grade_id"]): r["status"] for r in rows}[("alice", "test_sr1_update")] == "ok"
    feedback = grading / "feedback" / "alice" / MINI
    assert {"timestamp.txt", "submission_secret.txt", f"{MINI}.html"} <= {p.name for p in feedback.iterdir()}

    # Release the feedback from the grading folder; the student fetches it.
    result = api(config(DEPLOY / "tljh" / "nbgrader_config.py", DEPLOY / "tljh" / "grader_nbgrader_config.py",
                        grading / "nbgrader_config.py", root=str(grading))).release_feedback(MINI)
    assert result["success"], result
    monkeypatch.setenv("JUPYTERHUB_USER", "alice")
    ExchangeFetchFeedback(coursedir=CourseDirectory(config=student), authenticator=Authenticator(config=student),
                          config=student).start()
    fetched = list((home / MINI / "feedback").rglob(f"{MINI}.html"))
    total = len(get_exercise("sr1_update").cases())                  # visible and hidden
    assert len(fetched) == 1 and f"{total}/{total} checks passed" in fetched[0].read_text()


def test_grading_into_the_submissions_folder_is_refused(tmp_path):
    from autograder.grade import Grader
    from autograder.submissions import SubmissionsError

    course = make_course(tmp_path / "c")
    (tmp_path / "course" / "submitted" / "alice" / MINI).mkdir(parents=True)
    with pytest.raises(SubmissionsError, match="inside the grading folder"):
        Grader(tmp_path / "course", course=course, execute=False).grade(tmp_path / "course" / "submitted")
