"""CurvatureMonitor in real training loops: recorded quantities against hand-computed and dense oracles."""

import math

import matplotlib
import pytest
import torch
from secondorder import testing
from secondorder.monitor import COLUMNS, CurvatureMonitor
from secondorder.problems import flat_params, quadratic, tiny_mlp
from torch import nn

matplotlib.use("Agg")


class Point(nn.Module):
    """The parameter vector of a quadratic problem as a module, so torch.optim can train it."""

    def __init__(self, x0):
        super().__init__()
        self.x = nn.Parameter(x0.clone())


def quadratic_loss(problem):
    return lambda model, batch: problem.f(model.x)


def small_mlp(device, examples=48):
    problem = tiny_mlp(hidden=(4,), device=device)  # n = 310: a dense Hessian is instant
    batch = tuple(t[:examples] for t in problem.batch)
    return problem, batch


def train(model, loss_fn, batch, monitor, steps, lr):
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    losses = []
    for _ in range(steps):
        opt.zero_grad()
        loss = loss_fn(model, batch)
        loss.backward()
        opt.step()
        monitor.step(loss)
        losses.append(float(loss.detach()))
    return losses


def test_records_every_column_and_matches_dense_sharpness(device):
    problem, batch = small_mlp(device)
    monitor = CurvatureMonitor(problem.model, problem.loss, batch=batch, every=2, sharpness_every=8,
                               fisher_every=8, lr=0.5, power_iters=300, power_tol=1e-10)
    train(problem.model, problem.loss, batch, monitor, 9, lr=0.5)
    assert [r["step"] for r in monitor.rows] == [0, 2, 4, 6, 8]
    assert all(tuple(r) == COLUMNS for r in monitor.rows)
    assert math.isnan(monitor.rows[0]["sy"])  # no previous gradient at the first step
    for r in monitor.rows:
        for key in ("loss", "grad_norm", "update_norm", "param_norm", "update_ratio", "lr", "eos_threshold"):
            assert math.isfinite(r[key]), key
        assert (r["step"] % 8 == 0) == math.isfinite(r["sharpness"]) == math.isfinite(r["fisher_trace"])
    assert all(math.isfinite(r["sy"]) for r in monitor.rows[1:])
    last = monitor.rows[-1]
    # The last row was recorded at the current parameters: compare with the dense Hessian there.
    H = problem.hessian(flat_params(problem.model), batch).double().cpu()
    eig = torch.linalg.eigvalsh(H)
    top = eig[eig.abs().argmax()]
    assert math.isclose(last["sharpness"], float(top), rel_tol=1e-6), (last["sharpness"], float(top))
    assert math.isclose(last["sharpness_ratio"], last["sharpness"] * 0.5 / 2)
    assert last["eos_threshold"] == 4.0


def test_secant_pair_statistics_match_the_trajectory(device):
    problem = quadratic(12, cond=20.0, device=device)
    lr = 0.04
    for every in (1, 3):
        model = Point(problem.x0)
        monitor = CurvatureMonitor(model, every=every, lr=lr)
        xs, gs = [], []
        opt = torch.optim.SGD(model.parameters(), lr=lr)
        for _ in range(10):
            opt.zero_grad()
            xs.append(model.x.detach().clone())
            loss = problem.f(model.x)
            loss.backward()
            gs.append(model.x.grad.detach().clone())
            opt.step()
            monitor.step(loss)
        assert [r["step"] for r in monitor.rows] == list(range(0, 10, every))
        prev_record = problem.x0
        for r in monitor.rows:
            k = r["step"]
            theta = xs[k + 1] if k + 1 < len(xs) else model.x.detach()
            assert math.isclose(r["update_norm"], float(torch.linalg.vector_norm(theta - prev_record)),
                                rel_tol=1e-10)
            assert math.isclose(r["grad_norm"], float(torch.linalg.vector_norm(gs[k])), rel_tol=1e-10)
            prev_record = theta
            if k == 0:
                continue
            s, y = xs[k] - xs[k - 1], gs[k] - gs[k - 1]  # consecutive steps, whatever `every` is
            testing.check_close("y", y.cpu(), (problem.A @ s).cpu())  # the quadratic's secant equation
            assert math.isclose(r["sy"], float(s @ y), rel_tol=1e-10)
            assert math.isclose(r["y_over_s"], float(y.norm() / s.norm()), rel_tol=1e-10)
            assert 0 < r["sy_cos"] <= 1 + 1e-12


