"""Matrix-function kernels against float64 oracles: inverse roots, Newton–Schulz, eigenbases."""

import pytest
import torch
from conftest import spd_matrix
from secondorder import testing
from secondorder.matrix_functions import (
    MUON_COEFFICIENTS,
    eigenbasis,
    matrix_inverse_root,
    newton_schulz,
    refresh_eigenbasis,
)
from torch.optim._muon import _zeropower_via_newtonschulz as torch_newton_schulz

DTYPES = [torch.float64, torch.float32]


def eig_oracle_root(M, p, eps):
    """Q diag((max(λ, 0) + eps)^(-1/p)) Qᵀ in float64 on the CPU."""
    lam, Q = torch.linalg.eigh(M.double().cpu())
    return (Q * (lam.clamp(min=0) + eps) ** (-1.0 / p)) @ Q.T


def with_singular_values(m, n, sigma, seed=0, dtype=torch.float64, device="cpu"):
    """U diag(sigma) Vᵀ with Haar-random U (m×r), V (n×r), r = len(sigma)."""
    gen = torch.Generator().manual_seed(seed)
    U, _ = torch.linalg.qr(torch.randn(m, len(sigma), generator=gen, dtype=torch.float64))
    V, _ = torch.linalg.qr(torch.randn(n, len(sigma), generator=gen, dtype=torch.float64))
    return ((U * sigma) @ V.T).to(dtype=dtype, device=device)


# ---------------------------------------------------------------------------------------------------
# matrix_inverse_root


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("p", [1, 2, 4])
def test_inverse_root_matches_oracle_and_inverts(device, dtype, p):
    M = spd_matrix(30, cond=1e3, dtype=dtype, device=device, seed=p)
    before = M.clone()
    R = matrix_inverse_root(M, p)
    testing.check_unmodified("M", before, M)
    testing.check_close("M^(-1/p)", R, eig_oracle_root(M, p, 1e-12).to(dtype=dtype, device=device))
    testing.check_symmetric("M^(-1/p)", R)
    # (M^(-1/p))^p M = I, checked in float64.
    R64 = R.double().cpu()
    testing.check_inverse_pair(torch.linalg.matrix_power(R64, p), M.double().cpu(),
                               rtol=testing.default_rtol(R) * 1e4)


def test_inverse_root_of_rank_deficient_factor_is_finite(device):
    gen = torch.Generator().manual_seed(1)
    G = torch.randn(10, 3, generator=gen, dtype=torch.float64).to(device)
    L = G @ G.T  # (10, 10), rank 3: seven zero eigenvalues up to rounding, some negative
    R = matrix_inverse_root(L, 4, eps=1e-8)
    testing.check_tensor_like("L^(-1/4)", R, L)
    # On the null space the root is eps^(-1/4); on the range it is λ^(-1/4).
    eigs = torch.linalg.eigvalsh(R.double().cpu())
    assert torch.allclose(eigs[-7:], torch.full((7,), 1e-8 ** -0.25, dtype=torch.float64), rtol=1e-3)


def test_inverse_root_of_shampoo_factors_whitens_gradient():
    """With L = G Gᵀ and R = Gᵀ G, L^(-1/4) G R^(-1/4) is the polar factor U Vᵀ of G."""
    G = with_singular_values(12, 8, torch.logspace(0, 2, 8, dtype=torch.float64), seed=2)
    P = matrix_inverse_root(G @ G.T, 4, eps=1e-10) @ G @ matrix_inverse_root(G.T @ G, 4, eps=1e-10)
    U, _, Vh = torch.linalg.svd(G, full_matrices=False)
    testing.check_close("L^(-1/4) G R^(-1/4)", P, U @ Vh, rtol=1e-6)


def test_inverse_root_grows_eps_when_the_result_overflows():
    M = torch.diag(torch.tensor([1.0, 0.0])).to(torch.float16)  # 1 / (0 + 1e-12) overflows float16
    with pytest.warns(RuntimeWarning, match="increasing eps"):
        R = matrix_inverse_root(M, 1)
    testing.check_tensor_like("M^(-1)", R, M)
    assert float(R[0, 0]) == pytest.approx(1.0, rel=1e-3)


@pytest.mark.parametrize("M, p, match", [
    (torch.ones(3, 4, dtype=torch.float64), 2, "square"),
    (torch.ones(3, dtype=torch.float64), 2, "matrix"),
    (torch.tensor([[1.0, 2.0], [0.0, 1.0]], dtype=torch.float64), 2, "symmetric"),
    (torch.tensor([[1.0, float("nan")], [float("nan"), 1.0]]), 2, "NaN"),
    (torch.eye(3, dtype=torch.float64), 0, "p must be"),
    (torch.eye(3, dtype=torch.float64), -2, "p must be"),
    (torch.eye(3, dtype=torch.float64), "four", "p must be"),
    (torch.eye(3, dtype=torch.int64), 2, "floating"),
])
def test_inverse_root_rejects_bad_input(M, p, match):
    with pytest.raises(ValueError, match=match):
        matrix_inverse_root(M, p)


# ---------------------------------------------------------------------------------------------------
# newton_schulz


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(64, 128), (128, 64), (32, 256)])
def test_newton_schulz_singular_values_of_gaussian_inputs(device, dtype, shape):
    gen = torch.Generator().manual_seed(sum(shape))
    G = torch.randn(shape, generator=gen, dtype=torch.float64).to(dtype=dtype, device=device)
    before = G.clone()
    X = newton_schulz(G)
    testing.check_unmodified("G", before, G)
    testing.check_tensor_like("newton_schulz(G)", X, G)
    sigma = torch.linalg.svdvals(X.double().cpu())
    assert 0.68 <= float(sigma.min()) and float(sigma.max()) <= 1.15, (
        f"singular values of newton_schulz(G) span [{float(sigma.min()):.3f}, {float(sigma.max()):.3f}], "
        "expected within [0.68, 1.15]")


