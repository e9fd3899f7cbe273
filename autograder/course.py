"""The grading folder is an nbgrader course: its config, its sources and its gradebook."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import nbformat
from nbgrader.apps import NbGraderAPI
from nbgrader.coursedir import CourseDirectory
from nbgrader.preprocessors import (
    CheckCellMetadata,
    ClearOutput,
    DeduplicateIds,
    OverwriteCells,
    OverwriteKernelspec,
)
from traitlets.config import Config

REPO = Path(__file__).resolve().parents[1]
COURSE = REPO / "course"

# nbgrader runs the `alembic` command of the environment it is installed in; make sure it is found
# even when Python was started by its full path without activating the environment.
_bin = str(Path(sys.executable).parent)
if _bin not in os.environ.get("PATH", "").split(os.pathsep):
    os.environ["PATH"] = _bin + os.pathsep + os.environ.get("PATH", "")

CONFIG_TEMPLATE = '''\
# nbgrader configuration of this grading folder, written by `python -m autograder grade`.
# Open the Formgrader here (e.g. `jupyter lab` in this folder, then Nbgrader > Formgrader) to grade
# the written answers by hand. Autograde only through `python -m autograder grade`: it runs each
# submission in a sandbox, which plain `nbgrader autograde` does not.
c = get_config()  # noqa: F821
c.CourseDirectory.root = {root!r}
c.CourseDirectory.db_url = {db_url!r}
c.CourseDirectory.source_directory = "source"
c.CourseDirectory.release_directory = "release"
c.OverwriteCells.add_missing_cells = True
c.ClearSolutions.code_stub = {{"python": "# YOUR CODE HERE\\nraise NotImplementedError()"}}
'''


def assignments_in_course(course: Path = COURSE) -> set[str]:
    """Assignment ids: the section folders of ``course`` that hold a notebook."""
    return {p.name for p in course.iterdir() if p.is_dir() and any(p.glob("*.ipynb"))}


def nbgrader_config(root: Path) -> Config:
    """The configuration nbgrader runs with in the grading folder ``root``."""
    c = Config()
    c.CourseDirectory.root = str(root)
    c.CourseDirectory.db_url = f"sqlite:///{root / 'gradebook.db'}"
    c.CourseDirectory.source_directory = "source"
    c.CourseDirectory.release_directory = "release"
    c.OverwriteCells.add_missing_cells = True
    c.NbGraderAPI.log_level = "WARN"
    return c


REPOSITORY_TOKEN = "@REPOSITORY@"     # in a notebook's source: the repository's URL (the Colab install line)
# A live demo's widgets in an output bundle; the same bundle carries the demo's static view (image/png).
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"


def repository_url() -> str:
    """The public repository's URL: ``[project.urls] Repository`` of ``pyproject.toml``."""
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib
    with open(REPO / "pyproject.toml", "rb") as f:
        return tomllib.load(f)["project"]["urls"]["Repository"]


def fill_repository(source: str) -> str:
    """``source`` with :data:`REPOSITORY_TOKEN` replaced by :func:`repository_url`."""
    return source.replace(REPOSITORY_TOKEN, repository_url()) if REPOSITORY_TOKEN in source else source


def copy_section(src: Path, dest: Path) -> None:
    """Copy a section's folder for nbgrader, with :data:`REPOSITORY_TOKEN` replaced in its notebooks.

    The replacement happens before nbgrader records its checksums of the locked cells, so that the
    release, Validate and the grader all see the same source.
    """
    shutil.copytree(src, dest, ignore=shutil.ignore_patterns(".ipynb_checkpoints", "__pycache__"))
    for path in dest.glob("*.ipynb"):
        text = path.read_text(encoding="utf-8")
        if REPOSITORY_TOKEN in text:
            path.write_text(fill_repository(text), encoding="utf-8")


def prepare(root: Path, assignments: list[str], course: Path = COURSE) -> NbGraderAPI:
    """Make ``root`` an nbgrader course holding ``assignments`` from ``course``; return its API."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "nbgrader_config.py").write_text(CONFIG_TEMPLATE.format(
        root=str(root), db_url=f"sqlite:///{root / 'gradebook.db'}"))
    config = nbgrader_config(root)
    api = NbGraderAPI(coursedir=CourseDirectory(config=config), config=config)
    for aid in assignments:
        dest = root / "source" / aid
        if dest.exists():
            shutil.rmtree(dest)
        copy_section(course / aid, dest)
        result = api.generate_assignment(aid, force=True, create=True)
        if not result["success"]:
            raise RuntimeError(f"nbgrader could not generate {aid}:\n{result.get('log')}\n{result.get('error')}")
    return api


def sanitize(nb: nbformat.NotebookNode, root: Path, student: str, assignment: str,
             notebook: str) -> nbformat.NotebookNode:
    """What nbgrader's autograde does before executing: clear outputs, restore locked and test cells."""
    config = nbgrader_config(root)
    resources = {"nbgrader": {"student": student, "assignment": assignment, "notebook": notebook,
                              "db_url": config.CourseDirectory.db_url}}
    for cls in (ClearOutput, DeduplicateIds, OverwriteKernelspec, OverwriteCells, CheckCellMetadata):
        nb, resources = cls(config=config).preprocess(nb, resources)
    return nb
