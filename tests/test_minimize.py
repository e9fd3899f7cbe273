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
    assert res.trace[0]["update"] == "scaled" and math.isnan(res.trace[0]["secant_residual"])
    assert {r["update"] for r in res.trace[1:]} <= {"accepted", "skipped"}
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
    with pytest.raises(ValueError, match="jac=True needs hess"):
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


@pytest.mark.parametrize("method", ["sr1", "bfgs", "dfp", "lbfgs", "bfgs-damped"])
def test_record_gives_the_path_the_pairs_and_h(device, method):
    """Recorded x, g, s, y, d and H agree with each other and with the secant equation."""
    x0 = torch.tensor(X0[5], dtype=torch.float64, device=device)
    res = so.minimize(rosenbrock, x0, method, record=("x", "g", "s", "y", "d", "H", "B"), history_size=3,
                      max_iter=40)
    x_prev = x0
    for row in res.trace:
        assert torch.allclose(row["x"] - x_prev, row["s"], atol=1e-14)
        assert torch.allclose(row["s"], row["alpha"] * row["d"], rtol=1e-12, atol=1e-15)
        xr = row["x"].clone().requires_grad_(True)
        (g,) = torch.autograd.grad(rosenbrock(xr), xr)
        assert torch.allclose(row["g"], g, rtol=1e-12, atol=1e-12)
        assert row["H"].shape == (5, 5) and row["H"].device == x0.device
        cond = float(torch.linalg.cond(row["B"]))                  # B and H are inverses, to rounding
        assert float(torch.linalg.matrix_norm(row["B"] @ row["H"] - torch.eye(5, dtype=x0.dtype, device=x0.device))) \
            <= 1e-12 * cond
        if row["update"] == "accepted" and method in ("bfgs", "dfp", "lbfgs"):   # these satisfy H₊ y = s
            assert torch.allclose(row["H"] @ row["y"], row["s"], rtol=1e-8, atol=1e-12)
        x_prev = row["x"]
    # The next direction is −H g with the recorded H: the recorded matrix is the one the method uses.
    for row, nxt in zip(res.trace, res.trace[1:]):
        if float(nxt["dphi"]) < 0 and method != "sr1":
            assert torch.allclose(nxt["d"], -row["H"] @ row["g"], rtol=1e-8, atol=1e-12)


def test_lbfgs_recorded_h_is_bfgs_from_gamma_i_over_the_last_m_pairs():
    x0 = torch.tensor(X0[5], dtype=torch.float64)
    m = 3
    res = so.minimize(rosenbrock, x0, "lbfgs", history_size=m, record=("s", "y", "H"), max_iter=12)
    pairs = [(r["s"], r["y"]) for r in res.trace if r["update"] == "accepted"]
    last = res.trace[-1]
    S, Y = zip(*pairs[-m:])
    for scale_h0, gamma in ((True, float(S[-1] @ Y[-1] / (Y[-1] @ Y[-1]))), (False, 1.0)):
        H = gamma * torch.eye(5, dtype=torch.float64)
        for s, y in zip(S, Y):
            H = so.bfgs_inverse_update(H, s, y)
        if scale_h0:
            assert torch.allclose(last["H"], H, rtol=1e-10, atol=1e-12)
    unscaled = so.minimize(rosenbrock, x0, "lbfgs", history_size=m, scale_h0=False, record=("s", "y", "H"),
                           max_iter=12)
    pairs = [(r["s"], r["y"]) for r in unscaled.trace if r["update"] == "accepted"]
    H = torch.eye(5, dtype=torch.float64)
    for s, y in pairs[-m:]:
        H = so.bfgs_inverse_update(H, s, y)
    assert torch.allclose(unscaled.trace[-1]["H"], H, rtol=1e-10, atol=1e-12)


def test_pair_rule_none_lets_negative_curvature_in():
    """On a concave stretch with Armijo steps, skipping keeps H positive definite; no test does not."""
    def double_well(x):                        # concave in x₁ for |x₁| < 2/√3
        return -2.0 * x[0] ** 2 + 0.25 * x[0] ** 4 + 0.5 * x[1] ** 2

    x0 = torch.tensor([0.1, 0.3], dtype=torch.float64)
    kept = so.minimize(double_well, x0, "bfgs", line_search="armijo", record=("H",), max_iter=30)
    loose = so.minimize(double_well, x0, "bfgs", line_search="armijo", pair_rule="none", record=("H",),
                        max_iter=30)
    assert any(r["sy"] < 0 and r["update"] == "skipped" for r in kept.trace)
    assert all(float(torch.linalg.eigvalsh(r["H"])[0]) > 0 for r in kept.trace)
    assert any(r["sy"] < 0 and r["update"] == "accepted" for r in loose.trace)
    assert any(float(torch.linalg.eigvalsh(r["H"])[0]) < 0 for r in loose.trace)


