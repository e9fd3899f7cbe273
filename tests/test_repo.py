"""The repository keeps its promises: one dependency list, the Makefile's targets, Binder, clean lint."""

import ast
import importlib.util
import json
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from jupyter_core.paths import jupyter_path

from autograder.site import released_sections

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
    for target in ("lab", "test", "test-browser", "env", "lint", "bench", "gpu-check", "gpu-wheels", "clean"):
        assert f"make {target}" in out


def test_ci_runs_the_readme_test_command():
    assert "make test" in (ROOT / ".ci" / "run").read_text()
    # CI always runs the browser tests: it installs Debian's Chromium, and never a browser of Playwright's.
    ci = (ROOT / ".ci" / "run").read_text()
    assert "chromium" in ci and "playwright install" not in ci
    readme = (ROOT / "README.md").read_text()
    assert "make lab" in readme and "make test" in readme


@pytest.mark.skipif(shutil.which("ruff") is None and not (Path(sys.executable).parent / "ruff").exists(),
                    reason="ruff is not installed")
def test_lint_is_clean():
    ruff = shutil.which("ruff") or str(Path(sys.executable).parent / "ruff")
    proc = subprocess.run([ruff, "check", "lib", "tests", "bench", "autograder"], cwd=ROOT, capture_output=True,
                          text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


# --- Binder and self-study -------------------------------------------------------------------------------------

NBGRADER_INSTRUCTOR_PLUGINS = ("@jupyter/nbgrader:formgrader", "@jupyter/nbgrader:create-assignment")
BINDER_LINK = re.compile(r"https://mybinder\.org/v2/gh/(?P<repo>[^/\s]+/[^/\s]+)/(?P<ref>[^?\s]+)"
                         r"\?urlpath=lab/tree/(?P<path>[^\s)>\]]+)")


def postbuild_commands() -> list[list[str]]:
    """The ``jupyter ...`` commands of postBuild, continuation lines joined, split as the shell does."""
    text = (ROOT / "postBuild").read_text().replace("\\\n", " ")
    return [shlex.split(line) for line in text.splitlines() if line.startswith("jupyter ")]


def test_binder_hides_the_instructor_tools_and_keeps_validate():
    commands = postbuild_commands()
    lab = [c for c in commands if c[:3] == ["jupyter", "labextension", "disable"]]
    server = [c for c in commands if c[:4] == ["jupyter", "server", "extension", "disable"]]
    lab_disabled = {a for c in lab for a in c[3:] if not a.startswith("-")}
    server_disabled = {a for c in server for a in c[4:] if not a.startswith("-")}
    missing = set(NBGRADER_INSTRUCTOR_PLUGINS) - lab_disabled
    assert not missing, f"postBuild leaves {sorted(missing)} enabled for students"
    assert "@jupyter/nbgrader:validate-assignment" not in lab_disabled, "students need Validate"
    assert "nbgrader.server_extensions.formgrader" in server_disabled
    assert "nbgrader.server_extensions.validate_assignment" not in server_disabled, "students need Validate"
    # Names that no longer exist would be disabled silently: check them against the installed nbgrader.
    for module in server_disabled:
        assert importlib.util.find_spec(module) is not None, f"postBuild names an unknown server extension {module}"
    sources = [p for d in jupyter_path("labextensions") for p in Path(d).glob("@jupyter/nbgrader/static/*.js")]
    if sources:
        plugin_ids = set(re.findall(r'"(@jupyter/nbgrader:[a-z-]+)"', " ".join(p.read_text() for p in sources)))
        unknown = lab_disabled - plugin_ids
        assert not unknown, f"postBuild disables plugins nbgrader does not have: {sorted(unknown)}"


def test_readme_launches_every_released_section_on_binder():
    """One launch link per released section, all on the repository that GITHUB_REPO names, each to a real file."""
    readme = (ROOT / "README.md").read_text()
    m = re.search(r"^\[GITHUB_REPO\]: https://github\.com/(\S+/\S+?)/?$", readme, re.M)
    assert m, "README.md must define the repository once: [GITHUB_REPO]: https://github.com/OWNER/NAME"
    repo = m.group(1)
    from autograder.build import repository_url  # the site's and the Colab install line's source
    assert repository_url() == f"https://github.com/{repo}", (
        f"README.md's [GITHUB_REPO] ({repo}) and pyproject.toml's [project.urls] Repository "
        f"({repository_url()}) must name the same repository")
    links = list(BINDER_LINK.finditer(readme))
    assert links, "README.md has no Binder launch link"
    for link in links:
        assert link.group("repo") == repo, f"{link.group(0)} does not use GITHUB_REPO ({repo})"
        path = link.group("path")
        assert path.startswith("assignments/") and (ROOT / path).is_file(), f"{link.group(0)}: no file {path}"
    linked = {Path(link.group("path")).parent.name for link in links}
    unlinked = sorted(set(released_sections()) - linked)
    assert not unlinked, (f"no Binder link for {unlinked}; add to README.md: https://mybinder.org/v2/gh/{repo}/HEAD"
                          f"?urlpath=lab/tree/assignments/NN_name/NN_name.ipynb")
    for ref in re.findall(r"\]\[(binder-[^\]]+)\]", readme):
        assert re.search(rf"^\[{re.escape(ref)}\]: ", readme, re.M), f"README.md uses [{ref}] but never defines it"
    assert "Download" in readme and "Keeping your work" in readme


# --- no notebook writes outside its folder ------------------------------------------------------------------------
# A static check of the code cells of every section's single source (the release and the solution are generated
# from it): each call that writes a file must name a relative path inside the folder, as a literal, or an in-memory
# buffer; shell escapes, cell magics that write, os.chdir and tempfile are refused outright.

BUFFERS = {"BytesIO", "StringIO"}
WRITE_METHODS = {"savefig", "to_csv", "to_json", "to_parquet", "to_pickle", "to_excel", "to_hdf", "tofile",
                 "imsave", "write_text", "write_bytes", "touch", "mkdir", "unlink", "rmdir", "rename", "symlink_to"}
PATH_METHODS = {"write_text", "write_bytes", "touch", "mkdir", "unlink", "rmdir", "rename", "symlink_to"}
MODULE_WRITERS = {"os": {"remove", "unlink", "rename", "replace", "makedirs", "mkdir", "rmdir", "removedirs",
                         "symlink", "link", "truncate"},
                  "shutil": None,          # every shutil function copies, moves or removes
                  "np": {"save", "savez", "savez_compressed", "savetxt"},
                  "numpy": {"save", "savez", "savez_compressed", "savetxt"},
                  "torch": {"save"}, "pickle": set(), "json": set()}
WRITING_MAGICS = ("%%writefile", "%%file", "%%bash", "%%sh", "%%script", "%save", "%store", "%logstart", "%%capture")


def _is_buffer(node, buffers) -> bool:
    if isinstance(node, ast.Call):
        f = node.func
        return (isinstance(f, ast.Name) and f.id in BUFFERS) or (isinstance(f, ast.Attribute) and f.attr in BUFFERS)
    return isinstance(node, ast.Name) and node.id in buffers


def _inside_folder(node, buffers) -> bool:
    """A path argument is safe if it is an in-memory buffer or a relative literal path without '..'."""
    if _is_buffer(node, buffers):
        return True
    if isinstance(node, ast.Call) and isinstance(node.func, (ast.Name, ast.Attribute)) and node.args and \
            getattr(node.func, "id", getattr(node.func, "attr", "")) in ("Path", "PurePath"):
        return all(_inside_folder(a, buffers) for a in node.args)
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        p = node.value
        return bool(p) and not p.startswith(("/", "~", "\\")) and ".." not in Path(p).parts and ":" not in p
    return False


def writes_outside_folder(source: str) -> list[str]:
    """Every construct in a code cell that may write outside the notebook's folder, as readable lines."""
    problems, lines = [], []
    for line in source.splitlines():
        stripped = line.lstrip()
        if stripped.startswith("!") or stripped.startswith(WRITING_MAGICS):
            problems.append(f"shell or writing magic: {stripped}")
        lines.append(line[:len(line) - len(stripped)] + "pass" if stripped.startswith(("%", "!")) else line)
    tree = ast.parse("\n".join(lines))
    buffers = {t.id for n in ast.walk(tree) if isinstance(n, ast.Assign) and _is_buffer(n.value, set())
               for t in n.targets if isinstance(t, ast.Name)}
    buffers |= {n.optional_vars.id for n in ast.walk(tree) if isinstance(n, ast.withitem)
                and isinstance(n.optional_vars, ast.Name) and _is_buffer(n.context_expr, set())}
    for node in ast.walk(tree):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            names = [a.name for a in node.names] + ([node.module] if isinstance(node, ast.ImportFrom) else [])
            if any(n and n.split(".")[0] == "tempfile" for n in names):
                problems.append("tempfile writes outside the folder")
        if not isinstance(node, ast.Call):
            continue
        f, code = node.func, ast.unparse(node)
        if isinstance(f, ast.Name) and f.id == "open":
            mode = node.args[1] if len(node.args) > 1 else next((k.value for k in node.keywords if k.arg == "mode"),
                                                                 ast.Constant("r"))
            writing = not (isinstance(mode, ast.Constant) and not set(str(mode.value)) & set("wax+"))
            if writing and not (node.args and _inside_folder(node.args[0], buffers)):
                problems.append(f"open for writing outside the folder: {code}")
            continue
        if not isinstance(f, ast.Attribute):
            continue
        owner = f.value.id if isinstance(f.value, ast.Name) else None
        if owner == "os" and f.attr == "chdir":
            problems.append(f"changes the working folder: {code}")
        elif owner in MODULE_WRITERS and (MODULE_WRITERS[owner] is None or f.attr in MODULE_WRITERS[owner]):
            targets = node.args[1:2] if (owner, f.attr) == ("torch", "save") else node.args
            if not targets or not all(_inside_folder(a, buffers) for a in targets):
                problems.append(f"writes outside the folder: {code}")
        elif f.attr in WRITE_METHODS and owner not in MODULE_WRITERS:
            target = f.value if f.attr in PATH_METHODS else (node.args[0] if node.args else None)
            if f.attr in PATH_METHODS and not (isinstance(f.value, ast.Call) or isinstance(f.value, ast.Constant)):
                target = None       # a path held in a variable: it cannot be checked statically
            if target is None or not _inside_folder(target, buffers):
                problems.append(f"writes outside the folder: {code}")
    return problems


@pytest.mark.parametrize(("source", "flagged"), [
    ("buf = io.BytesIO()\nfig.savefig(buf, format='png')", False),
    ("with io.BytesIO() as b:\n    fig.savefig(b)", False),
    ("fig.savefig('figure.png')", False),
    ("open('data.csv').read()\nopen('notes/out.txt', 'w')", False),
    ("torch.save(model.state_dict(), 'model.pt')", False),
    ("Path('results').mkdir()", False),
    ("%matplotlib inline\nx = 1", False),
    ("open('/tmp/x.txt', 'w')", True),
    ("open(name, mode='a')", True),
    ("fig.savefig('../figure.png')", True),
    ("np.save(os.path.expanduser('~/x.npy'), a)", True),
    ("torch.save(m, '/root/m.pt')", True),
    ("Path('~/x').write_text('a')", True),
    ("shutil.rmtree(folder)", True),
    ("os.chdir('..')", True),
    ("import tempfile", True),
    ("!rm -rf data", True),
    ("%%writefile /etc/x\nprint(1)", True),
])
def test_write_check_flags_what_it_should(source, flagged):
    assert bool(writes_outside_folder(source)) == flagged, writes_outside_folder(source)


@pytest.mark.parametrize("aid", sorted(p.parent.name for p in (ROOT / "course").glob("*/*.ipynb")
                                       if p.stem == p.parent.name))
def test_notebook_writes_nothing_outside_its_folder(aid):
    """A Binder student keeps their work by downloading the notebook: nothing else may live elsewhere."""
    nb = json.loads((ROOT / "course" / aid / f"{aid}.ipynb").read_text())
    problems = [f"cell {i}: {p}" for i, cell in enumerate(nb["cells"]) if cell["cell_type"] == "code"
                for p in writes_outside_folder("".join(cell["source"]))]
    assert not problems, "\n".join(problems)


def _module_imports(tree: ast.AST, top_level_only: bool) -> set[str]:
    nodes = tree.body if top_level_only else ast.walk(tree)
    found = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            found |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module.split(".")[0])
    return found


