"""cholesky_with_jitter: no shift for positive definite input, the smallest working shift otherwise;
levenberg_marquardt: converges where Newton's Hessian is indefinite, Newton near the solution."""

import pytest
import secondorder as so
import torch


def _with_eigenvalues(lam, dtype=torch.float64, seed=0):
    gen = torch.Generator().manual_seed(seed)
    Q, _ = torch.linalg.qr(torch.randn(len(lam), len(lam), generator=gen, dtype=torch.float64))
    A = (Q * torch.tensor(lam, dtype=torch.float64)) @ Q.T
    return (0.5 * (A + A.T)).to(dtype)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_positive_definite_gets_no_jitter(dtype):
    A = _with_eigenvalues([1.0, 2.0, 5.0, 10.0], dtype)
    before = A.clone()
    L, jitter = so.cholesky_with_jitter(A)
    assert jitter == 0.0 and isinstance(jitter, float)
    assert L.dtype == dtype
    torch.testing.assert_close(L, torch.linalg.cholesky(A))
    assert torch.equal(A, before)


def test_indefinite_gets_the_first_shift_that_works():
    A = _with_eigenvalues([-3e-4, 1.0, 2.0, 4.0])
    L, jitter = so.cholesky_with_jitter(A)
    assert jitter == pytest.approx(1e-3, rel=1e-12)            # 1e-4 < 3e-4 < 1e-3
    torch.testing.assert_close(L @ L.T, A + jitter * torch.eye(4))
    assert bool((torch.diagonal(L) > 0).all())


def test_singular_with_exact_zero_pivot():
    A = torch.diag(torch.tensor([2.0, 0.0, 1.0], dtype=torch.float64))
    L, jitter = so.cholesky_with_jitter(A)
    assert jitter == pytest.approx(1e-10)
    L, jitter = so.cholesky_with_jitter(A, initial=1e-6, factor=2.0)
    assert jitter == pytest.approx(1e-6)


def test_gives_up_after_max_tries():
    A = _with_eigenvalues([-3.0, 1.0, 2.0])
    with pytest.raises(ValueError, match="not positive definite"):
        so.cholesky_with_jitter(A, max_tries=5)
    L, jitter = so.cholesky_with_jitter(A, max_tries=20)
    assert jitter == pytest.approx(10.0)


@pytest.mark.parametrize(("kwargs", "name"), [
    ({"A": torch.ones(2, 3)}, "A"), ({"A": torch.ones(3)}, "A"), ({"A": [[1.0]]}, "A"),
    ({"initial": 0.0}, "initial"), ({"factor": 1.0}, "factor"), ({"max_tries": 0}, "max_tries"),
    ({"max_tries": 2.5}, "max_tries"),
])
def test_bad_arguments_name_the_argument(kwargs, name):
    args = {"A": torch.eye(2, dtype=torch.float64), **kwargs}
    with pytest.raises(ValueError, match=name):
        so.cholesky_with_jitter(**args)


def test_nan_input_is_refused():
    with pytest.raises(ValueError, match="A"):
        so.cholesky_with_jitter(torch.full((2, 2), float("nan")))


def test_levenberg_marquardt_on_rosenbrock_and_an_indefinite_start():
    """Converges to the minimizer from the classical start and from a point with an indefinite Hessian."""
    problem = so.problems.rosenbrock(2)
    assert float(torch.linalg.eigvalsh(problem.hessian(torch.tensor([0.5, 1.5], dtype=torch.float64)))[0]) < 0
    for x0 in (torch.tensor([-1.2, 1.0], dtype=torch.float64), torch.tensor([0.5, 1.5], dtype=torch.float64)):
        res = so.levenberg_marquardt(problem.value_and_grad, problem.hessian, x0)
        assert res.success, res.message
        assert float((res.x - 1).abs().max()) < 1e-8
        f = [row["f"] for row in res.trace if row["accepted"]]
        assert all(a >= b for a, b in zip(f, f[1:]))               # only decreasing steps are taken
        assert res.trace[-1]["damping"] < res.trace[0]["damping"]   # Newton's steps in the end
        assert abs(res.trace[-1]["rho"] - 1) < 1e-2                 # the quadratic model is exact there


def test_levenberg_marquardt_with_huge_damping_is_gradient_descent_and_bad_input():
    A = torch.diag(torch.tensor([1.0, 10.0], dtype=torch.float64))
    x0 = torch.tensor([1.0, 1.0], dtype=torch.float64)
    res = so.levenberg_marquardt(lambda x: (0.5 * x @ A @ x, A @ x), lambda x: A, x0, damping=1e8, max_iter=1)
    step = res.x - x0
    cos = float(step @ -(A @ x0) / (step.norm() * (A @ x0).norm()))
    assert cos > 1 - 1e-6
    with pytest.raises(ValueError, match="damping"):
        so.levenberg_marquardt(lambda x: (x @ x, 2 * x), lambda x: 2 * torch.eye(2), x0, damping=0.0)
    with pytest.raises(ValueError, match="shrink and grow"):
        so.levenberg_marquardt(lambda x: (x @ x, 2 * x), lambda x: 2 * torch.eye(2), x0, shrink=0.5)
