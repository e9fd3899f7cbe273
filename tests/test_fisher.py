"""secondorder.fisher: dense Fisher oracles from the definition, checked against the curvature operators."""

import pytest
import torch
from secondorder.curvature import EmpiricalFisherOperator, FisherOperator, GGNOperator
from secondorder.fisher import (
    ReparametrizedLinear,
    exact_fisher_block,
    expected_kfac_factors,
    fisher_by_enumeration,
    label_gradients,
    output_gradient_covariances,
)
from secondorder.kfac import append_ones, kfac_block, kfac_factors
from secondorder.problems import build_mlp
from secondorder.testing import check_close, check_symmetric
from torch import nn


def small_mlp(seed=0, sizes=(5, 4, 3), dtype=torch.float64, device="cpu"):
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = build_mlp(sizes)
    return model.to(dtype=dtype, device=device)


def data(N, d, C=3, seed=1, dtype=torch.float64, device="cpu"):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(N, d, generator=gen, dtype=torch.float64).to(dtype=dtype, device=device)
    y = torch.randint(C, (N,), generator=gen).to(device)
    return x, y


def f64(x):
    return x.detach().to(device="cpu", dtype=torch.float64)


def test_fisher_by_enumeration_equals_fisher_and_ggn_operators(device):
    model = small_mlp(device=device)
    x, y = data(11, 5, device=device)
    F_def = fisher_by_enumeration(model, x)
    check_symmetric("F", f64(F_def))
    F_op = FisherOperator(model, "cross_entropy", (x, y)).to_dense()
    G_op = GGNOperator(model, "cross_entropy", (x, y)).to_dense()
    check_close("F (definition) vs FisherOperator", f64(F_def), f64(F_op), rtol=1e-12)
    check_close("F (definition) vs GGNOperator", f64(F_def), f64(G_op), rtol=1e-12)


def test_fisher_by_enumeration_differs_from_the_empirical_fisher():
    model = small_mlp()
    x, y = data(11, 5)
    F_def = fisher_by_enumeration(model, x)
    F_emp = EmpiricalFisherOperator(model, "cross_entropy", (x, y)).to_dense()
    assert float((F_def - F_emp).norm() / F_def.norm()) > 0.1


def test_fisher_by_enumeration_on_a_subset_of_parameters():
    model = small_mlp()
    x, y = data(7, 5)
    W = model[2].weight
    F_W = fisher_by_enumeration(model, x, params=[W])
    F_op = FisherOperator(model, "cross_entropy", (x, y), params=[W]).to_dense()
    check_close("F_W", F_W, F_op, rtol=1e-12)


@pytest.mark.parametrize("which", [0, 2])
def test_exact_fisher_block_matches_the_operator_on_the_weight(which, device):
    model = small_mlp(device=device)
    x, y = data(9, 5, device=device)
    layer = model[which]
    a, g, p = label_gradients(model, layer, x)
    F_block = exact_fisher_block(a, g, p)
    F_op = FisherOperator(model, "cross_entropy", (x, y), params=[layer.weight]).to_dense()
    check_close("exact block", f64(F_block), f64(F_op), rtol=1e-12)


def test_exact_fisher_block_with_bias_column_matches_the_operator():
    model = small_mlp()
    x, y = data(6, 5)
    layer = model[2]
    a, g, p = label_gradients(model, layer, x)
    F_block = exact_fisher_block(append_ones(a), g, p)               # over [W b] row by row
    F_op = FisherOperator(model, "cross_entropy", (x, y), params=[layer.weight, layer.bias]).to_dense()
    d_out, d_in = layer.weight.shape
    # The operator orders (vec W, b); [W b] row by row interleaves the bias after each row.
    order = torch.tensor([i * d_in + j if j < d_in else d_out * d_in + i
                          for i in range(d_out) for j in range(d_in + 1)])
    check_close("exact block with bias", F_block, F_op[order][:, order], rtol=1e-12)


def test_label_gradients_of_the_logits_layer_are_p_minus_one_hot():
    model = small_mlp()
    x, _ = data(4, 5)
    a, g, p = label_gradients(model, model[2], x)
    C = p.shape[1]
    for c in range(C):
        check_close(f"g for label {c}", g[c], p - torch.nn.functional.one_hot(torch.full((4,), c), C).double())
    Gamma = output_gradient_covariances(g, p)
    check_close("Γ_n", Gamma, torch.diag_embed(p) - p[:, :, None] * p[:, None, :])
    check_close("a", a, torch.tanh(model[0](x)))


