"""Sharpness and gradient descent at the edge of stability, against dense float64 oracles."""

import math

import pytest
import torch
from secondorder.exercises import get_exercise
from secondorder.exercises.hvp import LARGE_N
from secondorder.exercises.power_iteration import stop_margin
from secondorder.problems import quadratic
from secondorder.sharpness import gradient_descent_with_sharpness, sharpness, squared_loss, squared_loss_mlp


def test_sharpness_matches_the_dense_hessian(device):
    q = quadratic(spectrum=torch.tensor([0.5, 1.0, 2.0, 3.0, 7.5]), seed=1, device=device)
    lam, v = sharpness(q.f, torch.ones(5, dtype=torch.float64, device=device), iters=500, tol=1e-14,
                       generator=torch.Generator().manual_seed(0))
    assert abs(float(lam) - 7.5) < 1e-10
    assert v.device.type == torch.device(device).type
    assert abs(float(v.norm()) - 1) < 1e-12 and float((q.A @ v - 7.5 * v).norm()) < 1e-5

    problem = squared_loss_mlp(num_examples=40, hidden=(3,))
    x = problem.x0 + 0.1 * torch.randn(problem.n, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    top = torch.linalg.eigvalsh(torch.func.hessian(problem.f)(x))  # independent dense oracle
    assert abs(float(top[-1])) > abs(float(top[0]))                 # the dominant one is the largest
    lam, _ = sharpness(problem.f, x, iters=3000, tol=1e-13, generator=torch.Generator().manual_seed(2))
    assert abs(float(lam) - float(top[-1])) < 1e-8 * float(top[-1])


def _gd_closed_form(q, lr, steps):
    """x_T = x* + (I − ηA)^T (x0 − x*), from the eigendecomposition of A."""
    lam, Q = q.eigenvalues, q.eigenvectors
    e0 = Q.T @ (q.x0 - q.x_star)
    return q.x_star + Q @ ((1 - lr * lam) ** steps * e0)


@pytest.mark.parametrize("factor", [0.95, 1.05])
def test_gradient_descent_on_a_quadratic_obeys_two_over_eta(factor):
    q = quadratic(n=12, cond=10.0, seed=3)  # λ_max = 10
    lr = factor * 2 / 10.0
    run = gradient_descent_with_sharpness(q.f, q.x0, lr, 200, every=50, power_iters=300, power_tol=1e-12)
    assert run.threshold == pytest.approx(2 / lr) and run.lr == pytest.approx(lr)
    if factor < 1:
        assert not run.diverged and len(run.loss) == 201
        assert torch.allclose(run.x, _gd_closed_form(q, lr, 200), rtol=1e-10, atol=1e-12)
        assert torch.allclose(run.sharpness, torch.full_like(run.sharpness, 10.0), rtol=1e-8)
        assert run.sharpness_steps.tolist() == [0, 50, 100, 150, 200]
        assert torch.allclose(run.ratio, run.sharpness * lr / 2)
        assert bool((run.loss[1:] <= run.loss[:-1] + 1e-12 * run.loss.abs().max()).all())   # η < 2/L: descent
    else:
        assert run.diverged and len(run.loss) < 201
        assert float(run.loss[-1]) > 1e3 * abs(float(run.loss[0]))


def test_losses_are_those_of_the_gradient_descent_iterates():
    problem = squared_loss_mlp(num_examples=30, hidden=(4,))
    run = gradient_descent_with_sharpness(problem.f, problem.x0, 0.2, 5, every=2, power_iters=3)
    x = problem.x0.clone()
    for k in range(6):
        z = x.detach().requires_grad_(True)
        loss = problem.f(z)
        assert float(run.loss[k]) == pytest.approx(float(loss.detach()), rel=1e-12)
        x = x - 0.2 * torch.autograd.grad(loss, z)[0]
    assert run.sharpness_steps.tolist() == [0, 2, 4] and run.hvps <= 9


def test_edge_of_stability_on_the_squared_loss_network():
    """Cohen et al. (2021): at η = 0.3 the sharpness settles near 2/η while the loss still falls."""
    problem = squared_loss_mlp(num_examples=300, hidden=(24,))
    run = gradient_descent_with_sharpness(problem.f, problem.x0, 0.3, 300, every=20, power_iters=12)
    tail = run.sharpness[len(run.sharpness) // 2:]
    assert not run.diverged
    assert float(run.sharpness[0]) > run.threshold                      # started above 2/η ...
    assert abs(float(tail.median()) / run.threshold - 1) < 0.15         # ... and hovers at it
    assert float(run.loss[-1]) < 0.5 * float(run.loss[0])


def test_squared_loss_mlp_is_the_documented_function():
    problem = squared_loss_mlp(num_examples=25, hidden=(5, 4))
    assert problem.n == 64 * 5 + 5 + 5 * 4 + 4 + 4 * 10 + 10
    inputs, targets = problem.batch
    assert inputs.shape == (25, 64) and float(inputs.max()) <= 1.0 and torch.equal(targets.sum(1), torch.ones(25))
    manual = float((0.5 * ((problem.model(inputs) - targets) ** 2).sum() / 25).detach())
    assert float(problem.f(problem.x0).detach()) == pytest.approx(manual, rel=1e-12)
    assert float(squared_loss(problem.model, problem.batch).detach()) == pytest.approx(manual, rel=1e-12)
    default = torch.get_default_dtype()
    try:
        torch.set_default_dtype(torch.float64)
        again = squared_loss_mlp(num_examples=25, hidden=(5, 4))
    finally:
        torch.set_default_dtype(default)
    assert torch.equal(again.x0, problem.x0)                            # x0 does not depend on the default dtype
    assert squared_loss_mlp(num_examples=5, dtype=torch.float32).x0.dtype == torch.float32


def test_argument_errors_name_the_argument():
    q = quadratic(n=3, cond=2.0)
    for kwargs, name in ((dict(lr=0.0), "lr"), (dict(lr=-1.0), "lr"), (dict(steps=-1), "steps"),
                         (dict(every=0), "every"), (dict(power_iters=0), "power_iters"),
                         (dict(divergence=0.0), "divergence")):
        args = dict(lr=0.1, steps=3) | kwargs
        with pytest.raises(ValueError, match=name):
            gradient_descent_with_sharpness(q.f, q.x0, **args)
    with pytest.raises(ValueError, match="x0"):
        gradient_descent_with_sharpness(q.f, torch.zeros(3, 3), 0.1, 3)
    with pytest.raises(ValueError, match="v0"):
        sharpness(q.f, q.x0, v0=torch.ones(4))
    with pytest.raises(ValueError, match="num_examples"):
        squared_loss_mlp(num_examples=0)
    with pytest.raises(ValueError, match="num_examples"):
        squared_loss_mlp(num_examples=5000)
    with pytest.raises(ValueError, match="hidden"):
        squared_loss_mlp(hidden=(0,))


# The section-05 exercises grade the same two kernels: their cases must be sound.

def test_power_iteration_exercise_cases_stop_far_from_their_boundary():
    """Each case's stopping test is ≥ 2 % away from firing one step early or late, so any correct
    arrangement of the arithmetic makes as many products as the reference."""
    for case in get_exercise("power_iteration").cases():
        assert stop_margin(*case.make_args()) > 0.02, case.id


def test_hvp_exercise_reference_matches_dense_hessians():
    exercise = get_exercise("hvp")
    for case in exercise.cases():
        f, x, v = case.make_args()
        out = exercise.expected((f, x, v))
        if x.numel() == LARGE_N:                                        # separable + rank-3: Hv in closed form
            A = f.bound["A"]
            exact = (2 * torch.cos(x) - x * torch.sin(x)) * v + 2 * A.T @ (A @ v)
        else:
            x64, v64 = x.detach().double().reshape(-1), v.double().reshape(-1)
            fn64 = type(f)(f.source, {k: t.double() for k, t in f.bound.items()}).fn
            H = torch.func.hessian(lambda z, fn=fn64, shape=x.shape: fn(z.reshape(shape)))(x64)
            exact = (H @ v64).reshape(x.shape)
        tol = 1e-12 if x.dtype == torch.float64 else 1e-5
        scale = max(float(exact.norm()), 1e-300)
        assert float((out.double() - exact).norm()) <= tol * scale or float(exact.norm()) == float(out.norm()) == 0, \
            case.id
        assert out.dtype == x.dtype and out.shape == x.shape and math.isfinite(float(out.norm()))