@pytest.mark.parametrize("cond", [1.0, 10.0, 100.0])
def test_newton_schulz_bounded_condition_square_inputs(cond):
    G = with_singular_values(48, 48, torch.linspace(1, cond, 48, dtype=torch.float64), seed=3)
    sigma = torch.linalg.svdvals(newton_schulz(G))
    assert 0.68 <= float(sigma.min()) and float(sigma.max()) <= 1.15


def test_newton_schulz_keeps_singular_vectors():
    """X = U φ(Σ) Vᵀ: X's left singular vectors are G's, so Uᵀ X V is diagonal."""
    G = with_singular_values(20, 30, torch.linspace(1, 5, 20, dtype=torch.float64), seed=4)
    U, _, Vh = torch.linalg.svd(G, full_matrices=False)
    D = U.T @ newton_schulz(G) @ Vh.T  # (20, 20)
    off = D - torch.diag(torch.diagonal(D))
    assert float(torch.linalg.matrix_norm(off)) < 1e-10 * float(torch.linalg.matrix_norm(D))


def test_classical_cubic_iteration_converges_to_polar_factor():
    G = with_singular_values(16, 24, torch.linspace(1, 4, 16, dtype=torch.float64), seed=5)
    U, _, Vh = torch.linalg.svd(G, full_matrices=False)
    X = newton_schulz(G, steps=60, coefficients=(1.5, -0.5, 0.0))
    testing.check_close("cubic Newton–Schulz", X, U @ Vh, rtol=1e-10)


def test_newton_schulz_transpose_and_zero(device):
    G = torch.randn(40, 24, dtype=torch.float64, generator=torch.Generator().manual_seed(6)).to(device)
    testing.check_close("newton_schulz(Gᵀ)", newton_schulz(G.T), newton_schulz(G).T, rtol=1e-14)
    Z = torch.zeros(5, 7, device=device)
    assert torch.equal(newton_schulz(Z), Z)


@pytest.mark.parametrize("shape", [(64, 128), (96, 32)])
def test_newton_schulz_matches_torch_muon_orthogonalization(shape):
    gen = torch.Generator().manual_seed(7)
    G = torch.randn(shape, generator=gen, dtype=torch.float32)
    ref = torch_newton_schulz(G, MUON_COEFFICIENTS, 5, 1e-7)  # torch iterates in bfloat16
    assert torch.equal(newton_schulz(G.bfloat16()), ref)
    # In float32 and float64 ours is more accurate; the difference is bfloat16 rounding.
    for dtype in DTYPES:
        testing.check_close("newton_schulz(G)", newton_schulz(G.to(dtype)).double(), ref.double(), rtol=3e-2)


@pytest.mark.parametrize("kwargs, match", [
    (dict(G=torch.ones(4)), "matrix"),
    (dict(G=torch.ones(2, 3, 4)), "matrix"),
    (dict(G=torch.ones(3, 4), steps=-1), "steps"),
    (dict(G=torch.ones(3, 4), steps=2.5), "steps"),
    (dict(G=torch.ones(3, 4), coefficients=(1.0, 2.0)), "coefficients"),
    (dict(G=torch.ones(3, 4), eps=-1.0), "eps"),
])
def test_newton_schulz_rejects_bad_input(kwargs, match):
    with pytest.raises(ValueError, match=match):
        newton_schulz(**kwargs)


# ---------------------------------------------------------------------------------------------------
# eigenbasis and refresh_eigenbasis


def test_eigenbasis_diagonalizes_with_descending_eigenvalues(device):
    M = spd_matrix(20, cond=100, device=device, seed=8)
    Q = eigenbasis(M)
    testing.check_inverse_pair(Q.T, Q)
    D = (Q.T @ M @ Q).cpu()
    assert torch.allclose(D, torch.diag(torch.diagonal(D)), atol=1e-10)
    assert bool((torch.diagonal(D)[:-1] >= torch.diagonal(D)[1:]).all())


def test_refresh_eigenbasis_converges_and_reports_column_order(device):
    M = spd_matrix(12, cond=1e3, device=device, seed=9)
    gen = torch.Generator().manual_seed(10)
    Q, _ = torch.linalg.qr(torch.eye(12, dtype=torch.float64)
                           + 0.3 * torch.randn(12, 12, generator=gen, dtype=torch.float64))
    Q = Q.to(device)

    def off_diagonal(Q):
        D = Q.T @ M @ Q
        return float(torch.linalg.matrix_norm(D - torch.diag(torch.diagonal(D))))

    errors = [off_diagonal(Q)]
    for _ in range(30):
        Q, order = refresh_eigenbasis(M, Q)
        assert sorted(order.tolist()) == list(range(12))
        errors.append(off_diagonal(Q))
    testing.check_inverse_pair(Q.T, Q)
    assert errors[-1] < 1e-3 * errors[0], f"no convergence: {errors[0]:.2e} → {errors[-1]:.2e}"


@pytest.mark.parametrize("Q, match", [
    (torch.eye(4, dtype=torch.float64), "3×3"),
    (torch.eye(3, dtype=torch.float32), "dtype"),
    (torch.ones(3, 2, dtype=torch.float64), "square"),
])
def test_refresh_eigenbasis_rejects_mismatched_basis(Q, match):
    with pytest.raises(ValueError, match=match):
        refresh_eigenbasis(torch.eye(3, dtype=torch.float64), Q)
