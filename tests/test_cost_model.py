"""Cost model: formulas by hand on tiny shapes, monotonicity, and agreement with real optimizer state."""

import math

import pytest
import torch
from secondorder.cost_model import (
    METHODS,
    PRESETS,
    feasibility_table,
    measured_state_bytes,
    optimizer_cost,
    preset_shapes,
    transformer_shapes,
)
from secondorder.optim.muon import Muon
from secondorder.optim.shampoo import Shampoo
from secondorder.optim.soap import SOAP
from secondorder.problems import TinyTransformer, tiny_mlp

SHAPES = [(3, 4), (5,)]  # N = 17


@pytest.mark.parametrize("method, kwargs, elements, flops", [
    ("sgd", {}, 0, 2 * 17),
    ("adam", {}, 2 * 17, 12 * 17),
    ("newton", {}, 17**2, 17**3 / 3 + 2 * 17**2),
    ("bfgs", {}, 17**2, 8 * 17**2),
    ("lbfgs", dict(history=2), (2 * 2 + 2) * 17, (4 * 2 + 4) * 17),
    ("lbfgs(3)", {}, (2 * 3 + 2) * 17, (4 * 3 + 4) * 17),
    # the matrix's factors (3², 4²) and their inverses; the vector costs nothing (plain SGD)
    ("kfac", dict(precondition_frequency=2), 2 * (9 + 16), 2 * 9 * 4 + 2 * 3 * 16 + (27 + 64) / 2 + 2 * 5),
    # factors and roots: matrix 2·(9 + 16), vector 2·25; Adam grafting 2·17 (16 flops per element)
    ("shampoo", dict(precondition_frequency=1), 2 * (9 + 16) + 2 * 25 + 2 * 17,
     4 * (9 * 4 + 3 * 16) + 10 * (27 + 64) + 4 * 25 + 10 * 125 + 16 * 17),
    # blocks of at most 3 × 3: the matrix is (3 × 3, 3 × 1), the vector (3, 2)
    ("shampoo", dict(max_precond_dim=3, grafting="sgd", precondition_frequency=1),
     2 * (9 + 9) + 2 * (9 + 1) + 2 * 9 + 2 * 4,
     4 * (27 + 27) + 20 * 27 + 4 * (9 + 3) + 10 * (27 + 1) + 4 * 9 + 10 * 27 + 4 * 4 + 10 * 8 + 6 * 17),
    ("soap", dict(precondition_frequency=1), 2 * 17 + 2 * (9 + 16),
     12 * 17 + 6 * (9 * 4 + 3 * 16) + 4 * (27 + 64) + 4 * (9 * 4 + 3 * 16)),
    # momentum for the matrix; 5 Newton–Schulz steps with r = 3, c = 4; AdamW for the vector
    ("muon", {}, 12 + 2 * 5, 5 * (4 * 9 * 4 + 2 * 27) + 6 * 12 + 12 * 5),
])
def test_formulas_on_tiny_shapes(method, kwargs, elements, flops):
    cost = optimizer_cost(SHAPES, method, dtype_bytes=2, **kwargs)
    assert cost.n_params == 17
    assert cost.state_bytes == 2 * elements
    assert cost.flops_per_step == pytest.approx(flops, rel=1e-12)


def test_transformer_shapes_match_tiny_transformer():
    model = TinyTransformer(vocab_size=88, context=64, d_model=64, n_heads=4, n_layers=2)
    actual = sorted(tuple(p.shape) for p in model.parameters())
    assert sorted(transformer_shapes(64, 2, vocab=88, context=64)) == actual
    assert optimizer_cost(model, "soap") == optimizer_cost(transformer_shapes(64, 2, 88, context=64), "soap")


def test_presets_are_near_their_nominal_sizes():
    nominal = {"1M": 1e6, "125M": 125e6, "1.3B": 1.3e9, "7B": 7e9, "70B": 70e9}
    for name in PRESETS:
        n = sum(math.prod(s) for s in preset_shapes(name))
        assert 0.85 < n / nominal[name] < 1.15, f"{name} has {n:.3g} parameters"


def test_costs_grow_with_model_size():
    for method in METHODS:
        costs = [optimizer_cost(preset_shapes(name), method) for name in PRESETS]
        for small, large in zip(costs, costs[1:]):
            assert small.state_bytes <= large.state_bytes, method
            assert small.flops_per_step < large.flops_per_step, method


def test_methods_order_as_expected_on_a_real_model():
    shapes = preset_shapes("125M")
    cost = {m: optimizer_cost(shapes, m) for m in METHODS}
    assert cost["sgd"].state_bytes < cost["muon"].state_bytes < cost["adam"].state_bytes
    assert cost["adam"].state_bytes < cost["soap"].state_bytes < cost["bfgs"].state_bytes
    assert cost["lbfgs"].state_bytes == 22 * cost["sgd"].n_params * 4
    # more frequent preconditioner refreshes cost more
    every_step = optimizer_cost(shapes, "shampoo", precondition_frequency=1)
    assert every_step.flops_per_step > cost["shampoo"].flops_per_step


def test_feasibility_on_one_80_gb_accelerator():
    rows = {(r["preset"], r["method"]): r for r in feasibility_table(memory_bytes=80e9)}
    assert rows[("125M", "adam")]["fits"] and rows[("7B", "sgd")]["fits"]
    assert not rows[("7B", "adam")]["fits"]  # 7B · 4 bytes · (1 + 1 + 2) = 108 GB
    assert not rows[("1M", "newton")]["fits"]  # a 1M × 1M Hessian is 4 TB
    assert not any(rows[("70B", m)]["fits"] for m in METHODS)
    r = rows[("7B", "adam")]
    assert r["total_bytes"] == 2 * r["n_params"] * 4 + r["state_bytes"]


def test_bad_method_is_rejected():
    with pytest.raises(ValueError, match="method must be one of"):
        optimizer_cost(SHAPES, "adagrad")
    with pytest.raises(ValueError, match="preset"):
        preset_shapes("13B")


# ---------------------------------------------------------------------------------------------------
# The model against the state real optimizers keep (float64: 8 bytes per element)


def trained(make, steps=4):
    problem = tiny_mlp(hidden=(48,), dtype=torch.float64)  # shapes (48, 64), (48,), (10, 48), (10,)
    opt = make(problem.model)

    def closure():
        opt.zero_grad()
        loss = problem.loss_at()
        loss.backward()
        return loss

    for _ in range(steps):
        opt.step(closure)
    return problem.model, opt


@pytest.mark.parametrize("method, make, kwargs", [
    ("adam", lambda m: torch.optim.Adam(m.parameters(), lr=1e-3), {}),
    ("lbfgs(5)", lambda m: torch.optim.LBFGS(m.parameters(), history_size=5, max_iter=10), {}),
    ("shampoo", lambda m: Shampoo(m.parameters(), max_precond_dim=50), dict(max_precond_dim=50)),
    ("shampoo", lambda m: Shampoo(m.parameters(), grafting="sgd"), dict(grafting="sgd")),
    ("soap", lambda m: SOAP(m.parameters(), max_precond_dim=50), dict(max_precond_dim=50)),
    ("muon", lambda m: Muon([p for p in m.parameters() if p.ndim == 2],
                            adamw_params=[p for p in m.parameters() if p.ndim != 2]), {}),
])
def test_model_predicts_measured_state(method, make, kwargs):
    model, opt = trained(make)
    predicted = optimizer_cost(model, method, dtype_bytes=8, **kwargs).state_bytes
    assert measured_state_bytes(opt) == predicted