def test_record_and_pair_rule_bad_arguments():
    x0 = torch.zeros(2, dtype=torch.float64)
    with pytest.raises(ValueError, match="record"):
        so.minimize(rosenbrock, x0, "bfgs", record=("hessian",))
    with pytest.raises(ValueError, match="record 'H' needs a quasi-Newton"):
        so.minimize(rosenbrock, x0, "gd", record=("H",))
    with pytest.raises(ValueError, match="pair_rule"):
        so.minimize(rosenbrock, x0, "bfgs", pair_rule="damp")


def test_newton_with_a_closed_form_hessian_matches_autograd_and_scipy():
    x0 = torch.tensor(X0[5], dtype=torch.float64)
    problem = so.problems.rosenbrock(5, x0)
    for x in (x0, torch.linspace(-1, 2, 5, dtype=torch.float64)):
        H = so.problems.rosenbrock_hessian(x)
        assert torch.allclose(H, torch.func.hessian(rosenbrock)(x), rtol=1e-13, atol=1e-10)
        assert np.allclose(H.numpy(), scipy.optimize.rosen_hess(x.numpy()), rtol=1e-14)
        assert torch.equal(problem.hessian(x), H)
    auto = so.minimize(rosenbrock, x0, "newton")
    closed = so.minimize(problem.value_and_grad, x0, "newton", jac=True, hess=so.problems.rosenbrock_hessian)
    assert closed.success and closed.nit == auto.nit
    assert torch.allclose(closed.x, auto.x, rtol=1e-10)
    with pytest.raises(ValueError, match="hess is used by method='newton' only"):
        so.minimize(rosenbrock, x0, "bfgs", hess=so.problems.rosenbrock_hessian)
    with pytest.raises(ValueError, match="x must have at least 2"):
        so.problems.rosenbrock_hessian(torch.ones(1))


@pytest.mark.parametrize("method,kernels", [
    ("bfgs", {"bfgs_inverse_update": so.bfgs_inverse_update}),
    ("dfp", {"dfp_inverse_update": so.dfp_inverse_update}),
    ("sr1", {"sr1_update": so.sr1_update}),
    ("lbfgs", {"two_loop_recursion": so.two_loop_recursion}),
    ("bfgs-damped", {"powell_damped_y": so.powell_damped_y, "bfgs_update": so.bfgs_update}),
])
def test_kernels_plug_in_the_public_functions(method, kernels):
    """The public functions plugged in as kernels reproduce the built-in run; a wrong one changes it."""
    x0 = torch.tensor(X0[5], dtype=torch.float64)
    ref = so.minimize(rosenbrock, x0, method, history_size=4)
    own = so.minimize(rosenbrock, x0, method, history_size=4, kernels=kernels)
    assert own.nit == ref.nit and torch.allclose(own.x, ref.x, rtol=1e-9, atol=1e-12)
    swapped = {name: _with_s_and_y_swapped(name, fn) for name, fn in kernels.items()}
    try:
        wrong = so.minimize(rosenbrock, x0, method, history_size=4, kernels=swapped, max_iter=ref.nit)
        assert not (wrong.nit == ref.nit and torch.allclose(wrong.x, ref.x, rtol=1e-9))
    except ValueError:
        pass                                   # some swapped kernels refuse their arguments: also visible


def _with_s_and_y_swapped(name, fn):
    if name == "two_loop_recursion":
        return lambda g, S, Y, gamma: fn(g, Y, S, gamma)
    return lambda A, s, y, *rest: fn(A, y, s, *rest)


def test_kernels_bad_arguments():
    x0 = torch.zeros(2, dtype=torch.float64)
    with pytest.raises(ValueError, match="kernels: method 'bfgs' uses"):
        so.minimize(rosenbrock, x0, "bfgs", kernels={"two_loop_recursion": so.two_loop_recursion})
    with pytest.raises(ValueError, match="must be callable"):
        so.minimize(rosenbrock, x0, "lbfgs", kernels={"two_loop_recursion": 3})


