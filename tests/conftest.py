"""Shared fixtures: every library test runs on each available device."""

import shutil

import pytest
import torch

DEVICES = [pytest.param("cpu", id="cpu")]
if torch.cuda.is_available():
    DEVICES.append(pytest.param("cuda", id="cuda", marks=pytest.mark.gpu))


@pytest.fixture(params=DEVICES)
def device(request):
    """A torch device name: "cpu" always, "cuda" when one is present (those cases are marked gpu)."""
    return request.param


def spd_matrix(n, cond=10.0, *, dtype=torch.float64, device="cpu", seed=0):
    """A random symmetric positive definite matrix with the given condition number."""
    gen = torch.Generator().manual_seed(seed)
    Q, _ = torch.linalg.qr(torch.randn(n, n, generator=gen, dtype=torch.float64))
    lam = torch.logspace(0, torch.log10(torch.tensor(cond)).item(), n, dtype=torch.float64)
    return ((Q * lam) @ Q.T).to(dtype=dtype, device=device)


def random_vectors(n, k, *, dtype=torch.float64, device="cpu", seed=0):
    """k random float vectors of length n."""
    gen = torch.Generator().manual_seed(seed)
    return [torch.randn(n, generator=gen, dtype=torch.float64).to(dtype=dtype, device=device)
            for _ in range(k)]


def _bwrap() -> bool | None:
    try:
        from autograder.sandbox import bwrap_available
    except ImportError:        # the library alone (a GPU machine's copy): no grading tests to report on
        return None
    return bwrap_available()


def pytest_report_header(config):
    """Say how the grading tests sandbox submissions, and what is skipped without bubblewrap."""
    if _bwrap() is False:
        return ("grading sandbox: resource limits only (no bubblewrap): the sandbox isolation tests are skipped, "
                "the grading tests run (apt-get install bubblewrap)")
    return None


def pytest_terminal_summary(terminalreporter):
    """Repeat, at the end of a long run, the groups skipped for a missing system package."""
    skipped = terminalreporter.stats.get("skipped", [])
    if _bwrap() is False and any("bubblewrap" in str(r.longrepr) for r in skipped):
        terminalreporter.write_line("skipped sandbox isolation tests: no bubblewrap (apt-get install bubblewrap)")


def pytest_collection_modifyitems(config, items):
    """Skip gpu-marked tests on a machine without CUDA (``make gpu-check`` runs them where there is one)."""
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def executed_release(tmp_path_factory):
    """``executed_release(aid) -> (notebook, problems)``: a student release run as Run All does, once per session.

    The section tests check that nothing stops it; the course site is built from the same runs.
    """
    import nbformat

    from autograder.build import RELEASE, run_all

    cache = {}

    def get(aid):
        if aid not in cache:
            work = tmp_path_factory.mktemp(f"run-all-{aid}")
            shutil.copytree(RELEASE / aid, work, dirs_exist_ok=True)
            nb = nbformat.read(work / f"{aid}.ipynb", as_version=4)
            cache[aid] = (nb, run_all(nb, work), work)
        return cache[aid][:2]
    return get


@pytest.fixture(scope="session")
def site(tmp_path_factory, executed_release):
    """The course site (autograder/site.py), built once per session from the same Run All executions."""
    from autograder.build import _sections
    from autograder.site import build_site

    executed = {}
    for aid in _sections(None):
        nb, problems = executed_release(aid)
        assert not problems, f"assignments/{aid} does not run to the end: {problems}"
        executed[aid] = nb
    out = tmp_path_factory.mktemp("site") / "html"
    assert build_site(out, executed=executed).is_file()
    return out


@pytest.fixture(scope="module")
def mini(tmp_path_factory):
    """The one-function course of ``autograder_fixtures``: ``(root, course folder, its nbgrader release)``."""
    from autograder_fixtures import make_course, release_of

    root = tmp_path_factory.mktemp("mini")
    course = make_course(root)
    return root, course, release_of(course, root / "release")
