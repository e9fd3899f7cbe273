"""Spectral estimators against float64 oracles: eigvalsh on operators with a known spectrum, exact traces."""

import math

import pytest
import torch
from secondorder import testing
from secondorder.problems import quadratic
from secondorder.spectral import (
    hutchinson_trace,
    hutchpp_trace,
    lanczos,
    power_iteration,
    slq_density,
    smoothed_density,
)

DTYPES = [torch.float64, torch.float32]


def with_spectrum(lam, *, dtype=torch.float64, device="cpu", seed=0):
    """Symmetric A = Q diag(lam) Qᵀ with Q Haar-random (from the quadratic test problem); any signs."""
    lam = torch.as_tensor(lam, dtype=torch.float64)
    Q = quadratic(lam.numel(), cond=2.0, seed=seed).eigenvectors  # (n, n) orthogonal
    A = (Q * lam) @ Q.T
    return (0.5 * (A + A.T)).to(dtype=dtype, device=device)


class Counted:
    """An operator with ``@`` that counts its products."""

    def __init__(self, A):
        self.A, self.count = A, 0

    def __matmul__(self, v):
        self.count += 1
        return self.A @ v


def start(n, dtype, device, seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, generator=g, dtype=torch.float64).to(dtype=dtype, device=device)


@pytest.mark.parametrize("dtype", DTYPES)
def test_power_iteration_matches_eigvalsh(device, dtype):
    problem = quadratic(60, cond=50.0, spacing="linear", dtype=dtype, device=device)
    v0 = start(60, dtype, device)
    v0_copy = v0.clone()
    lam, v = power_iteration(problem.A, v0, iters=2000, tol=1e-9 if dtype == torch.float64 else 1e-6)
    exact = torch.linalg.eigvalsh(problem.A.double().cpu())[-1]
    testing.check_unmodified("v0", v0_copy, v0)
    testing.check_tensor_like("eigenvalue", lam, v0[0])
    rtol = 1e-6 if dtype == torch.float64 else 1e-4
    testing.check_close("eigenvalue", lam.double().cpu(), exact, rtol=rtol)
    assert math.isclose(float(torch.linalg.vector_norm(v)), 1.0, rel_tol=1e-5)
    # (λ, v) is a Rayleigh pair: λ = vᵀAv exactly.
    testing.check_close("vᵀAv", (v @ (problem.A @ v)).double().cpu(), lam.double().cpu())


def test_power_iteration_keeps_the_sign_of_a_negative_dominant_eigenvalue(device):
    lam = torch.cat([torch.tensor([-7.0]), torch.linspace(-2.0, 5.0, 39)])
    A = with_spectrum(lam, device=device)
    value, v = power_iteration(A, start(40, torch.float64, device), iters=1000, tol=1e-12)
    assert float(value) < 0
    testing.check_close("eigenvalue", value.cpu(), torch.tensor(-7.0, dtype=torch.float64), rtol=1e-9)
    testing.check_close("A v", (A @ v).cpu(), (value * v).cpu(), rtol=1e-5)


def test_power_iteration_accepts_callables_and_operators(device):
    A = with_spectrum(torch.linspace(1.0, 10.0, 30), device=device)
    v0 = start(30, torch.float64, device)
    lam_call, _ = power_iteration(lambda v: A @ v, v0, iters=50, tol=0.0)
    lam_op, _ = power_iteration(Counted(A), v0, iters=50, tol=0.0)
    assert float(lam_call) == float(lam_op)


def test_power_iteration_tol_controls_work_and_accuracy(device):
    A = with_spectrum(torch.linspace(1.0, 10.0, 50), device=device)
    exact = 10.0
    errors, counts = [], []
    for tol in (1e-2, 1e-5, 1e-10):
        op = Counted(A)
        lam, _ = power_iteration(op, start(50, torch.float64, device), iters=5000, tol=tol)
        errors.append(abs(float(lam) - exact) / exact)
        counts.append(op.count)
    assert counts[0] < counts[1] < counts[2] < 5000
    assert errors[0] > errors[1] > errors[2]
    assert errors[2] < 1e-8
    op = Counted(A)
    power_iteration(op, start(50, torch.float64, device), iters=17, tol=0.0)
    assert op.count == 17  # tol = 0 spends the whole budget


def test_power_iteration_and_lanczos_on_a_cluster(device):
    # Three eigenvalues within 2e-4 of each other at the top: power iteration cannot separate them
    # but its eigenvalue is still within the cluster; Lanczos resolves all three.
    top = torch.tensor([10.0, 9.999, 9.998])
    lam = torch.cat([top, torch.linspace(0.0, 5.0, 77)])
    A = with_spectrum(lam, device=device)
    value, _ = power_iteration(A, start(80, torch.float64, device), iters=3000, tol=1e-12)
    assert 9.998 - 1e-9 <= float(value) <= 10.0 + 1e-9
    res = lanczos(A, start(80, torch.float64, device), k=3, iters=60)
    testing.check_close("top 3", res.eigenvalues.cpu(), top.double(), rtol=1e-10)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("which", ["LA", "SA", "LM"])
