"""secondorder.optim.LBFGS and BFGS: agreement with torch.optim.LBFGS, convergence, state round trips."""

import copy
import io
import math
import warnings

import pytest
import secondorder.optim.lbfgs as lbfgs_module
import torch
from secondorder.optim import BFGS, LBFGS, compact_coefficients
from secondorder.quasi_newton import bfgs_inverse_update, curvature_pair_accepted, initial_scaling
from secondorder.two_loop import two_loop_recursion

devices = [pytest.param("cpu", id="cpu")]
if torch.cuda.is_available():
    devices.append(pytest.param("cuda", id="cuda", marks=pytest.mark.gpu))

F64 = torch.float64


# --- problems (float64 unless asked) ----------------------------------------------------------------

def quadratic(n=40, cond=1e3, scale=1.0, seed=0, device="cpu"):
    """f(x) = scale · ½ (x - 1)ᵀ A (x - 1), A with eigenvalues log-spaced in [1, cond], x0 = 0."""
    gen = torch.Generator().manual_seed(seed)
    Q, _ = torch.linalg.qr(torch.randn(n, n, generator=gen, dtype=F64))
    A = ((Q * torch.logspace(0, math.log10(cond), n, dtype=F64)) @ Q.T).to(device)  # (n, n)
    A = 0.5 * (A + A.T)
    ones = torch.ones(n, dtype=F64, device=device)

    def f(x):
        r = x - ones
        return scale * 0.5 * (r @ (A @ r))

    return f, torch.zeros(n, dtype=F64, device=device)


def rosenbrock(device="cpu"):
    def f(x):
        return (1 - x[0]) ** 2 + 100 * (x[1] - x[0] ** 2) ** 2

    return f, torch.tensor([-1.2, 1.0], dtype=F64, device=device)


def logistic(device="cpu"):
    """Regularized logistic regression: the course's breast-cancer problem, or a synthetic one."""
    try:
        from secondorder.problems import logistic_regression
    except ImportError:
        gen = torch.Generator().manual_seed(1)
        X = torch.randn(200, 12, generator=gen, dtype=F64).to(device)  # (N, d)
        t = (torch.rand(200, generator=gen, dtype=F64) < 0.5).to(F64).to(device)  # (N,)

        def f(x):
            return torch.nn.functional.binary_cross_entropy_with_logits(X @ x, t) + 5e-4 * (x @ x)

        return f, torch.zeros(12, dtype=F64, device=device)
    p = logistic_regression(device=device)
    return p.f, p.x0


def gradient(f, x):
    x = x.detach().requires_grad_(True)
    (g,) = torch.autograd.grad(f(x), x)
    return g


def trajectory(opt_cls, f, x0, steps, **kwargs):
    """Iterates after each of ``steps`` calls of ``step``, shape (steps, n); also the optimizer."""
    x = torch.nn.Parameter(x0.clone())
    opt = opt_cls([x], **kwargs)

    def closure():
        opt.zero_grad()
        loss = f(x)
        loss.backward()
        return loss

    return torch.stack([_step(opt, closure, x) for _ in range(steps)]), opt


def _step(opt, closure, x):
    opt.step(closure)
    return x.detach().clone()


# --- (a) the same iterates as torch.optim.LBFGS without a line search ----------------------------

@pytest.mark.parametrize("problem", [quadratic, logistic])
@pytest.mark.parametrize("max_iter, steps, m", [(1, 50, 10), (50, 1, 10), (1, 50, 3)])
def test_lbfgs_matches_torch(problem, max_iter, steps, m):
    # κ = 1e3: perturbing x0 by 1e-15 moves torch's own 50th iterate by about 4e-11 here (1e-9 at
    # κ = 1e4), so 1e-10 is as tight as any reimplementation can be held on this problem.
    f, x0 = problem()
    ours, opt = trajectory(LBFGS, f, x0, steps, history_size=m, max_iter=max_iter)
    ref, ref_opt = trajectory(torch.optim.LBFGS, f, x0, steps, history_size=m, max_iter=max_iter)
    torch.testing.assert_close(ours, ref, atol=1e-10, rtol=0)
    state, ref_state = opt.state[opt._params[0]], ref_opt.state[ref_opt._params[0]]
    assert (state["n_iter"], state["func_evals"]) == (ref_state["n_iter"], ref_state["func_evals"])
    assert state["count"] == len(ref_state["old_dirs"])


