"""K-FAC kernels (secondorder.kfac) and the KFAC optimizer (secondorder.optim.kfac)."""

import copy
import gc
import weakref

import pytest
import torch
import torch.nn.functional as F
from conftest import spd_matrix
from secondorder.kfac import (
    append_ones,
    factor_eigh,
    kfac_block,
    kfac_factors,
    kfac_precondition,
    kfac_precondition_eigh,
    running_average,
)
from secondorder.optim.kfac import KFAC
from secondorder.problems import tiny_mlp, tiny_transformer
from secondorder.testing import check_close, check_symmetric, check_unmodified
from torch import nn

DTYPES = [torch.float64, torch.float32]


def randn(*shape, seed=0, dtype=torch.float64, device="cpu"):
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=gen, dtype=torch.float64).to(dtype=dtype, device=device)


def f64(x):
    return x.detach().to(device="cpu", dtype=torch.float64)


def weight_and_bias(layer):
    """[W b] of a Linear layer, detached: shape (d_out, d_in + 1)."""
    return torch.cat([layer.weight, layer.bias[:, None]], dim=1).detach()


def row_major_grad(layer):
    """[W b] of a Linear layer's gradient, flattened row by row: shape (d_out·(d_in + 1),)."""
    return torch.cat([layer.weight.grad, layer.bias.grad[:, None]], dim=1).flatten()


# ---------------------------------------------------------------------------------------- kernels


@pytest.mark.parametrize("dtype", DTYPES)
def test_kfac_factors_match_sum_of_outer_products(device, dtype):
    N, d_in, d_out = 7, 5, 3
    a = randn(N, d_in, seed=1, dtype=dtype, device=device)
    g = randn(N, d_out, seed=2, dtype=dtype, device=device)
    a0, g0 = a.clone(), g.clone()
    A, G = kfac_factors(a, g)
    A_ref = sum(torch.outer(x, x) for x in f64(a)) / N
    G_ref = sum(torch.outer(x, x) for x in f64(g)) / N
    check_close("A", f64(A), A_ref, rtol=1e-6 if dtype == torch.float32 else 1e-13)
    check_close("G", f64(G), G_ref, rtol=1e-6 if dtype == torch.float32 else 1e-13)
    assert A.dtype == dtype and A.device == a.device
    check_symmetric("A", A)
    check_unmodified("a", a0, a)
    check_unmodified("g", g0, g)


def test_kfac_block_is_row_major_kronecker(device):
    A, G = spd_matrix(4, device=device, seed=1), spd_matrix(3, device=device, seed=2)
    V = randn(3, 4, seed=3, device=device)
    check_close("kfac_block(A, G) @ vec(V)", kfac_block(A, G) @ V.flatten(), (G @ V @ A).flatten(),
                hint="rows of the block follow W.flatten(): the block is kron(G, A)")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("damping", [0.0, 1e-3, 1.0])
def test_kfac_precondition_matches_dense_solve(device, dtype, damping):
    d_out, d_in = 3, 5
    A = spd_matrix(d_in, cond=1e3, seed=1, dtype=dtype, device=device)
    G = spd_matrix(d_out, cond=1e2, seed=2, dtype=dtype, device=device)
    grad_W = randn(d_out, d_in, seed=3, dtype=dtype, device=device)
    before = [t.clone() for t in (grad_W, A, G)]
    delta = kfac_precondition(grad_W, A, G, damping)
    pi = damping ** 0.5
    dense = torch.kron(f64(G) + pi * torch.eye(d_out, dtype=torch.float64),
                       f64(A) + pi * torch.eye(d_in, dtype=torch.float64))  # (d_out·d_in, d_out·d_in)
    expected = torch.linalg.solve(dense, f64(grad_W).flatten()).view(d_out, d_in)
    check_close("kfac_precondition", f64(delta), expected, rtol=1e-3 if dtype == torch.float32 else 1e-10)
    assert delta.dtype == dtype and delta.device == grad_W.device
    for name, b, t in zip(("grad_W", "A", "G"), before, (grad_W, A, G)):
        check_unmodified(name, b, t)


