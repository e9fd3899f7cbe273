"""Shared fixtures: every library test runs on each available device."""

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
