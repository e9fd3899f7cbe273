"""minimize(): accuracy and cost against scipy measured in the same test, scale invariance, failures."""

import math

import numpy as np
import pytest
import scipy.optimize
import secondorder as so
import torch
from conftest import spd_matrix

X0 = {2: [-1.2, 1.0], 5: [1.3, 0.7, 0.8, 1.9, 1.2]}


def rosenbrock(x):
    return (100 * (x[1:] - x[:-1] ** 2) ** 2 + (1 - x[:-1]) ** 2).sum()


@pytest.mark.parametrize("n", [2, 5])
@pytest.mark.parametrize("method,scipy_method", [("bfgs", "BFGS"), ("lbfgs", "L-BFGS-B")])
def test_rosenbrock_against_scipy(device, n, method, scipy_method):
    ref = scipy.optimize.minimize(scipy.optimize.rosen, X0[n], jac=scipy.optimize.rosen_der,
                                  method=scipy_method)
    x0 = torch.tensor(X0[n], dtype=torch.float64, device=device)
    res = so.minimize(rosenbrock, x0, method)
    assert res.success, res.message
    assert float((res.x - 1).abs().max()) <= 1e-5
    assert res.nfev <= 1.2 * ref.nfev, f"{method}: {res.nfev} evaluations, scipy {scipy_method}: {ref.nfev}"
    assert res.x.device == x0.device


@pytest.mark.parametrize("method", ["gd", "newton", "sr1", "bfgs", "dfp", "lbfgs", "bfgs-damped"])
@pytest.mark.parametrize("line_search", ["strong_wolfe", "armijo"])
def test_every_method_solves_a_quadratic(device, method, line_search):
    n = 8
    A = spd_matrix(n, cond=20, device=device, seed=1)
    b = torch.linspace(-1, 1, n, dtype=torch.float64, device=device)
    x_star = torch.linalg.solve(A, b)
    res = so.minimize(lambda x: 0.5 * x @ A @ x - b @ x, torch.zeros(n, dtype=torch.float64, device=device),
                      method, line_search=line_search, gtol=1e-7)
    assert res.success, res.message
    torch.testing.assert_close(res.x, x_star, rtol=1e-5, atol=1e-7)
    if method in ("bfgs", "lbfgs", "dfp", "bfgs-damped"):
        assert all(row["sy"] > 0 for row in res.trace if row["update"] == "accepted")


@pytest.mark.parametrize("method", ["bfgs", "lbfgs", "sr1", "dfp", "newton"])
def test_scale_invariance(method):
    """f = c·‖x − 1‖²: identical iterates for every c from 1e-50 to 1e50, converged in ≤ 3 iterations."""
    x0 = torch.tensor([0.0, 3.0, -2.0], dtype=torch.float64)
    paths = []
    for c in (1e-50, 1e-20, 1.0, 1e20, 1e50):
        g0 = float((2 * c * (x0 - 1)).abs().max())
        res = so.minimize(lambda x, c=c: c * ((x - 1) ** 2).sum(), x0, method, gtol=1e-10 * g0)
        assert res.success and res.nit <= 3, (c, res.nit, res.message)
        assert float((res.x - 1).abs().max()) <= 1e-9
        paths.append([row["step_norm"] for row in res.trace])
    for p in paths[1:]:
        np.testing.assert_allclose(p, paths[0], rtol=1e-10)


