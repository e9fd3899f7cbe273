"""Shampoo, SOAP and Muon: one conformance suite, reductions to their anchors, and their properties."""

import copy
import math

import pytest
import torch
from secondorder import testing
from secondorder.optim.muon import Muon, split_muon_params
from secondorder.optim.shampoo import Shampoo
from secondorder.optim.soap import SOAP
from secondorder.problems import tiny_mlp, tiny_transformer
from torch import nn

NAMES = ["shampoo", "soap", "muon"]


class LeastSquares(nn.Module):
    """½‖A W − B‖²_F over a matrix W (20 × 10); A has condition number ``cond`` and B = A W*."""

    def __init__(self, cond=1e2, dtype=torch.float64, device="cpu", seed=0):
        super().__init__()
        gen = torch.Generator().manual_seed(seed)
        U, _ = torch.linalg.qr(torch.randn(30, 20, generator=gen, dtype=torch.float64))
        V, _ = torch.linalg.qr(torch.randn(20, 20, generator=gen, dtype=torch.float64))
        A = (U * torch.logspace(0, -math.log10(cond), 20, dtype=torch.float64)) @ V.T  # (30, 20)
        B = A @ torch.randn(20, 10, generator=gen, dtype=torch.float64)  # (30, 10)
        self.register_buffer("A", A.to(dtype=dtype, device=device))
        self.register_buffer("B", B.to(dtype=dtype, device=device))
        self.W = nn.Parameter(torch.zeros(20, 10, dtype=dtype, device=device))

    def loss(self):
        return 0.5 * ((self.A @ self.W - self.B) ** 2).sum()


def build(name, model, **overrides):
    """The optimizer under test with settings that refresh its preconditioner within a few steps."""
    if name == "muon":
        muon, adamw = split_muon_params(model, exclude=("head",))
        return Muon(muon, **{"lr": 0.02, "adamw_params": adamw, "adamw_lr": 3e-3, **overrides})
    # SOAP's early steps are short: in the eigenbasis of a few gradients' factors, each gradient has
    # only a few non-zero coordinates, and Adam's normalization leaves it at their number's square root.
    cls, lr = (Shampoo, 3e-3) if name == "shampoo" else (SOAP, 1e-2)
    return cls(model.parameters(), **{"lr": lr, "precondition_frequency": 3, **overrides})


def transformer(device, seed=0):
    return tiny_transformer(seed=seed, context=16, d_model=16, n_heads=2, n_layers=1, batch_size=8,
                            dtype=torch.float32, device=device)


def train(problem, model, opt, steps):
    losses = []
    for _ in range(steps):
        opt.zero_grad()
        loss = problem.loss(model, problem.batch)
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    return losses


def params_equal(a, b):
    return all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters(), strict=True))


# ---------------------------------------------------------------------------------------------------
# Conformance: every optimizer, every device


@pytest.mark.parametrize("name", NAMES)
def test_state_dict_round_trip_continues_identically(device, name):
    problem = transformer(device)
    model = problem.model
    opt = build(name, model)
    train(problem, model, opt, 4)
    twin = copy.deepcopy(model)
    twin_opt = build(name, twin)
    twin_opt.load_state_dict(copy.deepcopy(opt.state_dict()))
    train(problem, model, opt, 5)  # crosses a refresh of the preconditioner
    train(problem, twin, twin_opt, 5)
    assert params_equal(model, twin), f"{name}: the run resumed from state_dict diverged from the original"


@pytest.mark.parametrize("name", NAMES)
def test_runs_are_deterministic(device, name):
    runs = []
    for _ in range(2):
        problem = transformer(device)
        train(problem, problem.model, build(name, problem.model), 6)
        runs.append(problem.model)
    assert params_equal(*runs)


@pytest.mark.parametrize("name", NAMES)
def test_loss_decreases_on_ill_conditioned_least_squares(device, name):
    model = LeastSquares(cond=1e2, device=device)
    opt = build(name, model, lr=0.1, weight_decay=0.0)
    losses = []
    for _ in range(100):
        opt.zero_grad()
        loss = model.loss()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < 0.05 * losses[0], f"{name}: loss went from {losses[0]:.3g} to {losses[-1]:.3g}"


@pytest.mark.parametrize("name", NAMES)
def test_loss_decreases_on_tiny_transformer(device, name):
    problem = transformer(device)
    losses = train(problem, problem.model, build(name, problem.model), 30)
    assert all(math.isfinite(v) for v in losses)
    assert losses[-1] < losses[0] - 1.0, f"{name}: loss went from {losses[0]:.3f} to {losses[-1]:.3f}"


# ---------------------------------------------------------------------------------------------------
# Reductions to the anchors


def mlp():
    return tiny_mlp(hidden=(16,), dtype=torch.float64)