def test_kfac_precondition_eigh_matches_cholesky(device):
    A, G = spd_matrix(6, cond=1e4, seed=4, device=device), spd_matrix(4, cond=10, seed=5, device=device)
    grad_W = randn(4, 6, seed=6, device=device)
    (lam_A, Q_A), (lam_G, Q_G) = factor_eigh(A), factor_eigh(G)
    check_close("kfac_precondition_eigh", kfac_precondition_eigh(grad_W, lam_A, Q_A, lam_G, Q_G, 1e-2),
                kfac_precondition(grad_W, A, G, 1e-2), rtol=1e-10)


def test_running_average_warm_start_and_plain_mean():
    Ms = [randn(3, 3, seed=s) for s in range(5)]
    M = Ms[0]
    for k, M_batch in enumerate(Ms[1:], start=2):
        M = running_average(M, M_batch, decay=1.0, k=k)
    check_close("running mean", M, sum(Ms) / len(Ms), rtol=1e-14, hint="decay=1 must give the plain mean")
    check_close("first update", running_average(Ms[0], Ms[1], 0.95, 1), Ms[1], rtol=0)
    check_close("late update", running_average(Ms[0], Ms[1], 0.95, 1000), 0.95 * Ms[0] + 0.05 * Ms[1])


# ------------------------------------------------------------------- exactness and the Fisher scale


def one_layer_classifier(seed=0, d_in=4, classes=3):
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return nn.Linear(d_in, classes).double()


def test_kfac_is_exact_for_one_example(device):
    """N = 1: the per-example gradient [W b] is g ⊗ (a, 1), so its outer product is exactly G ⊗ A."""
    layer = one_layer_classifier().to(device)
    a, y = randn(1, 4, seed=7, device=device), torch.tensor([2], device=device)
    F.cross_entropy(layer(a), y).backward()
    outer = torch.outer(row_major_grad(layer), row_major_grad(layer))  # (15, 15)
    logits = layer(a)
    (g,) = torch.autograd.grad(F.cross_entropy(logits, y, reduction="sum"), logits)  # (1, 3)
    A, G = kfac_factors(append_ones(a), g)
    check_close("kfac_block(A, G)", f64(kfac_block(A, G)), f64(outer), rtol=1e-12,
                hint="for one example K-FAC is exact; check the row-major order kron(G, A)")


def test_optimizer_factors_exact_for_one_example_in_hidden_layer(device):
    """Through the hooks: the hidden layer of an MLP on one example, empirical Fisher."""
    problem = tiny_mlp(hidden=(6,), device=device)
    model, (X, y) = problem.model, problem.batch
    x1, y1 = X[:1], y[:1]
    opt = KFAC(model)
    model.zero_grad()
    logits = model(x1)
    opt.update_factors(logits, targets=y1)
    F.cross_entropy(logits, y1).backward()
    A, G = opt.kronecker_factors()["0"]
    grad = row_major_grad(model[0])  # (6·65,)
    check_close("G ⊗ A of the hidden layer", f64(kfac_block(A, G)), f64(torch.outer(grad, grad)), rtol=1e-10)


def test_factor_scale_matches_fisher_of_the_mean_loss(device):
    """With one shared input a and N different labels, F = (1/N) Σ vec(∇ℓ_n) vec(∇ℓ_n)ᵀ = G ⊗ A exactly.

    This pins the scale: g must be each example's own gradient (not the mean loss's, N times smaller).
    """
    N = 6
    layer = one_layer_classifier(seed=1).to(device)
    a = randn(1, 4, seed=8, device=device).expand(N, 4)  # (N, 4), identical rows
    y = torch.arange(N, device=device) % 3
    outers = []
    for n in range(N):
        layer.zero_grad()
        F.cross_entropy(layer(a[n:n + 1]), y[n:n + 1]).backward()
        outers.append(torch.outer(row_major_grad(layer), row_major_grad(layer)))
    fisher = sum(outers) / N  # (15, 15), empirical Fisher of the mean loss
    logits = layer(a)
    (g_mean,) = torch.autograd.grad(F.cross_entropy(logits, y), logits)  # (N, 3) = g_n / N
    A, G = kfac_factors(append_ones(a), N * g_mean)
    check_close("G ⊗ A", f64(kfac_block(A, G)), f64(fisher), rtol=1e-12,
                hint="scale the mean-loss output gradients by N")