def test_lbfgs_row_kernels_match_torch(monkeypatch):
    # The row-by-row products LBFGS uses for large buffers on a multi-threaded CPU, forced on here.
    monkeypatch.setattr(lbfgs_module, "ROW_KERNEL_MIN_BYTES", 0)
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        f, x0 = quadratic()
        ours, _ = trajectory(LBFGS, f, x0, 30, history_size=4, max_iter=1)
        ref, _ = trajectory(torch.optim.LBFGS, f, x0, 30, history_size=4, max_iter=1)
    finally:
        torch.set_num_threads(threads)
    torch.testing.assert_close(ours, ref, atol=1e-10, rtol=0)


def test_lbfgs_matches_torch_with_several_parameters():
    f, x0 = logistic()
    shapes = [(x0.numel() - 1,), ()]

    def run(opt_cls):
        params = [torch.nn.Parameter(p.clone().view(s)) for p, s in zip(x0.split([shapes[0][0], 1]), shapes)]
        opt = opt_cls(params, history_size=5, max_iter=30)

        def closure():
            opt.zero_grad()
            loss = f(torch.cat([p.view(-1) for p in params]))
            loss.backward()
            return loss

        first = opt.step(closure)
        return torch.cat([p.detach().view(-1) for p in params]), first

    (ours, first), (ref, ref_first) = run(LBFGS), run(torch.optim.LBFGS)
    torch.testing.assert_close(ours, ref, atol=1e-10, rtol=0)
    assert float(first.detach()) == float(ref_first.detach()) == float(f(x0))


def test_lbfgs_rejects_pairs_like_torch():
    # At this scale every y·s is below 1e-10, so both keep no pair and take gradient steps.
    f, x0 = quadratic(n=10, cond=10.0, scale=1e-12)
    ours, opt = trajectory(LBFGS, f, x0, 5, max_iter=4)
    ref, _ = trajectory(torch.optim.LBFGS, f, x0, 5, max_iter=4)
    assert opt.state[opt._params[0]]["count"] == 0
    torch.testing.assert_close(ours, ref, atol=1e-14, rtol=0)


@pytest.mark.parametrize("opt_cls", [LBFGS, torch.optim.LBFGS])
def test_step_returns_the_first_loss(opt_cls):
    x = torch.nn.Parameter(torch.tensor([3.0, -1.0], dtype=F64))
    opt = opt_cls([x], max_iter=5)
    losses = []

    def closure():
        opt.zero_grad()
        loss = (x**2).sum()
        loss.backward()
        losses.append(loss)
        return loss

    assert opt.step(closure) is losses[0]
    assert len(losses) == 3  # x0, the scaled first step, then the exact minimum: |Δf| stops it


# --- the compact representation against the two-loop recursion ----------------------------------

@pytest.mark.parametrize("k", [1, 4])
def test_compact_coefficients_match_two_loop(k):
    gen = torch.Generator().manual_seed(k)
    n = 12
    M = torch.randn(n, n, generator=gen, dtype=F64)
    A = M @ M.T + n * torch.eye(n, dtype=F64)  # (n, n)
    S = torch.randn(k, n, generator=gen, dtype=F64)  # (k, n): rows s_i, oldest first
    Y = S @ A  # (k, n): y_i = A s_i, so y_i·s_i > 0
    g = torch.randn(n, generator=gen, dtype=F64)
    gamma = torch.tensor(0.3, dtype=F64)
    u, v = compact_coefficients(S @ g, Y @ g, S @ Y.T, Y @ Y.T, gamma)
    Hg = gamma * g + S.T @ u + gamma * (Y.T @ v)
    torch.testing.assert_close(Hg, two_loop_recursion(g, list(S), list(Y), gamma), atol=1e-12, rtol=1e-12)


def test_pair_rule_is_curvature_pair_accepted():
    gen = torch.Generator().manual_seed(0)
    verdicts = []
    for _ in range(40):
        s, y = torch.randn(2, 6, generator=gen, dtype=F64)  # cos(s, y) spread over (-1, 1)
        ours = bool(lbfgs_module._pair_accepted(s, y, torch.dot(y, s), 0.3))
        assert ours == bool(curvature_pair_accepted(s, y, 0.3))
        verdicts.append(ours)
    assert any(verdicts) and not all(verdicts)


# --- (b) convergence with the strong Wolfe line search ------------------------------------------

@pytest.mark.parametrize("device", devices)
@pytest.mark.parametrize("problem, max_iter", [(quadratic, 300), (rosenbrock, 100)])
def test_lbfgs_strong_wolfe_converges(device, problem, max_iter):
    f, x0 = problem(device=device) if problem is rosenbrock else problem(n=20, cond=1e2, device=device)
    xs, opt = trajectory(LBFGS, f, x0, 1, history_size=10, max_iter=max_iter, max_eval=2 * max_iter,
                         line_search_fn="strong_wolfe", tolerance_grad=1e-9, tolerance_change=0.0)
    assert float(gradient(f, xs[-1]).norm()) < 1e-6
    assert opt.state[opt._params[0]]["n_iter"] < max_iter