def assert_same_trajectory(ours, theirs, problem, steps=10, rtol=1e-12):
    model_a, model_b = problem.model, copy.deepcopy(problem.model)
    train(problem, model_a, ours(model_a.parameters()), steps)
    train(problem, model_b, theirs(model_b.parameters()), steps)
    for (name, a), b in zip(model_a.named_parameters(), model_b.parameters(), strict=True):
        testing.check_close(name, a, b, rtol=rtol)


def test_shampoo_without_preconditioning_is_adamw():
    kw = dict(lr=1e-2, betas=(0.8, 0.99), weight_decay=0.1)
    assert_same_trajectory(lambda p: Shampoo(p, **kw, graft_eps=1e-6, start_preconditioning_step=math.inf),
                           lambda p: torch.optim.AdamW(p, **kw, eps=1e-6), mlp())


def test_shampoo_without_preconditioning_is_sgd():
    assert_same_trajectory(lambda p: Shampoo(p, lr=0.1, grafting="sgd", start_preconditioning_step=math.inf),
                           lambda p: torch.optim.SGD(p, lr=0.1), mlp(), rtol=0.0)


def test_soap_with_identity_basis_is_adamw():
    kw = dict(lr=1e-2, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.05)
    assert_same_trajectory(lambda p: SOAP(p, **kw, start_preconditioning_step=math.inf),
                           lambda p: torch.optim.AdamW(p, **kw), mlp())


