"""Every section of the course: generated views up to date, execution budget, grading self-test."""

import ast
import inspect
import json
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest
from secondorder.exercises import EXERCISES

from autograder import selftest
from autograder.build import _sections, stale, stale_shared_pages
from autograder.sandbox import Sandbox

REPO = Path(__file__).resolve().parents[1]
SECTIONS = _sections(None)
BUDGET_S = 60.0
BUDGET_BYTES = 1.5 * 2**30
MARGIN = 1.5          # 2 busy cores vary; the budget is what a section is written for


def test_there_are_sections():
    assert SECTIONS, "course/ holds no section notebooks"


def test_shared_pages_up_to_date():
    assert not stale_shared_pages(), "run `make assignments`"


@pytest.mark.parametrize("aid", SECTIONS)
def test_generated_views_up_to_date(aid):
    problems = stale(aid)
    assert not problems, "\n".join(problems) + "\nrun `make assignments`"


@pytest.mark.slow
@pytest.mark.parametrize("aid", SECTIONS)
def test_source_notebook_runs_within_budget(aid, tmp_path):
    """The instructor notebook, solutions in place, runs top to bottom in ~60 s and ~1.5 GB."""
    # The kernel is a child of this script's process: its peak RSS shows up in RUSAGE_CHILDREN there.
    script = (
        "import nbformat, nbclient, resource, sys\n"
        "nb = nbformat.read(sys.argv[1], as_version=4)\n"
        "nbclient.NotebookClient(nb, timeout=600, kernel_name='python3',"
        " resources={'metadata': {'path': sys.argv[2]}}).execute()\n"
        "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024)\n"
    )
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", script, str(REPO / "course" / aid / f"{aid}.ipynb"),
                           str(REPO / "course" / aid)], capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    assert proc.returncode == 0, proc.stderr[-3000:]
    peak = int(proc.stdout.strip().splitlines()[-1])
    print(f"{aid}: {seconds:.1f} s, kernel peak {peak / 2**30:.2f} GiB")
    assert seconds <= BUDGET_S * MARGIN, f"{aid} took {seconds:.0f} s (budget {BUDGET_S:.0f} s)"
    assert peak <= BUDGET_BYTES * 1.2, f"{aid} peaked at {peak / 2**30:.2f} GiB (budget 1.5 GiB)"


@pytest.mark.slow
@pytest.mark.skipif(not Sandbox().has_bwrap, reason="bubblewrap is not installed (CI installs it)")
@pytest.mark.parametrize("aid", SECTIONS)
def test_grading_self_test(aid, tmp_path):
    """Solution: full marks. Blank release: 0, no crash. Every mutant: loses points, with its explanation."""
    report = selftest.run([aid], out=tmp_path)[aid]
    print(json.dumps({k: v for k, v in report.items() if not k.endswith("_rows")}, indent=1))
    assert report["solution_full"], report["solution_rows"]
    assert report["blank_zero"], report["blank_rows"]
    print(f"{aid}: mutation score {report['killed']}/{report['mutants']}")
    assert not report["survivors"], f"mutants that kept full marks: {report['survivors']}"
    assert not report["missing_hints"], report["missing_hints"]


@pytest.mark.parametrize("aid", SECTIONS)
def test_graded_cells_match_the_library(aid):
    """Each answer cell's grade_id names an exercise, and its stub has the reference's exact signature."""
    release = nbformat.read(REPO / "assignments" / aid / f"{aid}.ipynb", as_version=4)
    answers = [c for c in release.cells if c.cell_type == "code"
               and c.metadata.get("nbgrader", {}).get("solution")]
    assert answers, f"{aid} has no graded code cell"
    tests = {c.metadata["nbgrader"]["grade_id"] for c in release.cells if c.metadata.get("nbgrader", {}).get("grade")}
    for cell in answers:
        name = cell.metadata["nbgrader"]["grade_id"]
        assert name in EXERCISES, f"answer cell {name!r} is not a known exercise"
        assert f"test_{name}" in tests, f"no test cell test_{name}"
        fn = next(n for n in ast.parse(cell.source).body if isinstance(n, ast.FunctionDef) and n.name == name)
        stub = ast.unparse(fn.args)
        expected = inspect.signature(EXERCISES[name].reference)
        params = [p.name if p.default is inspect.Parameter.empty else f"{p.name}={p.default!r}"
                  for p in expected.parameters.values()]
        assert stub.replace(" ", "") == ",".join(params).replace(" ", ""), (stub, params)