def test_lanczos_matches_eigvalsh(device, dtype, which):
    lam = torch.cat([torch.tensor([-9.0, -8.5]), torch.linspace(-3.0, 6.0, 96), torch.tensor([7.0, 8.0])])
    A = with_spectrum(lam, dtype=dtype, device=device)
    res = lanczos(A, n=100, k=3, iters=70, which=which, return_eigenvectors=True, dtype=dtype,
                  device=device, generator=torch.Generator().manual_seed(0))
    exact = torch.sort(lam.double()).values
    expected = {"LA": exact.flip(0)[:3], "SA": exact[:3], "LM": torch.tensor([-9.0, -8.5, 8.0])}[which]
    rtol = 1e-9 if dtype == torch.float64 else 1e-4
    testing.check_close("eigenvalues", res.eigenvalues.double().cpu(), expected.double(), rtol=rtol)
    assert res.eigenvectors.shape == (100, 3) and res.T.shape == (70, 70)
    testing.check_symmetric("T", res.T)
    V = res.eigenvectors.double().cpu()
    testing.check_close("VᵀV", V.T @ V, torch.eye(3, dtype=torch.float64), rtol=10 * rtol)
    testing.check_close("A V", A.double().cpu() @ V, V * res.eigenvalues.double().cpu(), rtol=100 * rtol)


def test_lanczos_reorthogonalization_and_early_stop(device):
    A = with_spectrum(torch.logspace(0, 3, 200), device=device)
    v0 = start(200, torch.float64, device)
    full = lanczos(A, v0, k=1, iters=120)
    plain = lanczos(A, v0, k=1, iters=120, reorthogonalize=False)
    # Without reorthogonalization the top eigenvalue is still right; T then holds "ghost" copies of
    # it, which full reorthogonalization removes.
    for res in (full, plain):
        testing.check_close("λ_max", res.eigenvalues.cpu(), torch.tensor([1000.0], dtype=torch.float64),
                            rtol=1e-10)
    ritz_full = torch.linalg.eigvalsh(full.T.cpu())
    ritz_plain = torch.linalg.eigvalsh(plain.T.cpu())
    assert int((ritz_full > 1000 - 1e-6).sum()) == 1
    assert int((ritz_plain > 1000 - 1e-6).sum()) > 1
    early = lanczos(A, v0, k=1, iters=120, tol=1e-8)
    assert early.T.shape[0] < 120
    testing.check_close("λ_max", early.eigenvalues.cpu(), torch.tensor([1000.0], dtype=torch.float64),
                        rtol=1e-8)


@pytest.mark.parametrize("seed", range(5))
def test_lanczos_stops_at_an_invariant_subspace(device, seed):
    # 3 distinct eigenvalues: every Krylov space has dimension ≤ 3, so β₃ is rounding alone.
    A = with_spectrum(torch.tensor([1.0, 1.0, 2.0, 2.0, 3.0, 3.0] * 5), device=device, seed=seed)
    res = lanczos(A, start(30, torch.float64, device, seed=seed), k=3, iters=20)
    assert res.T.shape == (3, 3)
    expected = torch.tensor([3.0, 2.0, 1.0], dtype=torch.float64)
    testing.check_close("eigenvalues", res.eigenvalues.cpu(), expected)


def test_argument_errors_name_the_argument():
    A = torch.eye(4, dtype=torch.float64)
    with pytest.raises(ValueError, match="v0"):
        power_iteration(A, torch.zeros(4, dtype=torch.float64))
    with pytest.raises(ValueError, match="v0"):
        power_iteration(A, torch.tensor([1.0, float("nan"), 0.0, 0.0], dtype=torch.float64))
    with pytest.raises(ValueError, match="matvec"):
        power_iteration(lambda v: v[:2], torch.ones(4, dtype=torch.float64))
    with pytest.raises(ValueError, match="matvec"):
        power_iteration("A", torch.ones(4, dtype=torch.float64))
    with pytest.raises(ValueError, match="matvec"):
        lanczos(lambda v: v.float(), torch.ones(4, dtype=torch.float64))
    with pytest.raises(ValueError, match="which"):
        lanczos(A, torch.ones(4, dtype=torch.float64), which="BE")
    with pytest.raises(ValueError, match="n"):
        lanczos(A)
    with pytest.raises(ValueError, match="distribution"):
        hutchinson_trace(A, 4, 3, distribution="uniform")
    with pytest.raises(ValueError, match="num_matvecs"):
        hutchpp_trace(A, 4, 2)
    with pytest.raises(ValueError, match="sigma"):
        smoothed_density(torch.zeros(1, 2), torch.ones(1, 2), torch.zeros(3), 0.0)


