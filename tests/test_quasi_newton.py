"""Quasi-Newton kernels against float64 oracles: secant equation, symmetry, definiteness, inverses."""

import numpy as np
import pytest
import scipy.optimize
import secondorder as so
import torch
from conftest import random_vectors, spd_matrix
from secondorder import testing

DTYPES = [torch.float64, torch.float32]


def curvature_pair(A, seed, dtype, device):
    """A step s and y = A s from an SPD matrix A, so y·s > 0."""
    (s,) = random_vectors(A.shape[0], 1, dtype=dtype, device=device, seed=seed)
    return s, A @ s


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n", [1, 5, 40])
def test_bfgs_inverse_secant_symmetry_definiteness(device, dtype, n):
    A = spd_matrix(n, cond=1e3, dtype=dtype, device=device, seed=n)
    H = torch.linalg.inv(spd_matrix(n, cond=10, seed=n + 1)).to(dtype=dtype, device=device)
    s, y = curvature_pair(A, n, dtype, device)
    H_new = so.bfgs_inverse_update(H, s, y)
    testing.check_inverse_secant_equation(H_new, s, y)
    testing.check_symmetric("H_new", H_new)
    testing.check_positive_definite("H_new", H_new)
    # The product form (6.17) evaluated densely in float64 is the oracle for the expanded form.
    H64, s64, y64 = (t.double().cpu() for t in (H, s, y))
    rho = 1 / (y64 @ s64)
    eye = torch.eye(n, dtype=torch.float64)
    oracle = ((eye - rho * torch.outer(s64, y64)) @ H64 @ (eye - rho * torch.outer(y64, s64))
              + rho * torch.outer(s64, s64))
    testing.check_close("H_new", H_new.double().cpu(), oracle, rtol=testing.default_rtol(H) * 100)


@pytest.mark.parametrize("dtype", DTYPES)
def test_direct_and_inverse_bfgs_are_inverses(device, dtype):
    n = 12
    B = spd_matrix(n, cond=50, dtype=torch.float64, seed=3)
    H = torch.linalg.inv(B)
    A = spd_matrix(n, cond=100, seed=4)
    for k in range(5):
        s, y = curvature_pair(A, 10 + k, torch.float64, "cpu")
        B, H = so.bfgs_update(B, s, y), so.bfgs_inverse_update(H, s, y)
        testing.check_secant_equation(B, s, y)
        testing.check_inverse_pair(B, H)
    # float32 on the device agrees with the float64 chain.
    B32 = so.bfgs_update(B.to(dtype=dtype, device=device), s.to(dtype=dtype, device=device),
                         y.to(dtype=dtype, device=device))
    testing.check_close("B_new", B32.double().cpu(), so.bfgs_update(B, s, y),
                        rtol=testing.default_rtol(B32) * 10)


def test_bfgs_matches_scipy_hessian_update_strategy():
    n = 8
    A = spd_matrix(n, cond=30, seed=7)
    ref = scipy.optimize.BFGS(init_scale=1.0)
    ref.initialize(n, "inv_hess")
    H = torch.eye(n, dtype=torch.float64)
    for k in range(6):
        s, y = curvature_pair(A, k, torch.float64, "cpu")
        ref.update(s.numpy(), y.numpy())
        H = so.bfgs_inverse_update(H, s, y)
    np.testing.assert_allclose(H.numpy(), ref.get_matrix(), rtol=1e-10, atol=1e-12)


def test_sr1_matches_scipy_and_satisfies_secant():
    n = 6
    A = spd_matrix(n, cond=20, seed=2) - 3 * torch.eye(n, dtype=torch.float64)   # indefinite
    ref = scipy.optimize.SR1(min_denominator=1e-8, init_scale=1.0)
    ref.initialize(n, "hess")
    B = torch.eye(n, dtype=torch.float64)
    for k in range(5):
        s, y = curvature_pair(A, 20 + k, torch.float64, "cpu")
        ref.update(s.numpy(), y.numpy())
        B = so.sr1_update(B, s, y)
        testing.check_secant_equation(B, s, y)
        testing.check_symmetric("B_new", B)
    np.testing.assert_allclose(B.numpy(), ref.get_matrix(), rtol=1e-9, atol=1e-10)