def test_edge_of_stability_on_a_quadratic(device):
    """Gradient descent diverges when lr > 2/λ_max, and the monitor shows sharpness·lr/2 > 1."""
    problem = quadratic(20, cond=100.0, device=device)  # λ_max = 100
    results = {}
    for factor in (1.9, 2.1):
        lr = factor / 100.0
        model = Point(problem.x0)
        monitor = CurvatureMonitor(model, quadratic_loss(problem), every=10, sharpness_every=30, lr=lr,
                                   power_iters=300, power_tol=1e-12)
        losses = train(model, quadratic_loss(problem), None, monitor, 150, lr)
        results[factor] = (losses, monitor)
    stable, unstable = results[1.9], results[2.1]
    assert stable[0][-1] < stable[0][0]
    # The error along the top eigenvector grows by |1 − lr·λ_max| = 1.1 per step: 1.1^300 in the loss.
    assert unstable[0][-1] > 1e6 * abs(problem.f_star)
    for factor, (_, monitor) in results.items():
        ratios = [r for r in monitor.column("sharpness_ratio") if not math.isnan(r)]
        assert len(ratios) == 5
        assert all(math.isclose(r, factor / 2, rel_tol=1e-8) for r in ratios), ratios
        sharp = [s for s in monitor.column("sharpness") if not math.isnan(s)]
        assert all(math.isclose(s, 100.0, rel_tol=1e-8) for s in sharp), sharp


def test_fisher_trace_against_per_example_gradients(device):
    problem, batch = small_mlp(device, examples=8)
    monitor = CurvatureMonitor(problem.model, problem.loss, batch=batch)
    exact = 0.0
    for i in range(8):
        problem.model.zero_grad()
        problem.loss(problem.model, tuple(t[i : i + 1] for t in batch)).backward()
        exact += sum(float(p.grad.pow(2).sum()) for p in problem.model.parameters()) / 8
    assert math.isclose(monitor.fisher_trace(), exact, rel_tol=1e-8)
    hutch = CurvatureMonitor(problem.model, problem.loss, batch=batch, fisher="hutchinson", fisher_samples=64)
    assert math.isclose(hutch.fisher_trace(), exact, rel_tol=0.3)


def test_csv_round_trip_and_plot(device, tmp_path):
    problem, batch = small_mlp(device)
    opt = torch.optim.SGD(problem.model.parameters(), lr=0.3)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=3, gamma=0.5)
    monitor = CurvatureMonitor(problem.model, problem.loss, batch=batch, optimizer=opt,
                               sharpness_every=2, fisher_every=3)
    for _ in range(7):
        opt.zero_grad()
        loss = problem.loss(problem.model, batch)
        loss.backward()
        opt.step()
        monitor.step(loss)
        sched.step()
    assert monitor.column("lr") == [0.3, 0.3, 0.3, 0.15, 0.15, 0.15, 0.075]  # follows the schedule
    path = tmp_path / "run.csv"
    monitor.to_csv(path)
    back = CurvatureMonitor.read_csv(path)
    assert len(back) == len(monitor) == 7
    for a, b in zip(monitor.rows, back):
        assert a.keys() == b.keys()
        for key in a:
            assert a[key] == b[key] or (math.isnan(a[key]) and math.isnan(b[key])), key
    fig = monitor.plot()
    assert len(fig.axes) == 4  # loss, norms, sharpness, Fisher trace
    import matplotlib.pyplot as plt

    plt.close(fig)


def test_cheap_default_and_argument_errors():
    problem, batch = small_mlp("cpu")
    model = problem.model
    monitor = CurvatureMonitor(model)  # no loss_fn needed for the cheap quantities
    with pytest.raises(ValueError, match="no gradients"):
        monitor.step(1.0)
    train(model, problem.loss, batch, monitor, 3, lr=0.1)
    assert all(math.isnan(r["sharpness"]) and math.isnan(r["fisher_trace"]) for r in monitor.rows)
    assert all(math.isnan(r["eos_threshold"]) for r in monitor.rows)  # no lr given
    with pytest.raises(ValueError, match="sharpness_every"):
        CurvatureMonitor(model, problem.loss, every=3, sharpness_every=4)
    with pytest.raises(ValueError, match="loss_fn"):
        CurvatureMonitor(model, sharpness_every=1)
    with pytest.raises(ValueError, match="fisher"):
        CurvatureMonitor(model, fisher="true")
    with pytest.raises(ValueError, match="every"):
        CurvatureMonitor(model, every=0)
    with pytest.raises(ValueError, match="batch"):
        CurvatureMonitor(model, problem.loss, fisher_every=1).fisher_trace()
