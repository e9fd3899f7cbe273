"""The repository keeps its promises: one dependency list, the Makefile's targets, clean lint."""

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

if sys.version_info >= (3, 11):
    import tomllib
else:
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]
# conda-forge names that differ from PyPI's.
CONDA_TO_PYPI = {"pytorch-cpu": "torch", "pytorch": "torch"}


def _normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _split(requirement: str) -> tuple[str, str]:
    requirement = requirement.split(";")[0].strip()
    m = re.match(r"^([A-Za-z0-9_.\-]+)\s*(.*)$", requirement)
    return _normalize(m.group(1)), m.group(2).replace(" ", "")


def pyproject_requirements() -> dict[str, str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    reqs = project["dependencies"] + project["optional-dependencies"]["course"]
    return dict(_split(r) for r in reqs)


def conda_requirements() -> dict[str, str]:
    deps = {}
    in_deps = False
    for line in (ROOT / "environment.yml").read_text().splitlines():
        if line.startswith("dependencies:"):
            in_deps = True
        elif in_deps and line.startswith("  - "):
            name, spec = _split(line[4:])
            if name not in ("python", "pip"):
                deps[CONDA_TO_PYPI.get(name, name)] = spec
        elif in_deps and line and not line.startswith(" "):
            in_deps = False
    return deps


def test_environment_yml_agrees_with_pyproject():
    conda, pypi = conda_requirements(), pyproject_requirements()
    assert sorted(conda) == sorted(pypi), (
        f"only in environment.yml: {sorted(set(conda) - set(pypi))}; "
        f"only in pyproject.toml: {sorted(set(pypi) - set(conda))}")
    differ = {k: (conda[k], pypi[k]) for k in pypi if conda[k] != pypi[k]}
    assert not differ, f"version ranges differ (environment.yml, pyproject.toml): {differ}"


def test_torch_is_pinned_only_in_the_constraints_file():
    constraints = (ROOT / "requirements" / "constraints.txt").read_text()
    assert re.search(r"^torch==\d+\.\d+\.\d+$", constraints, re.M)
    assert not pyproject_requirements()["torch"].startswith("==")


def test_binder_files():
    assert "pip install --no-deps -e ." in (ROOT / "postBuild").read_text()
    assert (ROOT / "postBuild").read_text().splitlines()[1:3].count("set -e") == 1
    assert (ROOT / "start").read_text().rstrip().endswith('exec "$@"')


def test_make_alone_prints_help():
    out = subprocess.run(["make", "-C", str(ROOT)], capture_output=True, text=True, check=True).stdout
    for target in ("lab", "test", "env", "lint", "bench", "gpu-check", "clean"):
        assert f"make {target}" in out


def test_ci_runs_the_readme_test_command():
    assert "make test" in (ROOT / ".ci" / "run").read_text()
    readme = (ROOT / "README.md").read_text()
    assert "make lab" in readme and "make test" in readme


@pytest.mark.skipif(shutil.which("ruff") is None and not (Path(sys.executable).parent / "ruff").exists(),
                    reason="ruff is not installed")
def test_lint_is_clean():
    ruff = shutil.which("ruff") or str(Path(sys.executable).parent / "ruff")
    proc = subprocess.run([ruff, "check", "lib", "tests", "bench", "autograder"], cwd=ROOT, capture_output=True,
                          text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