@pytest.mark.parametrize("device", devices)
def test_lbfgs_runs_in_float32_on_device(device):
    f, x0 = quadratic(n=30, cond=100.0, device=device)
    x0 = x0.float()

    def f32(x):
        return f(x.double()).float()

    xs, _ = trajectory(LBFGS, f32, x0, 1, max_iter=60, history_size=5)
    assert xs.dtype == torch.float32 and xs.device.type == device
    assert float((xs[-1] - 1).abs().max()) < 1e-3


def _syncs_per_iteration(opt_cls, iters=10, m=5):
    """Host synchronizations per iteration on CUDA, counted by torch's sync debug mode."""
    x = torch.nn.Parameter(torch.ones(1000, device="cuda"))
    a = torch.logspace(0, 2, 1000, device="cuda")
    opt = opt_cls([x], history_size=m, max_iter=3 * m, tolerance_grad=0.0, tolerance_change=0.0)

    def closure():
        opt.zero_grad()
        loss = 0.5 * (a * x * x).sum()
        loss.backward()
        return loss

    opt.step(closure)                               # warm-up: the history wraps around
    opt.param_groups[0]["max_iter"] = iters
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            opt.step(closure)
        finally:
            torch.cuda.set_sync_debug_mode("default")
    return sum("synchroniz" in str(w.message) for w in caught) / iters


@pytest.mark.gpu
def test_lbfgs_synchronizes_twice_per_iteration_on_cuda():
    ours, theirs = _syncs_per_iteration(LBFGS), _syncs_per_iteration(torch.optim.LBFGS)
    assert ours <= 2.2                                # the scalars after each evaluation, and g·d
    assert ours < theirs


# --- (c) state_dict round trip ----------------------------------------------------------------------

def _continue(opt_cls, f, x0, first, then, through_bytes, device, **kwargs):
    """Run ``first`` steps, copy the state into a fresh optimizer, run ``then`` more in both."""
    x = torch.nn.Parameter(x0.clone())
    opt = opt_cls([x], **kwargs)

    def make_closure(opt, x):
        def closure():
            opt.zero_grad()
            loss = f(x)
            loss.backward()
            return loss

        return closure

    for _ in range(first):
        opt.step(make_closure(opt, x))
    saved = opt.state_dict()
    if through_bytes:
        buffer = io.BytesIO()
        torch.save(saved, buffer)
        saved = torch.load(io.BytesIO(buffer.getvalue()), map_location=device)
    x2 = torch.nn.Parameter(x.detach().clone())
    opt2 = opt_cls([x2], **kwargs)
    opt2.load_state_dict(saved)
    a = [_step(opt, make_closure(opt, x), x) for _ in range(then)]
    b = [_step(opt2, make_closure(opt2, x2), x2) for _ in range(then)]
    return torch.stack(a), torch.stack(b)


@pytest.mark.parametrize("device", devices)
@pytest.mark.parametrize("opt_cls, kwargs", [
    (LBFGS, dict(history_size=3, max_iter=3)),
    (LBFGS, dict(history_size=4, max_iter=4, line_search_fn="strong_wolfe")),
    (LBFGS, dict(history_size=3, max_iter=2, curvature_eps=1e-8)),
    (BFGS, dict(max_iter=3)),
    (BFGS, dict(max_iter=3, line_search_fn=None, lr=0.5)),
])
@pytest.mark.parametrize("through_bytes", [False, True], ids=["in-memory", "torch.save"])
def test_state_dict_round_trip(device, opt_cls, kwargs, through_bytes):
    f, x0 = quadratic(n=20, cond=1e2, device=device)
    a, b = _continue(opt_cls, f, x0, 3, 4, through_bytes, device, **kwargs)
    assert torch.equal(a, b)


# --- (d) BFGS ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("device", devices)
@pytest.mark.parametrize("problem, max_iter", [(rosenbrock, 100), (quadratic, 300), (logistic, 200)])
def test_bfgs_converges(device, problem, max_iter):
    f, x0 = problem(device=device)
    xs, opt = trajectory(BFGS, f, x0, 1, max_iter=max_iter, max_eval=2 * max_iter, tolerance_grad=1e-9,
                         tolerance_change=0.0)
    assert float(gradient(f, xs[-1]).norm()) < 1e-6
    assert opt.state[opt._params[0]]["n_iter"] < max_iter


