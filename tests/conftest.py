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