def test_on_failure_retry_keeps_going_on_noisy_gradients():
    """With noisy gradients a failed line search is not the end: stay, redraw the gradient, go on."""
    q = so.problems.quadratic(n=20, cond=1e3, seed=10)
    gen = torch.Generator().manual_seed(1)

    def noisy(x):
        return q.f(x), q.A @ x - q.b + 0.02 * torch.randn(20, generator=gen, dtype=torch.float64)

    stop = so.minimize(noisy, q.x0, "bfgs", jac=True, line_search="armijo", gtol=0.0, max_iter=60, scale_h0=False)
    gen.manual_seed(1)
    retry = so.minimize(noisy, q.x0, "bfgs", jac=True, line_search="armijo", gtol=0.0, max_iter=60,
                        scale_h0=False, on_failure="retry", record=("x", "s"))
    assert not stop.success and "line search" in stop.message and stop.nit < 60
    refused = [row for row in retry.trace if row["update"] == "no step"]
    assert refused and len(retry.trace) == 60
    for row in refused:
        assert row["alpha"] == 0.0 and row["step_norm"] == 0.0 and not bool(row["s"].any())
    assert retry.fun < stop.fun                  # going on after a refused step pays off
    with pytest.raises(ValueError, match="on_failure"):
        so.minimize(noisy, q.x0, jac=True, on_failure="ignore")


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_damped_bfgs_survives_rounding_at_the_minimizer(dtype):
    """In float32 near the minimizer Powell's sᵀr can round to 0: the pair is skipped, nothing raises."""
    q = so.problems.quadratic(n=20, cond=1e3, seed=10, dtype=dtype)
    res = so.minimize(q.value_and_grad, q.x0, "bfgs-damped", jac=True, line_search="armijo", gtol=0.0,
                      max_iter=60, on_failure="retry")
    assert float(res.fun) - float(q.f_star) < (1e-6 if dtype == torch.float32 else 1e-12)


def test_a_nearly_singular_model_is_named_when_the_line_search_fails():
    """A kernel that applies SR1 to (yᵀy/sᵀy) I makes B singular (see the next test); backtracking from α = 1
    cannot shrink a step of length 1e10 far enough in 25 halvings, and the message says why."""
    def sr1_of_scaled_identity(B, s, y, r):
        return so.sr1_update(float(y @ y / (s @ y)) * torch.eye(len(s), dtype=s.dtype), s, y, r)

    res = so.minimize(rosenbrock, torch.tensor(X0[2], dtype=torch.float64), "sr1", line_search="armijo",
                      kernels={"sr1_update": sr1_of_scaled_identity})
    assert not res.success and "nearly singular" in res.message


@pytest.mark.parametrize("seed", range(5))
def test_sr1_of_the_gamma_scaled_identity_is_singular(seed):
    """B₀ = cI, c = yᵀy/sᵀy, v = y − cs: ‖v‖² = c²sᵀs − yᵀy = −c vᵀs, so B₁v = (c + ‖v‖²/vᵀs) v = 0.

    This is why minimize's SR1 uses its first pair only to set B₀ and not also for an update."""
    gen = torch.Generator().manual_seed(seed)
    n = 6
    A = spd_matrix(n, cond=100, seed=seed)
    s = torch.randn(n, generator=gen, dtype=torch.float64)
    for y in (A @ s, torch.randn(n, generator=gen, dtype=torch.float64) + s):      # curvature or not
        if float(s @ y) <= 0:
            continue
        c = float(y @ y / (s @ y))
        v = y - c * s
        B1 = so.sr1_update(c * torch.eye(n, dtype=torch.float64), s, y)
        assert not torch.equal(B1, c * torch.eye(n, dtype=torch.float64))           # the update was made
        assert float(torch.linalg.vector_norm(B1 @ v)) <= 1e-12 * c * float(torch.linalg.vector_norm(v))
        lam = torch.linalg.eigvalsh(B1)
        assert float(lam.abs().min()) <= 1e-12 * float(lam.abs().max())


def test_sr1_with_scaled_h0_does_not_update_the_scaled_identity():
    """Rosenbrock from (−1.2, 1): the first pair only sets B₀ = (yᵀy/sᵀy) I, so the step at k = 1 is a real one."""
    x0 = torch.tensor(X0[2], dtype=torch.float64)
    res = so.minimize(rosenbrock, x0, "sr1", record=("s", "y", "B"))
    assert res.success, res.message
    first = res.trace[0]
    assert first["update"] == "scaled" and math.isnan(first["secant_residual"])
    c = float(first["y"] @ first["y"] / first["sy"])
    torch.testing.assert_close(first["B"], c * torch.eye(2, dtype=torch.float64))
    assert res.trace[1]["alpha"] > 1e-8 and res.trace[1]["update"] == "accepted"
    for row in res.trace[:2]:                      # the models used at k = 1 and k = 2: well conditioned
        lam = torch.linalg.eigvalsh(row["B"])
        assert float(lam[0]) > 1e-6 * float(lam[-1]), lam
    assert min(row["alpha"] for row in res.trace) > 1e-8
    # Without the scaling the first pair is an ordinary SR1 update of I.
    unscaled = so.minimize(rosenbrock, x0, "sr1", scale_h0=False)
    assert unscaled.success and unscaled.trace[0]["update"] == "accepted"


def test_precision_loss_message_suggests_float64_only_below_it():
    from secondorder.minimize import _no_step_reason

    for dtype, suggests in ((torch.float32, True), (torch.float64, False)):
        g = torch.full((3,), 1e-9, dtype=dtype)
        reason = _no_step_reason("max_evals", g, -g)
        assert "precision loss" in reason and ("use float64" in reason) is suggests
