"""One conformance suite over every optimizer in secondorder.optim.

Each optimizer is driven the way its documentation says (closure for the quasi-Newton ones, factor
updates for K-FAC, split parameter groups for Muon) on the same two problems: an ill-conditioned
least-squares quadratic in a weight matrix, and the tiny transformer.
"""

import copy

import pytest
import torch
from secondorder.optim import BFGS, LBFGS
from secondorder.optim.kfac import KFAC
from secondorder.optim.muon import Muon, split_muon_params
from secondorder.optim.shampoo import Shampoo
from secondorder.optim.soap import SOAP
from secondorder.problems import tiny_transformer
from torch import nn

# Learning rates per problem for the first-order-style methods (quasi-Newton ones use line searches).
LR = {"quadratic": {"kfac": 0.2, "shampoo": 3e-2, "soap": 0.1, "muon": 1.0},
      "transformer": {"kfac": 0.2, "shampoo": 3e-3, "soap": 1e-2, "muon": 3e-2}}


def _make(name, model, problem="quadratic"):
    params = list(model.parameters())
    lr = LR[problem].get(name)
    if name == "lbfgs":
        return LBFGS(params, lr=1, max_iter=4, history_size=10, line_search_fn="strong_wolfe")
    if name == "bfgs":
        return BFGS(params, max_iter=4)
    if name == "kfac":
        return KFAC(model, lr=lr, damping=1e-2, inv_period=2)
    if name == "shampoo":
        return Shampoo(params, lr=lr, precondition_frequency=2)
    if name == "soap":
        return SOAP(params, lr=lr, precondition_frequency=2)
    if name == "muon":
        muon, adamw = split_muon_params(model)
        return Muon(muon, lr=lr, weight_decay=0.0, adamw_params=adamw, adamw_lr=3e-3)
    raise ValueError(name)


OPTIMIZERS = ["lbfgs", "bfgs", "kfac", "shampoo", "soap", "muon"]


def _step(name, opt, model, batch, loss_fn, likelihood):
    x, y = batch
    if name in ("lbfgs", "bfgs"):
        def closure():
            opt.zero_grad()
            loss = loss_fn(model(x), y)
            loss.backward()
            return loss
        return float(opt.step(closure).detach())
    opt.zero_grad()
    out = model(x)
    if name == "kfac":
        opt.update_factors(out, likelihood=likelihood, generator=torch.Generator(out.device).manual_seed(0))
    loss = loss_fn(out, y)
    loss.backward()
    opt.step()
    return float(loss.detach())


def _least_squares(device, dtype=torch.float64):
    """½‖X Wᵀ − Y‖² / N with inputs of condition number 1e3: an ill-conditioned quadratic in W."""
    gen = torch.Generator().manual_seed(0)
    d_in, d_out, n = 12, 6, 256
    scales = torch.logspace(0, 1.5, d_in, dtype=dtype)              # cond(XᵀX) = 1e3
    X = torch.randn(n, d_in, generator=gen, dtype=dtype) * scales
    W_star = torch.randn(d_out, d_in, generator=gen, dtype=dtype)
    Y = X @ W_star.T
    model = nn.Sequential(nn.Linear(d_in, d_out, bias=False)).to(dtype)
    with torch.no_grad():
        model[0].weight.zero_()
    def loss_fn(out, y):
        return 0.5 * ((out - y) ** 2).sum(dim=1).mean()
    return model.to(device), (X.to(device), Y.to(device)), loss_fn, "gaussian"


def _transformer(device):
    problem = tiny_transformer(seed=0, dtype=torch.float32, device=device)
    x, y = problem.batch

    def loss_fn(logits, targets):
        return nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1))
    return problem.model, (x, y), loss_fn, "categorical"


def _run(name, make_problem, device, steps):
    model, batch, loss_fn, likelihood = make_problem(device)
    torch.manual_seed(0)
    opt = _make(name, model, "transformer" if make_problem is _transformer else "quadratic")
    losses = [_step(name, opt, model, batch, loss_fn, likelihood) for _ in range(steps)]
    return model, opt, losses


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_loss_decreases_on_ill_conditioned_quadratic(name, device):
    _, _, losses = _run(name, _least_squares, device, 25)
    assert losses[-1] < 0.1 * losses[0], losses


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_deterministic(name, device):
    a, _, la = _run(name, _least_squares, device, 5)
    b, _, lb = _run(name, _least_squares, device, 5)
    assert la == lb
    for p, q in zip(a.parameters(), b.parameters()):
        assert torch.equal(p, q)


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_state_dict_round_trip(name, device):
    """Saving after 4 steps and loading into a fresh optimizer continues bit for bit."""
    model, batch, loss_fn, likelihood = _least_squares(device)
    opt = _make(name, model)
    for _ in range(4):
        _step(name, opt, model, batch, loss_fn, likelihood)
    saved_model, saved_state = copy.deepcopy(model.state_dict()), copy.deepcopy(opt.state_dict())
    for _ in range(3):
        _step(name, opt, model, batch, loss_fn, likelihood)
    expected = [p.detach().clone() for p in model.parameters()]
    model2, _, _, _ = _least_squares(device)
    model2.load_state_dict(saved_model)
    opt2 = _make(name, model2)
    opt2.load_state_dict(saved_state)
    for _ in range(3):
        _step(name, opt2, model2, batch, loss_fn, likelihood)
    for p, q in zip(model2.parameters(), expected):
        assert torch.equal(p.detach(), q), name


@pytest.mark.slow
@pytest.mark.parametrize("name", [o for o in OPTIMIZERS if o != "bfgs"])   # dense BFGS: n = 115k is too big
def test_loss_decreases_on_tiny_transformer(name, device):
    steps = 6 if name == "lbfgs" else 25
    _, _, losses = _run(name, _transformer, device, steps)
    assert losses[-1] < losses[0] - 0.3, losses