def test_kfac_is_exact_for_one_example_and_not_for_many():
    model = small_mlp()
    x, _ = data(8, 5)
    a, g, p = label_gradients(model, model[0], x)
    a1, g1, p1 = a[:1], g[:, :1], p[:1]
    A, G = expected_kfac_factors(a1, g1, p1)
    check_close("N = 1", kfac_block(A, G), exact_fisher_block(a1, g1, p1), rtol=1e-13)
    A, G = expected_kfac_factors(a, g, p)
    err = float((kfac_block(A, G) - exact_fisher_block(a, g, p)).norm() / exact_fisher_block(a, g, p).norm())
    assert err > 1e-3


def test_expected_kfac_factors_equal_kfac_factors_on_weighted_rows():
    model = small_mlp()
    x, _ = data(8, 5)
    a, g, p = label_gradients(model, model[0], x)
    A, G = expected_kfac_factors(a, g, p)
    C, N, d_out = g.shape
    rows = (g * (C * p.T[:, :, None]).sqrt()).reshape(C * N, d_out)   # (C·N, d_out)
    A_ref, _ = kfac_factors(a, torch.zeros(N, d_out, dtype=a.dtype))
    _, G_ref = kfac_factors(torch.zeros(C * N, 1, dtype=a.dtype), rows)
    check_close("A", A, A_ref, rtol=1e-13)
    check_close("G", G, G_ref, rtol=1e-13)


def test_mc_fisher_converges_to_the_definition():
    model = small_mlp()
    x, y = data(10, 5)
    F_def = fisher_by_enumeration(model, x)
    err = [float((FisherOperator(model, "cross_entropy", (x, y), mode="mc", mc_samples=S).to_dense() - F_def).norm()
                 / F_def.norm()) for S in (1, 400)]
    assert err[1] < 0.25 * err[0]


def test_reparametrized_linear_transforms_gradient_and_fisher():
    gen = torch.Generator().manual_seed(3)
    d_in, d_out, N = 4, 3, 12
    n = d_out * d_in + d_out
    P = torch.randn(n, n, generator=gen, dtype=torch.float64) + 3 * torch.eye(n, dtype=torch.float64)
    theta = torch.randn(n, generator=gen, dtype=torch.float64)
    x, y = data(N, d_in, d_out, seed=4)
    model = ReparametrizedLinear(P, d_in, d_out, theta)
    check_close("θ = Pφ", model.theta().detach(), theta, rtol=1e-12)
    plain = nn.Linear(d_in, d_out).double()
    with torch.no_grad():
        plain.weight.copy_(theta[:d_out * d_in].view(d_out, d_in))
        plain.bias.copy_(theta[d_out * d_in:])
    check_close("logits", model(x).detach(), plain(x).detach(), rtol=1e-12)
    F_theta = FisherOperator(plain, "cross_entropy", (x, y)).to_dense()
    F_phi = FisherOperator(model, "cross_entropy", (x, y)).to_dense()
    check_close("F_φ = Pᵀ F_θ P", F_phi, P.T @ F_theta @ P, rtol=1e-10)


@pytest.mark.parametrize("bad", ["not a layer", "wrong model", "no grad"])
def test_label_gradients_refuses_bad_arguments(bad):
    model = small_mlp()
    x, _ = data(3, 5)
    if bad == "not a layer":
        layer = model[1]
    elif bad == "wrong model":
        layer = nn.Linear(5, 4).double()
    else:
        layer = model[0]
        layer.weight.requires_grad_(False)
    with pytest.raises(ValueError, match="layer"):
        label_gradients(model, layer, x)


def test_shapes_are_checked():
    a = torch.zeros(4, 3, dtype=torch.float64)
    with pytest.raises(ValueError, match="agree"):
        exact_fisher_block(a, torch.zeros(2, 5, 2, dtype=torch.float64), torch.zeros(4, 2, dtype=torch.float64))
    with pytest.raises(ValueError, match="P must be"):
        ReparametrizedLinear(torch.eye(5, dtype=torch.float64), 2, 2)