@pytest.mark.parametrize("dtype", DTYPES)
def test_sr1_skip_rule(device, dtype):
    n = 4
    B = torch.eye(n, dtype=dtype, device=device)
    s = torch.tensor([1.0, 0, 0, 0], dtype=dtype, device=device)
    # v = y - Bs is orthogonal to s: v·s = 0 ≤ r‖s‖‖v‖, the update must be skipped.
    y = s + torch.tensor([0, 1.0, 0, 0], dtype=dtype, device=device)
    B_new = so.sr1_update(B, s, y)
    assert torch.equal(B_new, B) and B_new.data_ptr() != B.data_ptr()
    # v = 0: B already satisfies the secant equation; the update is zero, never 0/0.
    B_same = so.sr1_update(B, s, B @ s)
    assert torch.equal(B_same, B)
    # Just above the threshold the update is made.
    y2 = s + torch.tensor([1e-3, 1.0, 0, 0], dtype=dtype, device=device)
    assert not torch.equal(so.sr1_update(B, s, y2), B)


@pytest.mark.parametrize("dtype", DTYPES)
def test_powell_damping(device, dtype):
    n = 10
    B = spd_matrix(n, cond=100, dtype=dtype, device=device, seed=5)
    s, y = random_vectors(n, 2, dtype=dtype, device=device, seed=6)
    y = -torch.sign(s @ y) * y                          # s·y < 0: damping must act
    r = so.powell_damped_y(B, s, y)
    sBs = float(s.double() @ B.double() @ s.double())
    sr = float(s.double() @ r.double())
    assert sr >= 0.2 * sBs * (1 - 1e-5), (sr, sBs)
    assert sr == pytest.approx(0.2 * sBs, rel=1e-4)     # θ makes the bound tight
    testing.check_positive_definite("B_new", so.bfgs_update(B.double(), s.double(), r.double()))
    good = B @ s                                        # s·y = s·Bs ≥ 0.2 s·Bs: untouched
    torch.testing.assert_close(so.powell_damped_y(B, s, good), good)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("m", [0, 1, 3, 8])
def test_two_loop_equals_dense_lbfgs_matrix(device, dtype, m):
    n = 30
    A = spd_matrix(n, cond=1e3, seed=m)
    pairs = [curvature_pair(A, 100 + i, torch.float64, "cpu") for i in range(m)]
    S, Y = [p[0] for p in pairs], [p[1] for p in pairs]
    (g,) = random_vectors(n, 1, seed=99)
    to = dict(dtype=dtype, device=device)
    r = so.two_loop_recursion(g.to(**to), [s.to(**to) for s in S], [y.to(**to) for y in Y])
    expected = testing.dense_lbfgs_matrix(S, Y) @ g if m else g
    testing.check_close("H g", r.double().cpu(), expected, rtol=testing.default_rtol(r) * 100)
    if m:
        r2 = so.two_loop_recursion(g.to(**to), [s.to(**to) for s in S], [y.to(**to) for y in Y], gamma=2.5)
        testing.check_close("H g", r2.double().cpu(), testing.dense_lbfgs_matrix(S, Y, 2.5) @ g,
                            rtol=testing.default_rtol(r) * 100)


def test_kernels_do_not_modify_inputs(device):
    n = 7
    A = spd_matrix(n, seed=1, device=device)
    B = spd_matrix(n, seed=2, device=device)
    s, y = curvature_pair(A, 3, torch.float64, device)
    for kernel in (so.sr1_update, so.bfgs_update, so.bfgs_inverse_update, so.dfp_inverse_update,
                   so.powell_damped_y):
        copies = [t.clone() for t in (B, s, y)]
        kernel(B, s, y)
        for name, before, after in zip("Bsy", copies, (B, s, y)):
            testing.check_unmodified(name, before, after)
    S, Y = [s, 2 * s], [y, 2 * y]
    copies = [t.clone() for t in S + Y]
    g = y.clone()
    so.two_loop_recursion(g, S, Y)
    testing.check_unmodified("g", y, g)
    for before, after in zip(copies, S + Y):
        testing.check_unmodified("history", before, after)


