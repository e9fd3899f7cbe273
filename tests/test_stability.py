"""cholesky_with_jitter: no shift for positive definite input, the smallest working shift otherwise."""

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