def test_bfgs_matches_updates_by_hand():
    f, x = quadratic(n=8, cond=50.0)
    ours, opt = trajectory(BFGS, f, x, 6, max_iter=1, line_search_fn=None)
    g, g_prev, H = gradient(f, x), None, None
    for k in range(6):
        if k == 0:
            d, t = -g, min(1.0, 1.0 / float(g.abs().sum()))
        else:
            s, y = t * d, g - g_prev
            H0 = initial_scaling(s, y) * torch.eye(8, dtype=F64) if H is None else H  # (6.20)
            H = bfgs_inverse_update(H0, s, y)
            d, t = -H @ g, 1.0
        g_prev, x = g, x + t * d
        g = gradient(f, x)
        torch.testing.assert_close(ours[k], x, atol=1e-12, rtol=0)
    torch.testing.assert_close(opt.state[opt._params[0]]["H"], H, atol=1e-12, rtol=0)


# --- (e) the scale-invariant curvature rule --------------------------------------------------------

def _iterations_to(f, x0, tol, **kwargs):
    xs, _ = trajectory(LBFGS, f, x0, 40, max_iter=1, tolerance_grad=0.0, tolerance_change=0.0, **kwargs)
    err = (xs - 1).norm(dim=1) / (x0 - 1).norm()  # (40,)
    below = (err < tol).nonzero()
    return int(below[0]) + 1 if len(below) else math.inf


def test_curvature_eps_makes_lbfgs_scale_invariant():
    f1, x0 = quadratic(n=20, cond=1e2, scale=1.0)
    f_tiny, _ = quadratic(n=20, cond=1e2, scale=1e-12)
    at_scale_1 = _iterations_to(f1, x0, 1e-8, curvature_eps=1e-8)
    assert at_scale_1 < 40
    assert abs(_iterations_to(f_tiny, x0, 1e-8, curvature_eps=1e-8) - at_scale_1) <= 2
    assert _iterations_to(f_tiny, x0, 1e-8) == math.inf          # torch's rule: no pair is kept
    xs, _ = trajectory(torch.optim.LBFGS, f_tiny, x0, 40, max_iter=1, tolerance_grad=0.0, tolerance_change=0.0)
    assert float((xs[-1] - 1).norm() / (x0 - 1).norm()) > 0.9  # and torch barely moves


# --- (f) arguments ----------------------------------------------------------------------------------

@pytest.mark.parametrize("opt_cls, kwargs, name", [
    (LBFGS, dict(history_size=0), "history_size"),
    (LBFGS, dict(line_search_fn="wolfe"), "line_search_fn"),
    (LBFGS, dict(lr=-1.0), "lr"),
    (LBFGS, dict(max_iter=0), "max_iter"),
    (LBFGS, dict(curvature_eps=-1e-8), "curvature_eps"),
    (LBFGS, dict(tolerance_grad=-1.0), "tolerance_grad"),
    (BFGS, dict(lr=-0.1), "lr"),
    (BFGS, dict(line_search_fn="armijo"), "line_search_fn"),
    (BFGS, dict(curvature_eps=None), "curvature_eps"),
    (BFGS, dict(max_dense=2), "max_dense"),
])
def test_bad_arguments_name_the_argument(opt_cls, kwargs, name):
    with pytest.raises(ValueError, match=name):
        opt_cls([torch.nn.Parameter(torch.zeros(3))], **kwargs)


@pytest.mark.parametrize("opt_cls", [LBFGS, BFGS])
def test_one_parameter_group_only(opt_cls):
    groups = [{"params": [torch.nn.Parameter(torch.zeros(2))]}, {"params": [torch.nn.Parameter(torch.zeros(2))]}]
    with pytest.raises(ValueError, match="single parameter group"):
        opt_cls(groups)


def test_parameters_must_share_dtype():
    with pytest.raises(ValueError, match="one dtype and device"):
        LBFGS([torch.nn.Parameter(torch.zeros(2)), torch.nn.Parameter(torch.zeros(2, dtype=F64))])


def test_loaded_state_is_not_shared_with_the_source():
    f, x0 = quadratic(n=10, cond=10.0)
    _, opt = trajectory(LBFGS, f, x0, 2, history_size=3, max_iter=3)
    opt2 = LBFGS([torch.nn.Parameter(x0.clone())], history_size=3, max_iter=3)
    opt2.load_state_dict(copy.copy(opt.state_dict()))
    state, state2 = opt.state[opt._params[0]], opt2.state[opt2._params[0]]
    assert state["pairs"].data_ptr() != state2["pairs"].data_ptr()
    assert torch.equal(state["pairs"], state2["pairs"])
