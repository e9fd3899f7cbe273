"""``make assignments``: generate the student release and the worked solutions from ``course/``.

- ``assignments/<id>/``: nbgrader's student version (solutions replaced by stubs, hidden tests
  removed), with each static figure embedded where the source asks for it.
- ``solutions/<id>/``: the instructor notebook without hidden tests, executed, with outputs.

A code cell tagged ``figure:NAME`` draws a figure; a markdown cell tagged ``static:NAME`` receives
that figure as an attachment, so readers without a live kernel still see the demo.
``--check`` rebuilds in a temporary folder without executing and reports files that differ from
what is committed (outputs and figure bytes aside).
"""

from __future__ import annotations

import copy
import json
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

from .course import COURSE, REPO  # also puts the environment's bin/ on PATH for nbgrader

RELEASE, SOLUTIONS = REPO / "assignments", REPO / "solutions"
EXECUTE_TIMEOUT_S = 600


def _sections(ids: list[str] | None) -> list[str]:
    found = sorted(p.name for p in COURSE.iterdir() if p.is_dir() and (p / f"{p.name}.ipynb").exists())
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
    return nb


def generate_release(aid: str, dest: Path) -> Path:
    """nbgrader's student version of ``course/<aid>`` written to ``dest/<aid>``."""
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        shutil.copytree(COURSE / aid, root / "source" / aid,
                        ignore=shutil.ignore_patterns(".ipynb_checkpoints", "__pycache__"))
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


def solution_source(aid: str) -> nbformat.NotebookNode:
    """The instructor notebook with the hidden tests removed (not executed)."""
    nb = nbformat.read(COURSE / aid / f"{aid}.ipynb", as_version=4)
    nb, _ = ClearHiddenTests().preprocess(nb, {})
    return _normalize(nb)


def execute(nb: nbformat.NotebookNode, workdir: Path) -> nbformat.NotebookNode:
    """Execute ``nb`` in ``workdir`` with the current environment's python3 kernel."""
    nbclient.NotebookClient(nb, timeout=EXECUTE_TIMEOUT_S, kernel_name="python3",
                            resources={"metadata": {"path": str(workdir)}}).execute()
    return nb


def figures(executed: nbformat.NotebookNode) -> dict[str, str]:
    """``{NAME: base64 PNG}`` from the code cells tagged ``figure:NAME``."""
    found = {}
    for cell in executed.cells:
        for tag in cell.metadata.get("tags", []):
            if tag.startswith("figure:") and cell.cell_type == "code":
                for output in cell.get("outputs", []):
                    png = output.get("data", {}).get("image/png")
                    if png:
                        found[tag.split(":", 1)[1]] = png
    return found


def embed(nb: nbformat.NotebookNode, images: dict[str, str]) -> nbformat.NotebookNode:
    """Attach each figure to the markdown cell tagged ``static:NAME`` and show it there."""
    for cell in nb.cells:
        for tag in cell.metadata.get("tags", []):
            if tag.startswith("static:") and cell.cell_type == "markdown":
                name = tag.split(":", 1)[1]
                if name not in images:
                    raise RuntimeError(f"no code cell tagged figure:{name} produced a PNG")
                cell.attachments = {f"{name}.png": {"image/png": images[name]}}
                link = f"![{name}](attachment:{name}.png)"
                if link not in cell.source:
                    cell.source = cell.source.rstrip() + "\n\n" + link
    return nb


def build_one(aid: str) -> None:
    """Regenerate ``assignments/<aid>`` and ``solutions/<aid>``."""
    release = generate_release(aid, RELEASE)
    sol_dir = SOLUTIONS / aid
    if sol_dir.exists():
        shutil.rmtree(sol_dir)
    shutil.copytree(COURSE / aid, sol_dir, ignore=shutil.ignore_patterns("*.ipynb", ".ipynb_checkpoints",
                                                                          "__pycache__"))
    nb = execute(solution_source(aid), sol_dir)
    images = figures(nb)
    nbformat.write(_normalize(embed(nb, images)), sol_dir / f"{aid}.ipynb")
    rel_path = release / f"{aid}.ipynb"
    nbformat.write(embed(nbformat.read(rel_path, as_version=4), images), rel_path)


def _strip_for_compare(nb: nbformat.NotebookNode) -> dict:
    """The notebook without what a build may legitimately change: outputs, ids and embedded figures."""
    nb = copy.deepcopy(nb)
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
        if any(t.startswith("static:") for t in cell.metadata.get("tags", [])):
            cell.source, cell.attachments = "<static figure>", {}
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
    sol = SOLUTIONS / aid / f"{aid}.ipynb"
    if not sol.exists():
        problems.append(f"solutions/{aid}/{aid}.ipynb is missing")
    else:
        new = _strip_for_compare(solution_source(aid))
        old = _strip_for_compare(nbformat.read(sol, as_version=4))
        if new["cells"] != old["cells"]:
            problems.append(f"solutions/{aid}/{aid}.ipynb differs from course/{aid}")
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