@pytest.mark.parametrize("rule", [None, "match_rms_adamw"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("shape", [(48, 80), (80, 48)])
def test_muon_matches_torch_muon(dtype, shape, rule):
    """Same rule and defaults: identical with bfloat16 Newton–Schulz, bfloat16-close otherwise."""
    gen = torch.Generator().manual_seed(0)
    W0 = torch.randn(shape, generator=gen, dtype=torch.float64).to(dtype)
    grads = [torch.randn(shape, generator=gen, dtype=torch.float64).to(dtype) for _ in range(5)]
    kw = dict(lr=0.02, weight_decay=0.1, momentum=0.95, nesterov=True, adjust_lr_fn=rule)

    def run(make):
        W = nn.Parameter(W0.clone())
        opt = make([W])
        for g in grads:
            W.grad = g.clone()
            opt.step()
        return W.detach()

    ref = run(lambda p: torch.optim.Muon(p, **kw))
    assert torch.equal(run(lambda p: Muon(p, **kw, ns_dtype=torch.bfloat16)), ref)
    ours = run(lambda p: Muon(p, **kw))
    testing.check_close("W_5 − W_0", (ours - W0).double(), (ref - W0).double(), rtol=3e-2)


def test_muon_adamw_part_is_torch_adamw():
    problem = mlp()
    vectors = [p for p in problem.model.parameters() if p.ndim == 1]
    model_b = copy.deepcopy(problem.model)
    opt_a = Muon([], adamw_params=vectors, adamw_lr=1e-2)
    opt_b = torch.optim.AdamW([p for p in model_b.parameters() if p.ndim == 1], lr=1e-2)
    train(problem, problem.model, opt_a, 5)
    train(problem, model_b, opt_b, 5)
    for a, b in zip(vectors, [p for p in model_b.parameters() if p.ndim == 1], strict=True):
        testing.check_close("bias", a, b, rtol=1e-12)


# ---------------------------------------------------------------------------------------------------
# Properties


def test_shampoo_first_step_is_polar_factor_and_normalized_vector():
    """With L = G Gᵀ, R = Gᵀ G the first step is U Vᵀ; a vector's (p = 2) is g / ‖g‖."""
    gen = torch.Generator().manual_seed(1)
    W = nn.Parameter(torch.randn(8, 5, generator=gen, dtype=torch.float64))
    b = nn.Parameter(torch.randn(6, generator=gen, dtype=torch.float64))
    W0, b0 = W.detach().clone(), b.detach().clone()
    W.grad = torch.randn(8, 5, generator=gen, dtype=torch.float64)
    b.grad = torch.randn(6, generator=gen, dtype=torch.float64)
    Shampoo([W, b], lr=1.0, grafting="none").step()
    U, _, Vh = torch.linalg.svd(W.grad, full_matrices=False)
    testing.check_close("first Shampoo step", W0 - W.detach(), U @ Vh)
    testing.check_close("first Shampoo step (vector)", b0 - b.detach(), b.grad / b.grad.norm())


def test_shampoo_grafting_takes_the_grafted_norm():
    gen = torch.Generator().manual_seed(2)
    W = nn.Parameter(torch.randn(20, 40, generator=gen, dtype=torch.float64))
    opt = Shampoo([W], lr=0.1, grafting="sgd")
    for _ in range(3):
        W.grad = torch.randn(20, 40, generator=gen, dtype=torch.float64)
        before = W.detach().clone()
        opt.step()
        assert float((before - W.detach()).norm()) == pytest.approx(0.1 * float(W.grad.norm()), rel=1e-12)


def test_shampoo_blocks_are_independent_shampoos():
    """Rows cut 16 + 4 and columns 16 + 16 + 8: each of the six blocks behaves as its own parameter."""
    gen = torch.Generator().manual_seed(2)
    W = nn.Parameter(torch.randn(20, 40, generator=gen, dtype=torch.float64))
    rows, cols = (slice(0, 16), slice(16, 20)), (slice(0, 16), slice(16, 32), slice(32, 40))
    parts = [nn.Parameter(W.detach()[r, c].clone()) for r in rows for c in cols]
    blocked = Shampoo([W], lr=0.1, grafting="none", max_precond_dim=16)
    separate = Shampoo(parts, lr=0.1, grafting="none")
    for _ in range(3):
        W.grad = torch.randn(20, 40, generator=gen, dtype=torch.float64)
        for part, (r, c) in zip(parts, [(r, c) for r in rows for c in cols]):
            part.grad = W.grad[r, c].clone()
        blocked.step()
        separate.step()
    assert [tuple(F.shape) for F in blocked.state[W]["R_inv_root"]] == [(16, 16), (16, 16), (8, 8)] * 2
    for part, (r, c) in zip(parts, [(r, c) for r in rows for c in cols]):
        testing.check_close("block of W", W.detach()[r, c], part.detach(), rtol=1e-12)


def test_soap_moments_follow_the_rotating_basis():
    """Q_L M' Q_Rᵀ stays the EMA of the gradients across refreshes; eigh refreshes diagonalize L."""
    gen = torch.Generator().manual_seed(3)
    W = nn.Parameter(torch.randn(6, 9, generator=gen, dtype=torch.float64))
    for refresh in ("qr", "eigh"):
        opt = SOAP([W], betas=(0.9, 0.99), precondition_frequency=2, basis_refresh=refresh)
        ema = torch.zeros_like(W)
        for _ in range(7):
            W.grad = torch.randn(6, 9, generator=gen, dtype=torch.float64)
            ema.lerp_(W.grad, 0.1)
            opt.step()
            s = opt.state[W]
            testing.check_close("Q_L M' Q_Rᵀ", s["Q_L"] @ s["M"] @ s["Q_R"].T, ema, rtol=1e-12)
            testing.check_inverse_pair(s["Q_L"].T, s["Q_L"])
        if refresh == "eigh":  # the last step (7) refreshed: Q_Lᵀ L Q_L is diagonal
            D = s["Q_L"].T @ s["L"] @ s["Q_L"]
            assert torch.allclose(D, torch.diag(torch.diagonal(D)), atol=1e-10 * float(D.norm()))


# ---------------------------------------------------------------------------------------------------
# Bad input says what was expected


@pytest.mark.parametrize("make, match", [
    (lambda: Muon([nn.Parameter(torch.zeros(3))]), "2-D"),
    (lambda: Muon([nn.Parameter(torch.zeros(2, 3, 4))]), "2-D"),
    (lambda: Muon([nn.Parameter(torch.zeros(2, 3))], adjust_lr_fn="rms"), "adjust_lr_fn"),
    (lambda: Muon([nn.Parameter(torch.zeros(2, 3))], momentum=1.0), "momentum"),
    (lambda: Muon([nn.Parameter(torch.zeros(2, 3))], ns_coefficients=(1.0, 2.0)), "ns_coefficients"),
    (lambda: Shampoo([nn.Parameter(torch.zeros(2, 3))], grafting="adagrad"), "grafting"),
    (lambda: Shampoo([nn.Parameter(torch.zeros(2, 3))], precondition_frequency=0), "precondition_frequency"),
    (lambda: Shampoo([nn.Parameter(torch.zeros(2, 3))], start_preconditioning_step=0), "start_"),
    (lambda: Shampoo([nn.Parameter(torch.zeros(2, 3))], factor_decay=1.5), "factor_decay"),
    (lambda: Shampoo([nn.Parameter(torch.zeros(2, 3))], eps=0.0), "eps"),
    (lambda: SOAP([nn.Parameter(torch.zeros(2, 3))], betas=(1.0, 0.9)), r"betas\[0\]"),
    (lambda: SOAP([nn.Parameter(torch.zeros(2, 3))], basis_refresh="svd"), "basis_refresh"),
    (lambda: SOAP([nn.Parameter(torch.zeros(2, 3))], max_precond_dim=2.5), "max_precond_dim"),
])
def test_bad_hyperparameters_and_parameters_are_rejected(make, match):
    with pytest.raises(ValueError, match=match):
        make()


@pytest.mark.parametrize("name", NAMES)
def test_state_dict_of_a_differently_shaped_model_is_rejected(name):
    small, large = LeastSquares(), nn.Linear(3, 4)
    opt = build(name, small)
    with pytest.raises(ValueError):
        build(name, large).load_state_dict(opt.state_dict())