def _required_closure(names: set[str]) -> set[str]:
    """The distributions that ``names`` install, following their (non-extra) requirements."""
    from importlib import metadata

    from packaging.requirements import Requirement

    seen, todo = set(), list(names)
    while todo:
        name = _normalize(todo.pop())
        if name in seen:
            continue
        seen.add(name)
        try:
            requires = metadata.requires(name) or []
        except metadata.PackageNotFoundError:
            continue
        for text in requires:
            req = Requirement(text)
            if req.marker is None or req.marker.evaluate({"extra": ""}):
                todo.append(req.name)
    return seen


def test_binder_environment_has_everything_the_notebooks_import():
    """Every import of the section notebooks and the library is installed by environment.yml (or postBuild)."""
    from importlib import metadata

    modules = set()
    for path in (ROOT / "course").glob("*/*.ipynb"):
        for cell in json.loads(path.read_text())["cells"]:
            if cell["cell_type"] == "code":
                src = "\n".join(ln[:len(ln) - len(ln.lstrip())] + "pass" if ln.lstrip().startswith(("%", "!")) else ln
                                for ln in "".join(cell["source"]).splitlines())
                modules |= _module_imports(ast.parse(src), top_level_only=False)
    for path in (ROOT / "lib" / "secondorder").rglob("*.py"):
        modules |= _module_imports(ast.parse(path.read_text()), top_level_only=True)
    modules -= set(sys.stdlib_module_names) | {"secondorder", "__future__"}
    provided = _required_closure(set(conda_requirements()))
    owners = metadata.packages_distributions()
    missing = {m: owners.get(m) for m in sorted(modules)
               if not any(_normalize(d) in provided for d in owners.get(m, [m]))}
    assert not missing, f"imported but not installed on Binder (add to environment.yml and pyproject.toml): {missing}"