def test_torch_absolute_threshold_is_not_scale_invariant():
    """The contrast: at f = 1e-16·q(x) torch's rule ys > 1e-10 stores no pair and stalls; ours converges."""
    weights = torch.tensor([1.0, 10.0, 100.0], dtype=torch.float64)

    def f(z):
        return 1e-16 * ((z - 1) ** 2 * weights).sum()
    x = torch.tensor([0.0, 3.0, -2.0], dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([x], line_search_fn="strong_wolfe", max_iter=20, tolerance_grad=0,
                            tolerance_change=0)

    def closure():
        opt.zero_grad()
        loss = f(x)
        loss.backward()
        return loss
    opt.step(closure)
    assert len(opt.state[x].get("old_dirs", [])) == 0
    assert float((x.detach() - 1).abs().max()) > 1
    res = so.minimize(f, torch.tensor([0.0, 3.0, -2.0], dtype=torch.float64), "lbfgs", gtol=1e-26)
    assert res.success and float((res.x - 1).abs().max()) < 1e-8
    assert any(row["update"] == "accepted" for row in res.trace)


@pytest.mark.parametrize("method", ["bfgs", "lbfgs", "newton"])
def test_float32(device, method):
    x0 = torch.tensor(X0[2], dtype=torch.float32, device=device)
    res = so.minimize(rosenbrock, x0, method, gtol=1e-3)
    assert res.x.dtype == torch.float32 and res.x.device == x0.device
    assert res.success, res.message
    assert float((res.x - 1).abs().max()) <= 1e-2


def test_nan_objective_is_reported():
    res = so.minimize(lambda x: (x * math.nan).sum(), torch.ones(3, dtype=torch.float64))
    assert not res.success and "not finite at x0" in res.message

    def blows_up(x):
        return torch.where(x[0] > 0.5, torch.nan, ((x - 2) ** 2).sum())
    res = so.minimize(blows_up, torch.zeros(2, dtype=torch.float64), "bfgs")
    assert not res.success or float(res.x[0]) <= 0.5
    assert math.isfinite(res.fun)


def test_trace_records_what_the_course_watches():
    res = so.minimize(rosenbrock, torch.tensor(X0[2], dtype=torch.float64), "sr1")
    row = res.trace[-1]
    for key in ("k", "f", "grad_norm", "alpha", "step_norm", "sy", "secant_residual", "update", "nfev"):
        assert key in row
    assert {r["update"] for r in res.trace} <= {"accepted", "skipped"}
    accepted = [r["secant_residual"] for r in res.trace if r["update"] == "accepted"]
    assert max(accepted) < 1e-8                    # SR1's new B satisfies the secant equation
    seen = []
    so.minimize(rosenbrock, torch.tensor(X0[2], dtype=torch.float64), callback=seen.append)
    assert len(seen) > 10


def test_jac_true_and_max_iter():
    calls = []

    def f_and_g(x):
        calls.append(1)
        return ((x - 3) ** 2).sum(), 2 * (x - 3)
    res = so.minimize(f_and_g, torch.zeros(4, dtype=torch.float64), "lbfgs", jac=True)
    assert res.success and res.nfev == len(calls)
    res = so.minimize(rosenbrock, torch.tensor(X0[2], dtype=torch.float64), "gd", max_iter=5)
    assert not res.success and res.nit == 5 and "max_iter" in res.message


def test_bad_arguments():
    x0 = torch.zeros(3, dtype=torch.float64)
    with pytest.raises(ValueError, match="method must be one of"):
        so.minimize(rosenbrock, x0, "adam")
    with pytest.raises(ValueError, match=r"x0 must be a vector .* shape \(3, 1\)"):
        so.minimize(rosenbrock, x0[:, None])
    with pytest.raises(ValueError, match="line_search must be"):
        so.minimize(rosenbrock, x0, line_search="exact")
    with pytest.raises(ValueError, match="x0 contains NaN"):
        so.minimize(rosenbrock, torch.tensor([math.nan, 1.0], dtype=torch.float64))
    with pytest.raises(ValueError, match="f must return a scalar"):
        so.minimize(lambda x: x, x0)
    with pytest.raises(ValueError, match="history_size"):
        so.minimize(rosenbrock, x0, "lbfgs", history_size=0)
    with pytest.raises(ValueError, match="jac=False"):
        so.minimize(lambda x: ((x ** 2).sum(), 2 * x), x0, "newton", jac=True)


@pytest.mark.parametrize("shift", [1.0, 1e2])
def test_unscaled_h0_matches_scipy_on_ill_conditioned_quadratics(shift):
    """With H0 = I and the (3.60) initial step, BFGS costs what scipy's does (the documented trade-off)."""
    from secondorder.problems import quadratic
    n = 40
    p = quadratic(n, spectrum=torch.logspace(0, 3, n, dtype=torch.float64) * shift)
    A, b = p.A.numpy(), p.b.numpy()
    ref = scipy.optimize.minimize(lambda x: (0.5 * x @ A @ x - b @ x, A @ x - b), np.zeros(n), jac=True,
                                  method="BFGS", options=dict(gtol=1e-5 * shift))
    res = so.minimize(p.f, p.x0, "bfgs", gtol=1e-5 * shift, scale_h0=False)
    assert res.success and res.nfev <= 1.2 * ref.nfev, (res.nfev, ref.nfev)
    torch.testing.assert_close(res.x, p.x_star, rtol=1e-4, atol=1e-6)