def test_slq_density_integrates_to_one_and_matches_moments(device):
    n = 300
    lam = torch.cat([torch.linspace(0.0, 2.0, 250), torch.linspace(8.0, 10.0, 50)])  # two bulks
    A = with_spectrum(lam, device=device)
    dens = slq_density(A, n, num_probes=20, iters=40, grid=2000, dtype=torch.float64, device=device,
                       generator=torch.Generator().manual_seed(0))
    assert dens.nodes.shape == dens.weights.shape == (20, 40)
    testing.check_close("weights per probe", dens.weights.sum(1).cpu(), torch.ones(20, dtype=torch.float64))
    grid, phi = dens.grid.cpu(), dens.density.cpu()
    testing.check_close("∫φ", torch.trapezoid(phi, grid), torch.tensor(1.0, dtype=torch.float64), rtol=1e-6)
    for p in (1, 2):
        per_probe = dens.quadrature(lambda t, p=p: t**p).cpu()  # (L,)
        exact = float((lam.double() ** p).mean())  # tr(A^p) / n
        stderr = float(per_probe.std()) / math.sqrt(per_probe.numel())
        assert abs(float(per_probe.mean()) - exact) < 4 * stderr, (p, float(per_probe.mean()), exact, stderr)
        # The smoothed density has the nodes' mean and their variance plus σ².
        moment = float(torch.trapezoid(grid**p * phi, grid))
        expected = float(per_probe.mean()) + (dens.sigma**2 if p == 2 else 0.0)
        assert math.isclose(moment, expected, rel_tol=1e-6), (p, moment, expected)
    # The two bulks show up as two bumps with almost nothing in the gap between them.
    gap = (grid > 3.5) & (grid < 6.5)
    assert float(phi[gap].max()) < 0.01 * float(phi.max())


def test_hutchinson_is_unbiased(device):
    A = with_spectrum(torch.linspace(-1.0, 4.0, 50), device=device) + 0.3  # dense, indefinite
    exact = float(torch.trace(A))
    for distribution in ("rademacher", "gaussian"):
        gen = torch.Generator().manual_seed(0)
        estimates = torch.stack([hutchinson_trace(A, 50, 10, distribution, gen, dtype=torch.float64,
                                                  device=device) for _ in range(200)]).cpu()
        stderr = float(estimates.std()) / math.sqrt(estimates.numel())
        assert abs(float(estimates.mean()) - exact) < 4 * stderr, distribution
    # Rademacher variance is 2 Σ_{i≠j} A_ij² per probe.
    est, samples = hutchinson_trace(A, 50, 4000, generator=torch.Generator().manual_seed(1),
                                    dtype=torch.float64, device=device, return_samples=True)
    A64 = A.double().cpu()
    var = 2 * float((A64**2).sum() - (torch.diagonal(A64) ** 2).sum())
    assert math.isclose(float(samples.var()), var, rel_tol=0.1)
    assert math.isclose(float(est), float(samples.mean()))


def test_hutchpp_is_exact_for_low_rank_and_beats_hutchinson(device):
    n = 200
    low_rank = torch.cat([torch.full((5,), 1.0), torch.zeros(n - 5)]) * torch.arange(1, n + 1)
    A = with_spectrum(low_rank, device=device)
    est = hutchpp_trace(A, n, 30, generator=torch.Generator().manual_seed(0), dtype=torch.float64,
                        device=device)
    testing.check_close("Hutch++ trace", est.cpu(), torch.trace(A).cpu(), rtol=1e-10)
    # Low-rank-dominated: 10 large eigenvalues and a small full-rank tail; equal products (30).
    lam = torch.cat([torch.logspace(2, 3, 10), torch.full((n - 10,), 0.1)])
    A = with_spectrum(lam, device=device)
    exact = float(lam.sum())
    gen = torch.Generator().manual_seed(0)
    hutch = torch.stack([hutchinson_trace(A, n, 30, generator=gen, dtype=torch.float64, device=device)
                         for _ in range(40)]).cpu()
    hpp = torch.stack([hutchpp_trace(A, n, 30, generator=gen, dtype=torch.float64, device=device)
                       for _ in range(40)]).cpu()
    mse_h = float(((hutch - exact) ** 2).mean())
    mse_pp = float(((hpp - exact) ** 2).mean())
    assert mse_pp < 0.01 * mse_h, (mse_pp, mse_h)
    _, samples = hutchpp_trace(A, n, 31, generator=gen, dtype=torch.float64, device=device,
                               return_samples=True)
    assert samples.shape == (31 - 2 * 10,)
