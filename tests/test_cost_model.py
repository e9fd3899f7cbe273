"""Cost model: formulas by hand on tiny shapes, monotonicity, and agreement with real optimizer state."""

import math

import pytest
import torch
from secondorder.cost_model import (
    METHODS,
    PRESETS,
    Param,
    counted_flops,
    feasibility_table,
    measured_state_bytes,
    optimizer_cost,
    preset_params,
    preset_shapes,
    transformer_params,
    transformer_shapes,
)
from secondorder.optim.kfac import KFAC
from secondorder.optim.muon import Muon, split_muon_params
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
    # the matrix's factors (3², 4²) and their eigenvectors; four products in the eigenbases, a division and
    # the update (3·12); the eigendecompositions (10 d³) every 2 steps; the vector costs nothing (plain SGD)
    ("kfac", dict(precondition_frequency=2), 2 * (9 + 16),
     4 * (9 * 4 + 3 * 16) + 3 * 12 + 10 * (27 + 64) / 2 + 2 * 5),
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


# ---------------------------------------------------------------------------------------------------
# K-FAC's statistics, embeddings and read-out; Muon's AdamW part (roles)


def test_kfac_statistics_and_the_sampled_label_backward_on_tiny_shapes():
    T, ks = 100, 5
    base = optimizer_cost(SHAPES, "kfac", precondition_frequency=2).flops_per_step
    stats = 2 * T * (9 + 16) / ks                                   # A (4 × 4) and G (3 × 3) from T tokens
    empirical = optimizer_cost(SHAPES, "kfac", precondition_frequency=2, tokens=T, stats_frequency=ks,
                               fisher="empirical")
    sampled = optimizer_cost(SHAPES, "kfac", precondition_frequency=2, tokens=T, stats_frequency=ks)
    assert empirical.flops_per_step == pytest.approx(base + stats, rel=1e-12)
    # the backward with sampled labels to the layer's output: one product, 2 · 12 · T (the vector needs none)
    assert sampled.flops_per_step == pytest.approx(base + stats + 2 * 12 * T / ks, rel=1e-12)
    assert sampled.matmul_flops - empirical.matmul_flops == pytest.approx(2 * 12 * T / ks, rel=1e-12)
    assert sampled.state_bytes == empirical.state_bytes == optimizer_cost(SHAPES, "kfac").state_bytes


def test_an_embedding_has_a_diagonal_input_factor_and_the_head_is_excluded():
    V, d, T = 1000, 8, 64
    emb = optimizer_cost([((V, d), "embedding")], "kfac", dtype_bytes=1, precondition_frequency=1, tokens=T,
                         fisher="empirical")
    assert emb.state_bytes == 2 * (V + d * d)                            # diag(A) and G, with their inverses
    # G's eigenvectors on one side (2 products), the division by diag(A) and the update; G's eigendecomposition
    # and 1/diag(A); the token counts and g^T g
    assert emb.flops_per_step == pytest.approx(4 * V * d * d + 2 * V * d + 10 * d**3 + V + T + 2 * T * d * d)
    assert emb.matmul_flops == pytest.approx(4 * V * d * d + 2 * T * d * d)
    head = [((V, d), "head")]
    assert optimizer_cost(head, "kfac").state_bytes == 0                  # left to SGD by default
    assert optimizer_cost(head, "kfac", kfac_head="dense", dtype_bytes=1).state_bytes == 2 * (V * V + d * d)
    # Muon gives embeddings and the read-out AdamW (two moments) unless told otherwise.
    assert optimizer_cost(head, "muon", dtype_bytes=1).state_bytes == 2 * V * d
    assert optimizer_cost(head, "muon", dtype_bytes=1, muon_embeddings="muon").state_bytes == V * d
    assert optimizer_cost([Param((V, d), "embedding")], "muon") == optimizer_cost([((V, d), "head")], "muon")


def _hidden_kfac_statistics(name: str, T: float) -> float:
    """Statistics of the hidden matrices of a preset, by hand from its configuration: 2T(m² + n²) each."""
    c = PRESETS[name]
    d, L = c["d_model"], c["n_layers"]
    f = c.get("d_ff", 4 * d)
    per_block = 4 * 2 * T * (d * d + d * d) + 2 * 2 * T * (f * f + d * d)
    return L * per_block


@pytest.mark.parametrize("name", ["125M", "7B", "70B"])
def test_kfac_is_of_the_order_of_a_forward_and_backward_pass_on_4m_tokens(name):
    """The statistics and the sampled-label backward, on 4M tokens, against an independent count."""
    T = 4e6
    params = preset_params(name)
    N = sum(math.prod(p.shape) for p in params)
    passes = 6 * N * T
    full = optimizer_cost(params, "kfac", tokens=int(T)).flops_per_step
    no_stats = optimizer_cost(params, "kfac").flops_per_step
    stats = _hidden_kfac_statistics(name, T)
    c = PRESETS[name]
    stats += T + 2 * T * c["d_model"] ** 2                                 # the token embedding: diag(A), G
    stats += T + 2 * T * c["d_model"] ** 2                                 # the position embedding's
    # the sampled-label backward: one product per hidden matrix and read-out (none for the embeddings)
    backward = 2 * T * sum(math.prod(p.shape) for p in params if p.role in ("matrix", "head"))
    assert full - no_stats == pytest.approx(stats + backward, rel=1e-9)
    assert 1.0 < full / passes < 2.5 and no_stats / passes < 0.02       # the statistics, not the inverses, dominate