# ----------------------------------------------------------------------------- against curvlinops


def curvlinops_factors(model, X, y, fisher_type):
    curvlinops = pytest.importorskip("curvlinops")
    params = [p for m in model.modules() if isinstance(m, nn.Linear) for p in m.parameters()]
    op = curvlinops.KFACLinearOperator(model, nn.CrossEntropyLoss(), params, [(X, y)],
                                        fisher_type=fisher_type, separate_weight_and_bias=False,
                                        check_deterministic=False)
    op.compute_kronecker_factors()
    # curvlinops 3.0 keeps the factors in these attributes (A: inputs with a ones column, G: gradients).
    return op._input_covariances, op._gradient_covariances


@pytest.mark.parametrize("fisher_type", ["empirical", "mc"])
def test_factors_agree_with_curvlinops_on_mlp(device, fisher_type):
    problem = tiny_mlp(device=device)
    X, y = problem.batch[0][:128], problem.batch[1][:128]
    A_ref, G_ref = curvlinops_factors(problem.model, X, y, fisher_type)
    opt = KFAC(problem.model)
    # curvlinops draws the mc labels with probs.multinomial from a generator seeded 2147483647.
    gen = torch.Generator(device=device).manual_seed(2147483647)
    logits = problem.model(X)
    opt.update_factors(logits, targets=y if fisher_type == "empirical" else None, generator=gen)
    ours = opt.kronecker_factors()
    assert set(ours) == set(A_ref) == {"0", "2"}
    for name, (A, G) in ours.items():
        check_close(f"A[{name}]", A, A_ref[name], rtol=1e-12)
        check_close(f"G[{name}]", G, G_ref[name], rtol=1e-12)


def test_sampled_fisher_averages_to_curvlinops_type2(device):
    """The mean of many sampled-label G's approaches the exact (type-2) expectation."""
    problem = tiny_mlp(device=device)
    X, y = problem.batch[0][:64], problem.batch[1][:64]
    _, G_ref = curvlinops_factors(problem.model, X, y, "type-2")
    opt = KFAC(problem.model, decay=1.0)  # decay 1: the running average is the plain mean
    gen = torch.Generator(device=device).manual_seed(0)
    for _ in range(150):  # relative error about 0.02 at 150 draws
        opt.update_factors(problem.model(X), generator=gen)
    for name, (_, G) in opt.kronecker_factors().items():
        check_close(f"mean sampled G[{name}]", G, G_ref[name], rtol=0.1,
                    hint="sampled labels must come from softmax(logits)")


def test_sequence_factors_agree_with_curvlinops_expand(device):
    """(B, T, C) activations contribute one row per position, as curvlinops' KFAC-expand."""

    class ClassesSecond(nn.Module):  # curvlinops' CrossEntropyLoss wants (B, C, T)
        def __init__(self, lm):
            super().__init__()
            self.lm = lm

        def forward(self, idx):
            return self.lm(idx).transpose(1, 2)

    problem = tiny_transformer(context=8, d_model=16, n_heads=2, n_layers=1, batch_size=4, device=device)
    model = ClassesSecond(problem.model)
    X, y = problem.batch
    A_ref, G_ref = curvlinops_factors(model, X, y, "empirical")
    opt = KFAC(model)
    opt.update_factors(model(X).transpose(1, 2), targets=y)
    ours = opt.kronecker_factors()
    assert set(ours) == set(A_ref) and len(ours) == 7
    for name, (A, G) in ours.items():
        check_close(f"A[{name}]", A, A_ref[name], rtol=1e-12)
        check_close(f"G[{name}]", G, G_ref[name], rtol=1e-12)


# -------------------------------------------------------------------------------------- optimizer


