"""``make assignments``: generate the student release and the worked solutions from ``course/``.

- ``assignments/<id>/``: nbgrader's student version (solutions replaced by stubs, hidden tests
  removed), with each static figure embedded where the source asks for it.
- ``solutions/<id>/``: the instructor notebook without hidden tests, executed, with outputs.

A code cell tagged ``demo`` shows a live demo (``secondorder.demo.Demo.show``), whose output also
carries a static view (``image/png``). The release ships that static view as the cell's output, so
a reader sees the demo before running anything; running the cell replaces it with the live widgets.
The Colab install line of the set-up cell gets the repository named in ``pyproject.toml``.
``--check`` rebuilds in a temporary folder without executing and reports files that differ from
what is committed (outputs and figure bytes aside).
"""

from __future__ import annotations

import copy
import json
import re
import shutil
import sys
import tempfile
from pathlib import Path

import nbclient
import nbformat
from nbgrader.apps import NbGraderAPI
from nbgrader.coursedir import CourseDirectory
from nbgrader.preprocessors import ClearHiddenTests
from traitlets.config import Config

# Importing .course also puts the environment's bin/ on PATH for nbgrader; repository_url is re-exported.
from .course import COURSE, REPO, copy_section, fill_repository, repository_url  # noqa: F401

RELEASE, SOLUTIONS = REPO / "assignments", REPO / "solutions"
EXECUTE_TIMEOUT_S = 600
SOLUTION_DELIMITER = re.compile(r"^[ \t]*### (BEGIN|END) SOLUTION[ \t]*$\n?", re.M)


def _sections(ids: list[str] | None) -> list[str]:
    """The assignments of ``course/`` (every folder holding a notebook), or those of ``ids``."""
    found = sorted(p.name for p in COURSE.iterdir() if p.is_dir() and any(p.glob("*.ipynb")))
    if ids:
        unknown = set(ids) - set(found)
        if unknown:
            raise SystemExit(f"unknown sections {sorted(unknown)}; course/ has {found}")
        return [i for i in found if i in ids]
    return found


