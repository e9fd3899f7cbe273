"""Line searches: the conditions they promise hold at the returned step, and failures are reported."""

import math

import pytest
import secondorder as so
import torch
from secondorder import testing


def value_and_grad(f):
    def fun(x):
        x = x.detach().requires_grad_(True)
        fx = f(x)
        (g,) = torch.autograd.grad(fx, x)
        return fx.detach(), g
    return fun


# One-dimensional test functions in the spirit of Moré & Thuente (1994), Table 1–3: a single
# minimizer far away, a narrow valley, and a function whose derivative changes sign several times.
PHIS = {
    "far_minimum": lambda x: -x[0] / (x[0] ** 2 + 2.0),
    "steep_valley": lambda x: (x[0] + 0.004) ** 5 - 2 * (x[0] + 0.004) ** 4,
    "wiggly": lambda x: (1 - x[0]) ** 2 + 0.3 * torch.sin(8 * x[0]),
    "quadratic": lambda x: 50 * (x[0] - 3) ** 2,
}


@pytest.mark.parametrize("name", PHIS)
@pytest.mark.parametrize("alpha0", [1e-3, 1.0, 1e3])
@pytest.mark.parametrize("c2", [0.1, 0.9])
def test_strong_wolfe_point_satisfies_conditions(device, name, alpha0, c2):
    fun = value_and_grad(PHIS[name])
    x = torch.zeros(1, dtype=torch.float64, device=device)
    f0, g0 = fun(x)
    d = -torch.sign(g0)
    res = so.strong_wolfe(fun, x, d, f0, g0, alpha0=alpha0, c2=c2)
    assert res.status == "converged", res
    fa, ga = fun(res.x)
    testing.check_wolfe_point(f0, g0 @ d, fa, ga @ d, res.alpha, c2=c2)
    assert res.x.device == x.device and res.nfev <= 25
    assert torch.equal(res.x, x + res.alpha * d)


def test_strong_wolfe_on_quadratic_interpolates_in_few_evaluations():
    fun = value_and_grad(PHIS["quadratic"])
    x = torch.zeros(1, dtype=torch.float64)
    res = so.strong_wolfe(fun, x, torch.ones(1, dtype=torch.float64), alpha0=1.0, c2=0.1)
    assert res.nfev <= 4 and res.x.item() == pytest.approx(3.0, rel=1e-2)


def test_nan_region_counts_as_too_long():
    fun = value_and_grad(lambda x: torch.where(x[0] > 2, torch.nan, (x[0] - 1.5) ** 2))
    x = torch.zeros(1, dtype=torch.float64)
    res = so.strong_wolfe(fun, x, torch.ones(1, dtype=torch.float64), alpha0=10.0)
    assert res.status == "converged" and math.isfinite(float(res.f)) and res.alpha < 2


def test_nan_everywhere_is_reported_not_raised():
    def fun(x):
        return torch.tensor(math.nan, dtype=x.dtype), torch.full_like(x, math.nan)
    x = torch.zeros(2, dtype=torch.float64)
    res = so.strong_wolfe(fun, x, -torch.ones(2, dtype=torch.float64), torch.tensor(0.0, dtype=torch.float64),
                          torch.ones(2, dtype=torch.float64))
    assert res.status in ("nonfinite", "no_progress") and res.alpha == 0.0 and not res.success


def test_not_a_descent_direction():
    fun = value_and_grad(PHIS["quadratic"])
    x = torch.zeros(1, dtype=torch.float64)
    res = so.strong_wolfe(fun, x, -torch.ones(1, dtype=torch.float64))
    assert res.status == "not_descent" and res.nfev == 1
    assert so.backtracking(fun, x, -torch.ones(1, dtype=torch.float64)).status == "not_descent"


def test_budget_exhausted():
    fun = value_and_grad(PHIS["far_minimum"])
    x = torch.zeros(1, dtype=torch.float64)
    res = so.strong_wolfe(fun, x, torch.ones(1, dtype=torch.float64), alpha0=1e-6, max_evals=3)
    assert res.status == "max_evals" and res.nfev == 3
    assert float(res.f) < float(fun(x)[0])          # the best point found is still a decrease


@pytest.mark.parametrize("alpha0", [1.0, 100.0])
def test_backtracking_armijo(device, alpha0):
    fun = value_and_grad(lambda x: (x ** 2).sum())
    x = torch.full((3,), 2.0, dtype=torch.float64, device=device)
    f0, g0 = fun(x)
    res = so.backtracking(fun, x, -g0, f0, g0, alpha0=alpha0, c1=1e-4)
    assert res.success
    assert float(res.f) <= float(f0) + 1e-4 * res.alpha * float(g0 @ -g0)


def test_wolfe_conditions_by_hand():
    # φ(α) = (α − 1)², φ(0) = 1, φ'(0) = −2.
    assert so.wolfe_conditions(1.0, -2.0, 0.0, 0.0, 1.0) == (True, True)
    assert so.wolfe_conditions(1.0, -2.0, 1.0, 2.0, 2.0) == (False, False)
    assert so.wolfe_conditions(1.0, -2.0, 0.81, -1.9, 0.1) == (True, False)    # too short
    assert so.wolfe_conditions(1.0, -2.0, 0.81, -1.9, 0.1, c2=0.95) == (True, True)
    assert so.wolfe_conditions(torch.tensor(1.0), torch.tensor(-2.0), torch.tensor(0.0),
                               torch.tensor(0.0), torch.tensor(1.0)) == (True, True)
    with pytest.raises(ValueError, match="c1 < c2"):
        so.wolfe_conditions(1.0, -2.0, 0.0, 0.0, 1.0, c1=0.9, c2=0.1)
    with pytest.raises(ValueError, match="dphi0 must be negative"):
        so.wolfe_conditions(1.0, 2.0, 0.0, 0.0, 1.0)
    with pytest.raises(ValueError, match="alpha must be > 0"):
        so.wolfe_conditions(1.0, -2.0, 0.0, 0.0, 0.0)


def test_cubic_minimizer_is_exact_for_cubics():
    def p(t):
        return (t - 0.7) ** 2 * (t + 3.0), 2 * (t - 0.7) * (t + 3.0) + (t - 0.7) ** 2
    a, b = 0.0, 2.0
    t = so.cubic_minimizer(a, *p(a), b, *p(b))
    assert t == pytest.approx(0.7, abs=1e-12)
    assert so.cubic_minimizer(1.0, 0.0, 1.0, 1.0, 0.0, 1.0) is None