def train(problem, make_optimizer, steps, batch_size=64, kfac=True, seed=0):
    opt = make_optimizer(problem.model)
    batches = problem.batches(batch_size, torch.Generator().manual_seed(seed))
    gen = torch.Generator(device=problem.device).manual_seed(seed + 1)
    for _, (x, y) in zip(range(steps), batches):
        opt.zero_grad()
        logits = problem.model(x)
        if kfac:
            opt.update_factors(logits, generator=gen)
        F.cross_entropy(logits, y).backward()
        opt.step()
    with torch.no_grad():
        return float(problem.loss_at())


def test_kfac_trains_tiny_mlp_faster_than_sgd(device):
    steps = 60
    kfac_loss = train(tiny_mlp(device=device), lambda m: KFAC(m, lr=0.05), steps)
    sgd_losses = {lr: train(tiny_mlp(device=device), lambda m, lr=lr: torch.optim.SGD(m.parameters(), lr=lr),
                            steps, kfac=False) for lr in (0.3, 1.0, 3.0)}
    assert kfac_loss < 0.5 * min(sgd_losses.values()), (kfac_loss, sgd_losses)


def small_net(device):
    """Linear layers plus a LayerNorm, so both the K-FAC group and the fallback group have state."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(3)
        net = nn.Sequential(nn.Linear(64, 16), nn.LayerNorm(16), nn.Tanh(), nn.Linear(16, 10))
    return net.double().to(device)


@pytest.mark.parametrize("fallback", ["adam", "sgd"])
def test_state_dict_round_trip_continues_identically(device, fallback):
    X, y = tiny_mlp(device=device).batch
    batches = [(X[i:i + 32], y[i:i + 32]) for i in range(0, 32 * 12, 32)]
    hyper = dict(lr=0.05, inv_period=3, momentum=0.5, weight_decay=1e-3, kl_clip=1e-2, fallback=fallback)

    def run(model, opt, chunk, gen):
        for x, t in chunk:
            opt.zero_grad()
            logits = model(x)
            opt.update_factors(logits, generator=gen)
            F.cross_entropy(logits, t).backward()
            opt.step()

    model = small_net(device)
    opt = KFAC(model, **hyper)
    run(model, opt, batches[:7], torch.Generator(device=device).manual_seed(0))
    saved_model, saved_opt = copy.deepcopy(model.state_dict()), copy.deepcopy(opt.state_dict())
    state = opt.state[model[0].weight]
    documented = {"A", "G", "factor_updates", "lambda_A", "Q_A", "lambda_G", "Q_G", "step", "momentum_buffer"}
    assert documented <= set(state)
    assert state["A"].shape == (65, 65) and state["G"].shape == (16, 16)
    run(model, opt, batches[7:], torch.Generator(device=device).manual_seed(1))

    clone = small_net(device)
    clone.load_state_dict(saved_model)
    opt2 = KFAC(clone, **hyper)
    opt2.load_state_dict(saved_opt)
    run(clone, opt2, batches[7:], torch.Generator(device=device).manual_seed(1))
    for (name, p), q in zip(model.named_parameters(), clone.parameters()):
        assert torch.equal(p, q), f"{name} differs after resuming from state_dict"


def test_parameters_outside_linear_layers_use_the_fallback(device):
    problem = tiny_transformer(context=8, d_model=16, n_heads=2, n_layers=1, batch_size=4, device=device)
    model = problem.model
    opt = KFAC(model, lr=0.05, fallback_lr=1e-2)
    kfac_group, fallback_group = opt.param_groups
    assert kfac_group["kfac"] and not fallback_group["kfac"] and fallback_group["lr"] == 1e-2
    assert any(p is model.token_embedding.weight for p in fallback_group["params"])
    before = copy.deepcopy(model.state_dict())
    logits = model(problem.batch[0])
    opt.update_factors(logits, generator=torch.Generator(device=device).manual_seed(0))
    F.cross_entropy(logits.flatten(0, 1), problem.batch[1].flatten()).backward()
    opt.step()
    for name, p in model.named_parameters():
        assert torch.isfinite(p).all() and not torch.equal(p, before[name]), f"{name} did not move"
    assert "exp_avg" in opt.state[model.ln_final.weight]


def test_step_direction_is_the_kernel(device):
    """One step without momentum moves [W b] by exactly -lr · kfac_precondition(grad, A, G, damping)."""
    model = small_net(device)
    X, y = tiny_mlp(device=device).batch
    opt = KFAC(model, lr=0.1, damping=1e-2)
    logits = model(X[:50])
    opt.update_factors(logits, targets=y[:50])
    F.cross_entropy(logits, y[:50]).backward()
    layer = model[3]
    old = weight_and_bias(layer)  # (10, 17)
    grad = torch.cat([layer.weight.grad, layer.bias.grad[:, None]], dim=1)  # (10, 17)
    A, G = opt.kronecker_factors()["3"]
    expected = old - 0.1 * kfac_precondition(grad, A, G, 1e-2)
    opt.step()
    check_close("[W b] after the step", weight_and_bias(layer), expected, rtol=1e-10)


def test_kl_clip_scales_the_update(device):
    model = small_net(device)
    X, y = tiny_mlp(device=device).batch
    params = {}
    for kl_clip in (None, 1e-6):
        m = copy.deepcopy(model)
        opt = KFAC(m, lr=0.1, kl_clip=kl_clip)
        logits = m(X[:40])
        opt.update_factors(logits, targets=y[:40])
        F.cross_entropy(logits, y[:40]).backward()
        grads = [row_major_grad(layer).view(-1, layer.in_features + 1) for layer in (m[0], m[3])]
        opt.step()
        params[kl_clip] = [weight_and_bias(layer) for layer in (m[0], m[3])]
    old = [weight_and_bias(layer) for layer in (model[0], model[3])]
    free = [o - p for o, p in zip(old, params[None])]  # lr · Δ per layer
    clipped = [o - p for o, p in zip(old, params[1e-6])]
    S = sum(float((d * g).sum()) for d, g in zip(free, grads)) * 0.1  # lr² Σ⟨Δ, ∇⟩ with d = lr·Δ
    nu = min(1.0, (1e-6 / S) ** 0.5)
    assert nu < 1
    for c, f in zip(clipped, free):
        check_close("clipped update", c, nu * f, rtol=1e-8)


def test_gaussian_sampled_fisher_is_identity_for_a_linear_regression_head(device):
    """Unit-variance Gaussian likelihood: E[g gᵀ] = I at the output layer."""
    layer = nn.Linear(3, 2).double().to(device)
    opt = KFAC(layer, decay=1.0)
    x = randn(200, 3, seed=9, device=device)
    gen = torch.Generator(device=device).manual_seed(0)
    for _ in range(20):
        opt.update_factors(layer(x), likelihood="gaussian", generator=gen)
    _, G = opt.kronecker_factors()[""]
    check_close("mean sampled G", G, torch.eye(2, dtype=torch.float64, device=device), rtol=0.05)


# ------------------------------------------------------------------------------ damping, robustness


@pytest.mark.parametrize("dtype", DTYPES)
def test_ill_conditioned_factors_stay_finite_with_damping(device, dtype):
    d_in, d_out = 8, 5
    a = randn(3, d_in, seed=10, dtype=dtype, device=device) * torch.logspace(0, -6, d_in, device=device,
                                                                            dtype=dtype)  # rank 3
    g = randn(3, d_out, seed=11, dtype=dtype, device=device) * 1e3
    A, G = kfac_factors(a, g)  # singular, condition number far beyond 1e12
    grad_W = randn(d_out, d_in, seed=12, dtype=dtype, device=device)
    for delta in (kfac_precondition(grad_W, A, G, 1e-3),
                  kfac_precondition_eigh(grad_W, *factor_eigh(A), *factor_eigh(G), 1e-3)):
        assert torch.isfinite(delta).all()
        # Each damped factor's inverse has norm at most 1/√λ, so ‖Δ‖ ≤ ‖∇W‖ / λ.
        bound = 1e3 * float(torch.linalg.matrix_norm(grad_W, 2))
        assert float(torch.linalg.matrix_norm(delta, 2)) <= bound * 1.01
    with pytest.raises(ValueError, match="A"):
        kfac_precondition(grad_W, torch.zeros_like(A), G, 0.0)


def test_optimizer_stays_finite_on_pixels_that_never_light_up(device):
    """Digits have always-zero pixels, so A is singular; damping keeps every step finite."""
    problem = tiny_mlp(device=device, dtype=torch.float32)
    loss = train(problem, lambda m: KFAC(m, lr=0.05, inv_period=1), steps=15)
    assert loss < 2.3
    assert all(torch.isfinite(p).all() for p in problem.model.parameters())


# ------------------------------------------------------------------------------------ bad input


def test_kernels_reject_bad_input(device):
    a, g = randn(5, 4, device=device), randn(5, 3, device=device)
    with pytest.raises(ValueError, match=r"a and g .* rows"):
        kfac_factors(a, g[:4])
    with pytest.raises(ValueError, match="^g must be a matrix"):
        kfac_factors(a, g[0])
    with pytest.raises(ValueError, match="^g has dtype"):
        kfac_factors(a, g.float())
    A, G, grad_W = spd_matrix(4, device=device), spd_matrix(3, device=device), randn(3, 4, device=device)
    with pytest.raises(ValueError, match=r"^A must be 4×4 .* got shape \(3, 3\)"):
        kfac_precondition(grad_W, G, A, 1e-3)
    with pytest.raises(ValueError, match=r"^G must be 3×3"):
        kfac_precondition(grad_W, A, A, 1e-3)
    with pytest.raises(ValueError, match="^damping"):
        kfac_precondition(grad_W, A, G, -1.0)
    with pytest.raises(ValueError, match="^A must be symmetric"):
        kfac_precondition(grad_W, A + torch.triu(torch.ones_like(A), 1), G, 1e-3)
    with pytest.raises(ValueError, match="^grad_W must be a matrix"):
        kfac_precondition(grad_W.flatten(), A, G, 1e-3)
    with pytest.raises(ValueError, match="^G must be a square"):
        kfac_block(A, grad_W)
    with pytest.raises(ValueError, match="^decay"):
        running_average(A, A, 1.5, 2)


def test_optimizer_rejects_bad_hyperparameters_and_misuse():
    model = small_net("cpu")
    for kwargs, name in ((dict(lr=-1.0), "lr"), (dict(damping=0.0), "damping"), (dict(decay=1.5), "decay"),
                         (dict(inv_period=0), "inv_period"), (dict(momentum=1.0), "momentum"),
                         (dict(fallback="lbfgs"), "fallback"), (dict(kl_clip=0.0), "kl_clip")):
        with pytest.raises(ValueError, match=f"^{name}"):
            KFAC(model, **kwargs)
    with pytest.raises(ValueError, match="nn.Linear"):
        KFAC(nn.Sequential(nn.LayerNorm(3)))
    opt = KFAC(model)
    X, y = tiny_mlp().batch
    with torch.no_grad():
        evaluated = model(X[:4])
    with pytest.raises(RuntimeError, match="update_factors found no recorded"):
        opt.update_factors(evaluated.requires_grad_())
    with pytest.raises(RuntimeError, match="does not depend"):
        model(X[:4])
        opt.update_factors(torch.zeros(4, 10, dtype=torch.float64, requires_grad=True))
    logits = model(X[:4])
    with pytest.raises(ValueError, match="^likelihood"):
        opt.update_factors(logits, likelihood="poisson")
    F.cross_entropy(logits, y[:4]).backward()
    with pytest.raises(RuntimeError, match="no Kronecker factors yet"):
        opt.step()


def test_replaced_optimizer_is_collected_and_stops_recording():
    model = small_net("cpu")
    ref = weakref.ref(KFAC(model))
    gc.collect()
    assert ref() is None, "the forward hooks must not keep a dropped optimizer alive"
    X, _ = tiny_mlp().batch
    opt = KFAC(model)
    opt.update_factors(model(X[:8]))  # the stale hooks are silent; only the live optimizer records
    assert set(opt.kronecker_factors()) == {"0", "3"}