def _normalize(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    nb.metadata.pop("autograder_run", None)
    for cell in nb.cells:
        cell.metadata.pop("execution", None)
        if cell.cell_type == "code":
            cell.source = fill_repository(cell.source)
    return nb


def generate_release(aid: str, dest: Path) -> Path:
    """nbgrader's student version of ``course/<aid>`` written to ``dest/<aid>``."""
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        copy_section(COURSE / aid, root / "source" / aid)    # the repository filled in before checksums
        c = Config()
        c.CourseDirectory.root = str(root)
        c.CourseDirectory.db_url = f"sqlite:///{root / 'gradebook.db'}"
        c.CourseDirectory.source_directory = "source"
        c.CourseDirectory.release_directory = "release"
        c.ClearSolutions.code_stub = {"python": "# YOUR CODE HERE\nraise NotImplementedError()"}
        c.NbGraderAPI.log_level = "WARN"
        api = NbGraderAPI(coursedir=CourseDirectory(config=c), config=c)
        result = api.generate_assignment(aid, force=True, create=True)
        if not result["success"]:
            raise RuntimeError(f"nbgrader could not generate {aid}:\n{result.get('log')}\n{result.get('error')}")
        out = dest / aid
        if out.exists():
            shutil.rmtree(out)
        shutil.copytree(root / "release" / aid, out)
    for path in out.glob("*.ipynb"):
        nbformat.write(_normalize(nbformat.read(path, as_version=4)), path)
    return out


def notebooks(aid: str) -> list[str]:
    """The notebook names of assignment ``aid`` (a section has one, named as its folder)."""
    return sorted(p.stem for p in (COURSE / aid).glob("*.ipynb"))


def solution_source(aid: str, name: str | None = None) -> nbformat.NotebookNode:
    """The instructor notebook ``name`` (default: the section's own) with the hidden tests removed (not executed)."""
    nb = nbformat.read(COURSE / aid / f"{name or aid}.ipynb", as_version=4)
    nb, _ = ClearHiddenTests().preprocess(nb, {})
    for cell in nb.cells:       # a written answer's model answer reads as prose, without nbgrader's markers
        if cell.cell_type == "markdown":
            cell.source = SOLUTION_DELIMITER.sub("", cell.source)
    return _normalize(nb)


def execute(nb: nbformat.NotebookNode, workdir: Path) -> nbformat.NotebookNode:
    """Execute ``nb`` in ``workdir`` with the current environment's python3 kernel."""
    nbclient.NotebookClient(nb, timeout=EXECUTE_TIMEOUT_S, kernel_name="python3",
                            resources={"metadata": {"path": str(workdir)}}).execute()
    return nb


def run_all(nb: nbformat.NotebookNode, workdir: Path, timeout: float = EXECUTE_TIMEOUT_S) -> list[str]:
    """Execute ``nb`` in place as JupyterLab's Run All does; return what stopped it (empty: nothing).

    Only cells tagged ``raises-exception`` (the visible checks) may raise and let the run go on, as in
    JupyterLab and nbclient; any other error stops the run and is returned as "cell N (grade_id): error".
    """
    try:
        nbclient.NotebookClient(nb, timeout=timeout, kernel_name="python3", allow_errors=False,
                                resources={"metadata": {"path": str(workdir)}}).execute()
    except nbclient.exceptions.CellExecutionError as exc:
        index = next((i for i, c in enumerate(nb.cells) if c.cell_type == "code" and any(
            o.get("output_type") == "error" for o in c.get("outputs", []))
            and "raises-exception" not in c.metadata.get("tags", [])), None)
        where = f"cell {index} ({_grade_id(nb.cells[index])})" if index is not None else "a cell"
        return [f"{where}: {exc.ename}: {exc.evalue}"]
    return []


def _grade_id(cell) -> str | None:
    return cell.metadata.get("nbgrader", {}).get("grade_id")


def static_views(executed: nbformat.NotebookNode) -> dict[str, nbformat.NotebookNode]:
    """``{grade_id: output}``: the static view (``image/png``) each cell tagged ``demo`` displayed."""
    found = {}
    for cell in executed.cells:
        if cell.cell_type != "code" or "demo" not in cell.metadata.get("tags", []):
            continue
        for output in cell.get("outputs", []):
            png = output.get("data", {}).get("image/png")
            if png:
                found[_grade_id(cell)] = nbformat.v4.new_output(
                    "display_data", data={"image/png": png, "text/plain": output["data"].get("text/plain", "")})
        if _grade_id(cell) not in found:
            raise RuntimeError(f"the demo cell {_grade_id(cell)!r} displayed no static view (Demo.show())")
    return found


def ship_static_views(nb: nbformat.NotebookNode, views: dict[str, nbformat.NotebookNode]) -> nbformat.NotebookNode:
    """Give each ``demo`` cell of an unexecuted notebook its static view as its only output."""
    for cell in nb.cells:
        if cell.cell_type == "code" and _grade_id(cell) in views:
            cell.outputs = [copy.deepcopy(views[_grade_id(cell)])]
    return nb


def build_one(aid: str) -> None:
    """Regenerate ``assignments/<aid>`` and ``solutions/<aid>``."""
    release = generate_release(aid, RELEASE)
    sol_dir = SOLUTIONS / aid
    if sol_dir.exists():
        shutil.rmtree(sol_dir)
    shutil.copytree(COURSE / aid, sol_dir, ignore=shutil.ignore_patterns("*.ipynb", ".ipynb_checkpoints",
                                                                          "__pycache__"))
    for name in notebooks(aid):
        nb = execute(solution_source(aid, name), sol_dir)
        views = static_views(nb)
        nbformat.write(_normalize(nb), sol_dir / f"{name}.ipynb")
        rel_path = release / f"{name}.ipynb"
        nbformat.write(ship_static_views(nbformat.read(rel_path, as_version=4), views), rel_path)


def _strip_for_compare(nb: nbformat.NotebookNode) -> dict:
    """The notebook without what a build may legitimately change: outputs (static views included) and ids."""
    nb = copy.deepcopy(nb)
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
        if not cell.get("attachments"):
            cell.pop("attachments", None)
        cell.pop("id", None)
    return json.loads(json.dumps(nb, sort_keys=True))


def stale(aid: str) -> list[str]:
    """Generated files of ``aid`` that differ from a fresh build (ignoring outputs and image bytes)."""
    problems = []
    with tempfile.TemporaryDirectory() as tmp:
        fresh = generate_release(aid, Path(tmp))
        for path in sorted(fresh.rglob("*")):
            if path.is_dir():
                continue
            committed = RELEASE / aid / path.relative_to(fresh)
            if not committed.exists():
                problems.append(f"assignments/{aid}/{path.relative_to(fresh)} is missing")
            elif path.suffix == ".ipynb":
                new = _strip_for_compare(nbformat.read(path, as_version=4))
                old = _strip_for_compare(nbformat.read(committed, as_version=4))
                if new != old:
                    problems.append(f"assignments/{aid}/{path.name} differs from course/{aid}")
            elif path.read_bytes() != committed.read_bytes():
                problems.append(f"assignments/{aid}/{path.relative_to(fresh)} differs from course/{aid}")
    for name in notebooks(aid):
        sol = SOLUTIONS / aid / f"{name}.ipynb"
        if not sol.exists():
            problems.append(f"solutions/{aid}/{name}.ipynb is missing")
            continue
        new = _strip_for_compare(solution_source(aid, name))
        old = _strip_for_compare(nbformat.read(sol, as_version=4))
        if new["cells"] != old["cells"]:
            problems.append(f"solutions/{aid}/{name}.ipynb differs from course/{aid}")
    return problems


def shared_pages() -> list[Path]:
    """The course-wide pages (course map, notation) that both generated views carry."""
    return sorted(COURSE.glob("*.md"))


def copy_shared_pages() -> None:
    for page in shared_pages():
        for dest in (RELEASE, SOLUTIONS):
            dest.mkdir(exist_ok=True)
            shutil.copyfile(page, dest / page.name)


def stale_shared_pages() -> list[str]:
    return [f"{dest.name}/{page.name} differs from course/{page.name}" for page in shared_pages()
            for dest in (RELEASE, SOLUTIONS)
            if not (dest / page.name).exists() or (dest / page.name).read_bytes() != page.read_bytes()]


def build(ids: list[str] | None = None, check: bool = False) -> int:
    """Build (or with ``check`` only verify) the generated views of the given sections."""
    sections = _sections(ids)
    if check:
        problems = stale_shared_pages() + [p for aid in sections for p in stale(aid)]
        for p in problems:
            print(p)
        if problems:
            print("run `make assignments` to regenerate", file=sys.stderr)
        return 1 if problems else 0
    copy_shared_pages()
    for aid in sections:
        print(f"building {aid} ...", flush=True)
        build_one(aid)
    return 0