def test_dfp_secant_and_definiteness():
    A = spd_matrix(9, cond=100, seed=8)
    H = torch.eye(9, dtype=torch.float64)
    for k in range(4):
        s, y = curvature_pair(A, k, torch.float64, "cpu")
        H = so.dfp_inverse_update(H, s, y)
        testing.check_inverse_secant_equation(H, s, y)
        testing.check_positive_definite("H", H)


def test_curvature_pair_acceptance_is_scale_invariant():
    s, y = random_vectors(20, 2, seed=11)
    y = y + 0.05 * s
    verdict = bool(so.curvature_pair_accepted(s, y))
    for c in (1e-30, 1e-6, 1.0, 1e6, 1e30):
        assert bool(so.curvature_pair_accepted(s, c * y)) == verdict
        assert bool(so.curvature_pair_accepted(c * s, y)) == verdict
    # torch.optim.LBFGS's absolute rule y·s > 1e-10 flips with the scale; ours does not.
    assert float(s @ (1e-12 * y)) < 1e-10 < float(s @ y)
    assert not bool(so.curvature_pair_accepted(s, -y))


def test_initial_scaling_inverts_curvature():
    A = 7.0 * torch.eye(5, dtype=torch.float64)
    s, y = curvature_pair(A, 0, torch.float64, "cpu")
    assert float(so.initial_scaling(s, y)) == pytest.approx(1 / 7)
    B = spd_matrix(5, seed=3)
    assert float(so.secant_residual(B, s, B @ s)) == pytest.approx(0, abs=1e-14)


@pytest.mark.parametrize("kernel", [so.sr1_update, so.bfgs_update, so.bfgs_inverse_update,
                                    so.dfp_inverse_update, so.powell_damped_y])
def test_bad_input_names_the_argument(kernel):
    B = torch.eye(3, dtype=torch.float64)
    s = torch.ones(3, dtype=torch.float64)
    y = 2 * s
    with pytest.raises(ValueError, match=r"y must have length 3.*\(4,\)"):
        kernel(B, s, torch.ones(4, dtype=torch.float64))
    with pytest.raises(ValueError, match=r"s has dtype torch.float32"):
        kernel(B, s.float(), y)
    with pytest.raises(ValueError, match=r"must be a square matrix, got shape \(3, 2\)"):
        kernel(B[:, :2], s, y)
    with pytest.raises(ValueError, match=r"s must be a vector"):
        kernel(B, s[None], y)
    with pytest.raises(ValueError, match=r"y contains NaN"):
        kernel(B, s, torch.tensor([1.0, float("nan"), 1.0], dtype=torch.float64))
    with pytest.raises(ValueError, match=r"must be a torch.Tensor, got list"):
        kernel(B, [1.0, 1.0, 1.0], y)


@pytest.mark.gpu
def test_bad_device_names_the_argument():
    B = torch.eye(3, dtype=torch.float64)
    s = torch.ones(3, dtype=torch.float64)
    with pytest.raises(ValueError, match=r"s is on cuda.*B is on cpu"):
        so.bfgs_update(B, s.cuda(), s)


def test_curvature_condition_and_two_loop_errors():
    B = torch.eye(3, dtype=torch.float64)
    s = torch.ones(3, dtype=torch.float64)
    for kernel in (so.bfgs_update, so.bfgs_inverse_update, so.dfp_inverse_update):
        with pytest.raises(ValueError, match="curvature condition"):
            kernel(B, s, -s)
    with pytest.raises(ValueError, match="same length"):
        so.two_loop_recursion(s, [s], [])
    with pytest.raises(ValueError, match=r"pairs \[0\] violate the curvature condition"):
        so.two_loop_recursion(s, [s], [-s])
    with pytest.raises(ValueError, match=r"y_hist\[1\] must have length 3"):
        so.two_loop_recursion(s, [s, s], [s, torch.ones(4, dtype=torch.float64)])
    bad = s.clone()
    bad[1] = float("inf")
    with pytest.raises(ValueError, match=r"s_hist\[0\] contains NaN or infinite"):
        so.two_loop_recursion(s, [bad], [s])