def test_muon_keeps_two_thirds_of_adams_state_at_125m_and_about_half_at_scale():
    ratio = {name: optimizer_cost(preset_params(name), "muon").state_bytes
             / optimizer_cost(preset_params(name), "adam").state_bytes for name in ("125M", "7B", "70B")}
    assert 0.65 < ratio["125M"] < 0.67 and 0.5 < ratio["7B"] < 0.53 and 0.5 < ratio["70B"] < ratio["7B"]


def test_roles_come_from_the_module_as_from_the_layout():
    model = TinyTransformer(vocab_size=88, context=64, d_model=64, n_heads=4, n_layers=2)
    layout = transformer_params(64, 2, 88, context=64)
    for method in ("kfac", "muon", "soap"):
        assert optimizer_cost(model, method, tokens=10) == optimizer_cost(layout, method, tokens=10), method
    with pytest.raises(ValueError, match="role must be one of"):
        optimizer_cost([((3, 4), "bias")], "kfac")
    with pytest.raises(ValueError, match="fisher must be one of"):
        optimizer_cost(SHAPES, "kfac", fisher="true")


def test_muon_with_embeddings_and_head_in_adamw_matches_its_measured_state():
    problem_model = TinyTransformer(vocab_size=88, context=32, d_model=32, n_heads=2, n_layers=1).double()
    muon, adamw = split_muon_params(problem_model, exclude=("head",))
    opt = Muon(muon, adamw_params=adamw)
    x = torch.randint(0, 88, (4, 32))
    for _ in range(3):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(problem_model(x).flatten(0, 1), x.flatten()).backward()
        opt.step()
    assert measured_state_bytes(opt) == optimizer_cost(problem_model, "muon", dtype_bytes=8).state_bytes


# ---------------------------------------------------------------------------------------------------
# FLOPs: the matrix-product part of each formula against PyTorch's own count of the real optimizer's step


def test_counted_flops_counts_matrix_products_only():
    a, b = torch.randn(3, 4), torch.randn(4, 5)
    assert counted_flops(torch.mm, a, b) == 2 * 3 * 4 * 5
    assert counted_flops(torch.linalg.eigh, a @ a.T) == 0 and counted_flops(torch.add, a, a) == 0


def _small_transformer():
    torch.manual_seed(0)
    return TinyTransformer(vocab_size=40, context=12, d_model=24, n_heads=2, n_layers=2)


def _period_flops(model, opt, k, kfac=False):
    """Matrix-product FLOPs per step of ``opt.step()``, averaged over ``k`` steps after a first period."""
    generator = torch.Generator().manual_seed(0)
    inputs = torch.randint(40, (4, 12), generator=generator)
    targets = torch.randint(40, (4, 12), generator=generator)
    total = 0
    for t in range(2 * k):
        opt.zero_grad()
        logits = model(inputs)
        if kfac:
            opt.update_factors(logits)
        torch.nn.functional.cross_entropy(logits.flatten(0, 1), targets.flatten()).backward()
        flops = counted_flops(opt.step)
        total += flops if t >= k else 0
    return total / k


@pytest.mark.parametrize("method", ["shampoo", "soap", "muon", "kfac"])
def test_matmul_flops_equal_pytorchs_count_of_a_real_step(method):
    k = 4
    model = _small_transformer()
    if method == "shampoo":
        opt, params = Shampoo(model.parameters(), precondition_frequency=k), model
    elif method == "soap":
        opt, params = SOAP(model.parameters(), precondition_frequency=k), model
    elif method == "muon":
        hidden, rest = split_muon_params(model, exclude=("head",))
        opt, params = Muon(hidden, adamw_params=rest), model
    else:   # every nn.Linear, bias folded in as a column; the rest plain SGD
        linears = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
        opt = KFAC(model, fallback="sgd", inv_period=k)
        params = [((m.out_features, m.in_features + 1), "matrix") for m in linears]
    measured = _period_flops(model, opt, k, kfac=method == "kfac")
    predicted = optimizer_cost(params, method, precondition_frequency=k).matmul_flops
    assert measured == pytest.approx(predicted, rel=1e-9)


def test_kfac_statistics_and_sampled_backward_match_pytorchs_count():
    """update_factors: a^T a, g^T g and the backward to the layer outputs, against the model's terms."""
    model = _small_transformer()
    opt = KFAC(model, fallback="sgd")
    inputs = torch.randint(40, (4, 12), generator=torch.Generator().manual_seed(0))
    logits = model(inputs)
    measured = counted_flops(opt.update_factors, logits)
    linears = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
    params = [((m.out_features, m.in_features + 1), "matrix") for m in linears]
    T = inputs.numel()
    predicted = (optimizer_cost(params, "kfac", tokens=T).matmul_flops
                 - optimizer_cost(params, "kfac").matmul_flops)
    stats = (optimizer_cost(params, "kfac", tokens=T, fisher="empirical").matmul_flops
             - optimizer_cost(params, "kfac").matmul_flops)
    # The model counts one product per matrix; the first block's Q, K, V need none (nothing before them to
    # reach) and attention adds its own: a few per cent either way, and the statistics are exact.
    assert measured == pytest.approx(predicted, rel=0.05)
    assert measured > stats
