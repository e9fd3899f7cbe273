"""Curvature: HVPs, operators and CG against dense float64 oracles built here with torch.func."""

import time

import numpy as np
import pytest
import scipy.sparse.linalg
import secondorder as so
import torch
import torch.nn.functional as F
from conftest import spd_matrix
from secondorder import testing
from secondorder.curvature import (
    HVP_METHODS,
    EmpiricalFisherOperator,
    FisherOperator,
    GGNOperator,
    HessianOperator,
    cg,
    hessian_free_step,
    hessian_vector_product,
    hvp,
    model_hvp,
    natural_gradient_step,
)
from secondorder.problems import load_digits, tiny_mlp
from torch import nn
from torch.func import functional_call, hessian, jacrev

# ---------------------------------------------------------------------------------------------------
# Small models and their dense oracles
# ---------------------------------------------------------------------------------------------------

LOSSES = {
    "ce_mean": lambda: nn.CrossEntropyLoss(),
    "ce_sum": lambda: nn.CrossEntropyLoss(reduction="sum"),
    "mse_mean": lambda: nn.MSELoss(),
    "mse_sum": lambda: nn.MSELoss(reduction="sum"),
    "bce_mean": lambda: nn.BCEWithLogitsLoss(),
}


def make_case(kind, loss_name, device, dtype=torch.float64, seed=0):
    """(model, loss_fn, batch): a tanh MLP on random data, or softmax regression on 40 digits (4×4)."""
    gen = torch.Generator().manual_seed(seed)
    if kind == "mlp":
        B, d, C = 10, 6, 4
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = nn.Sequential(nn.Linear(d, 5), nn.Tanh(), nn.Linear(5, C))
        X = torch.randn(B, d, generator=gen, dtype=torch.float64)
    else:
        X, _ = load_digits()
        B, C = 40, 10
        X = F.avg_pool2d(X[:B].reshape(B, 1, 8, 8) / 16.0, 2).reshape(B, 16)  # (B, 16): n = 170
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = nn.Linear(16, C)
    if loss_name.startswith("ce"):
        y = torch.randint(0, C, (B,), generator=gen)
    elif loss_name.startswith("mse"):
        y = torch.randn(B, C, generator=gen, dtype=torch.float64)
    else:
        y = torch.randint(0, 2, (B, C), generator=gen).double()
    model = model.to(dtype=dtype, device=device)
    y = y.to(device=device, dtype=dtype if y.is_floating_point() else y.dtype)
    return model, LOSSES[loss_name](), (X.to(dtype=dtype, device=device), y)


def as_flat_function(model, X):
    """output(θ) for a flat float64 θ in model.parameters() order, and θ0."""
    names = [n for n, _ in model.named_parameters()]
    shapes = [p.shape for p in model.parameters()]
    sizes = [p.numel() for p in model.parameters()]

    def output(theta):
        return functional_call(model, {n: c.view(s) for n, c, s in zip(names, theta.split(sizes), shapes)},
                               (X,))

    theta0 = torch.cat([p.detach().reshape(-1) for p in model.parameters()]).double()
    return output, theta0


def oracle(model, loss_fn, batch, which):
    """Dense float64 curvature matrices from torch.func Hessians and Jacobians."""
    model64 = model.double() if next(model.parameters()).dtype != torch.float64 else model
    X, y = (t.double() if t.is_floating_point() else t for t in batch)
    output, theta0 = as_flat_function(model64, X)
    if which == "hessian":
        return hessian(lambda th: loss_fn(output(th), y))(theta0)  # (n, n)
    o = output(theta0).detach()  # (B, C)
    J = jacrev(output)(theta0).reshape(o.numel(), -1)  # (B·C, n)
    if which == "ggn":
        H_o = hessian(lambda z: loss_fn(z, y))(o).reshape(o.numel(), o.numel())  # (B·C, B·C)
        return J.T @ H_o @ J
    if which == "fisher":  # cross-entropy: exact expectation over the labels, class by class
        B, C = o.shape
        c = 1.0 / B if loss_fn.reduction == "mean" else 1.0
        p = o.softmax(dim=1)  # (B, C)
        residual = p[:, None, :] - torch.eye(C, dtype=p.dtype, device=p.device)  # (B, labels, C): p - e_y
        grads = torch.einsum("bcn,byc->byn", J.reshape(B, C, -1), residual)  # ∇θ ℓ(o_b, y) for every y
        return c * torch.einsum("by,byn,bym->nm", p, grads, grads)
    raise ValueError(which)


def empirical_fisher_loop(model, loss_fn, batch):
    """c · Σ_i g_i g_iᵀ with per-example gradients by a Python loop over the batch."""
    X, y = batch
    out = model(X)
    if loss_fn.reduction == "sum":
        c = 1.0
    else:
        c = 1.0 / (X.shape[0] if isinstance(loss_fn, nn.CrossEntropyLoss) else out.numel())
    per_example = type(loss_fn)(reduction="sum")
    grads = []
    for i in range(X.shape[0]):
        gs = torch.autograd.grad(per_example(model(X[i:i + 1]), y[i:i + 1]), list(model.parameters()))
        grads.append(torch.cat([g.reshape(-1) for g in gs]).double())
    G = torch.stack(grads)  # (B, n)
    return c * G.T @ G


def random_block(n, k, like, seed=1):
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(n, k, generator=gen, dtype=torch.float64).to(like)


def check_operator(A, dense, rtol=None):
    """A @ v and A @ V against the dense oracle; repeated products are bitwise identical."""
    n = dense.shape[0]
    assert A.shape == (n, n)
    p0 = next(iter(A.parameters))
    V = random_block(n, 3, p0)  # (n, 3)
    v = V[:, 0].clone()  # (n,)
    Av, AV = A @ v, A @ V
    testing.check_tensor_like("A @ v", Av, v)
    testing.check_tensor_like("A @ V", AV, V)
    testing.check_close("A @ v", Av.double().cpu(), dense.cpu() @ v.double().cpu(), rtol=rtol)
    testing.check_close("A @ V", AV.double().cpu(), dense.cpu() @ V.double().cpu(), rtol=rtol)
    assert torch.equal(A @ v, Av) and torch.equal(A @ V, AV), "applying twice must give identical results"


# ---------------------------------------------------------------------------------------------------
# Operators against oracles
# ---------------------------------------------------------------------------------------------------

OPERATOR_CASES = [(kind, loss) for kind in ("mlp", "softmax") for loss in ("ce_mean", "ce_sum")] + [
    ("mlp", loss) for loss in ("mse_mean", "mse_sum", "bce_mean")]


@pytest.mark.parametrize("kind,loss_name", OPERATOR_CASES)
def test_hessian_and_ggn_operators_match_dense_oracles(device, kind, loss_name):
    model, loss_fn, batch = make_case(kind, loss_name, device)
    for Op, which in ((HessianOperator, "hessian"), (GGNOperator, "ggn")):
        A, dense = Op(model, loss_fn, batch), oracle(model, loss_fn, batch, which)
        check_operator(A, dense)
        if kind == "mlp":
            testing.check_close(f"{Op.__name__}.to_dense()", A.to_dense(), dense.to(A.to_dense()))
    testing.check_symmetric("GGN", dense)
    testing.check_positive_definite("GGN + 1e-8 I", dense + 1e-8 * torch.eye(dense.shape[0]).to(dense))


class CountingForward:
    """Counts the model's forward passes through a hook."""

    def __init__(self, model):
        self.count = 0
        model.register_forward_hook(self._hook)

    def _hook(self, module, inputs, output):
        self.count += 1


def test_hessian_operator_keeps_its_graph_while_the_point_is_unchanged(device):
    model, loss_fn, batch = make_case("mlp", "ce_mean", device)
    H = HessianOperator(model, loss_fn, batch)
    forwards = CountingForward(model)
    V = random_block(H.shape[0], 3, batch[0])  # (n, 3)
    fresh = HessianOperator(model, loss_fn, batch, keep_graph=False)
    products = [H @ V[:, 0], H @ V[:, 1], H @ V, H @ V[:, 0]]
    assert forwards.count == 1, "one forward pass for every product at one point"
    testing.check_close("H v (graph kept)", products[0], fresh @ V[:, 0], rtol=1e-12)
    testing.check_close("H V (graph kept)", products[2], fresh @ V, rtol=1e-12)
    assert torch.equal(products[0], products[3])
    testing.check_close("H v", products[1].cpu(), oracle(model, loss_fn, batch, "hessian").cpu() @ V[:, 1].cpu())
    counted = forwards.count
    H.release()
    H @ V[:, 0], H @ V[:, 1]
    assert forwards.count == counted + 1, "release() frees the graph; the next product builds it again"
    fresh @ V[:, 0], fresh @ V[:, 1]
    assert forwards.count == counted + 3, "keep_graph=False builds the graph for every product"


def _step(model, loss_fn, batch):
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    loss_fn(model(batch[0]), batch[1]).backward()
    opt.step()
    opt.zero_grad()


def _reload(model, loss_fn, batch):
    state = {k: v + 0.1 for k, v in model.state_dict().items()}
    model.load_state_dict(state)


def _edit_batch(model, loss_fn, batch):
    batch[0].mul_(2.0)


def _replace_data(model, loss_fn, batch):
    model[0].weight.data = 2.0 * model[0].weight.data


@pytest.mark.parametrize("change", [_step, _reload, _edit_batch, _replace_data])
def test_hessian_operator_rebuilds_its_graph_after_the_point_changes(device, change):
    model, loss_fn, batch = make_case("mlp", "ce_mean", device)
    batch = tuple(t.clone() for t in batch)
    H = HessianOperator(model, loss_fn, batch)
    v = random_block(H.shape[0], 1, batch[0])[:, 0]
    before = H @ v
    change(model, loss_fn, batch)
    after = H @ v
    expected = oracle(model, loss_fn, batch, "hessian").cpu() @ v.cpu()
    testing.check_close(f"H v after {change.__name__.strip('_')}", after.cpu(), expected)
    assert not torch.allclose(after, before), "the change must move the Hessian (else this test proves nothing)"


def test_hessian_operator_follows_train_and_eval_mode(device):
    gen = torch.Generator().manual_seed(0)
    X = torch.randn(16, 6, generator=gen, dtype=torch.float64).to(device)
    y = torch.randint(0, 3, (16,), generator=gen).to(device)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = nn.Sequential(nn.Linear(6, 8), nn.Tanh(), nn.Dropout(0.5), nn.Linear(8, 3))
    model = model.double().to(device)
    H = HessianOperator(model, nn.CrossEntropyLoss(), (X, y))
    v = random_block(H.shape[0], 1, X)[:, 0]
    train_products = [H @ v, H @ v]
    # One dropout draw for all products at a point: the operator stays one fixed matrix.
    assert torch.equal(*train_products)
    model.eval()
    evaluated = H @ v
    expected = HessianOperator(model, nn.CrossEntropyLoss(), (X, y), keep_graph=False) @ v
    testing.check_close("H v in eval mode", evaluated, expected, rtol=1e-12)
    assert not torch.allclose(evaluated, train_products[0])


@pytest.mark.parametrize("kind,loss_name", [("mlp", "ce_mean"), ("softmax", "ce_sum")])
def test_exact_fisher_equals_expectation_over_labels_and_ggn(device, kind, loss_name):
    model, loss_fn, batch = make_case(kind, loss_name, device)
    Fop = FisherOperator(model, loss_fn, batch, mode="exact")
    expectation = oracle(model, loss_fn, batch, "fisher")
    check_operator(Fop, expectation)
    testing.check_close("Fisher (exact)", Fop.to_dense(), GGNOperator(model, loss_fn, batch).to_dense(),
                        hint="for softmax cross-entropy the true Fisher is the GGN")


@pytest.mark.parametrize("loss_name", ["mse_mean", "bce_mean"])
def test_exact_fisher_equals_ggn_for_mse_and_bce(device, loss_name):
    model, loss_fn, batch = make_case("mlp", loss_name, device)
    testing.check_close("Fisher (exact)", FisherOperator(model, loss_fn, batch).to_dense(),
                        oracle(model, loss_fn, batch, "ggn").to(device))


@pytest.mark.parametrize("kind,loss_name", [("mlp", "ce_mean"), ("mlp", "mse_mean"), ("mlp", "bce_mean"),
                                            ("softmax", "ce_sum")])
def test_empirical_fisher_is_mean_of_per_example_outer_products(device, kind, loss_name):
    model, loss_fn, batch = make_case(kind, loss_name, device)
    expected = empirical_fisher_loop(model, loss_fn, batch)
    check_operator(EmpiricalFisherOperator(model, loss_fn, batch), expected)


def test_mc_fisher_converges_like_one_over_sqrt_samples(device):
    model, loss_fn, batch = make_case("mlp", "ce_mean", device)
    exact = FisherOperator(model, loss_fn, batch).to_dense()

    def error(S, seed):
        return float(torch.linalg.matrix_norm(FisherOperator(model, loss_fn, batch, mode="mc", mc_samples=S,
                                                             generator=seed).to_dense() - exact))

    small, large = (np.mean([error(S, seed) for seed in range(4)]) for S in (4, 400))
    # 100× the samples: the error should shrink about 10×; allow a wide band for the randomness.
    assert 4 < small / large < 25, f"MC Fisher error {small:.3g} (S=4) vs {large:.3g} (S=400)"
    assert large / float(torch.linalg.matrix_norm(exact)) < 0.1


@pytest.mark.parametrize("loss_name", ["mse_mean", "bce_mean"])
def test_mc_fisher_for_mse_and_bce_approaches_ggn(device, loss_name):
    model, loss_fn, batch = make_case("mlp", loss_name, device)
    mc = FisherOperator(model, loss_fn, batch, mode="mc", mc_samples=2000).to_dense()
    testing.check_close("MC Fisher (S=2000)", mc, GGNOperator(model, loss_fn, batch).to_dense(), rtol=0.1)


def test_mc_fisher_reuses_labels_until_resampled(device):
    model, loss_fn, batch = make_case("mlp", "ce_mean", device)
    Fop = FisherOperator(model, loss_fn, batch, mode="mc", mc_samples=3, generator=7)
    again = FisherOperator(model, loss_fn, batch, mode="mc", mc_samples=3, generator=7)
    V = random_block(Fop.shape[0], 2, batch[0])
    first = Fop @ V
    assert torch.equal(Fop @ V, first) and torch.equal(again @ V, first)
    Fop.resample()
    assert not torch.equal(Fop @ V, first), "resample() should draw new labels"
    testing.check_symmetric("MC Fisher", Fop.to_dense())


def test_ggn_equals_hessian_for_linear_model_with_squared_loss(device):
    gen = torch.Generator().manual_seed(3)
    X = torch.randn(20, 5, generator=gen, dtype=torch.float64).to(device)
    y = torch.randn(20, 3, generator=gen, dtype=torch.float64).to(device)
    model = nn.Linear(5, 3).double().to(device)
    H = HessianOperator(model, nn.MSELoss(), (X, y)).to_dense()
    testing.check_close("GGN", GGNOperator(model, "mse", (X, y)).to_dense(), H,
                        hint="a linear model has no second-order model term")
    # Closed form: L = ‖XWᵀ + b - Y‖² / (m·3), so ∇²_W = 2/(m·3) I₃ ⊗ [X 1]ᵀ[X 1] (bias block alike).
    testing.check_close("Hessian (W block)", H[:15, :15],
                        torch.kron(torch.eye(3, dtype=torch.float64, device=device), X.T @ X) * 2 / 60)


def test_float32_operators_match_float64_oracle(device):
    model, loss_fn, batch = make_case("mlp", "ce_mean", device, dtype=torch.float32)
    model64, _, batch64 = make_case("mlp", "ce_mean", device)
    for Op, which in ((HessianOperator, "hessian"), (GGNOperator, "ggn")):
        check_operator(Op(model, loss_fn, batch), oracle(model64, loss_fn, batch64, which), rtol=1e-4)
    check_operator(EmpiricalFisherOperator(model, loss_fn, batch),
                   empirical_fisher_loop(model64, loss_fn, batch64), rtol=1e-4)


def test_operator_order_matches_model_problem():
    problem = tiny_mlp(hidden=(3,))
    batch = tuple(t[:200] for t in problem.batch)
    H = HessianOperator(problem.model, "cross_entropy", batch)
    testing.check_close("HessianOperator.to_dense()", H.to_dense(), problem.hessian(problem.x0, batch))
    loss, g = H.loss_and_gradient()
    testing.check_close("gradient", g, problem.value_and_grad(problem.x0, batch)[1])
    testing.check_close("loss", loss, problem.loss_at(problem.x0, batch))


def test_to_scipy_works_with_eigsh():
    model, loss_fn, batch = make_case("mlp", "ce_mean", "cpu")
    G = GGNOperator(model, loss_fn, batch)
    top = scipy.sparse.linalg.eigsh(G.to_scipy(), k=2, which="LA", return_eigenvectors=False)
    expected = torch.linalg.eigvalsh(oracle(model, loss_fn, batch, "ggn"))[-2:]
    np.testing.assert_allclose(np.sort(top), expected.numpy(), rtol=1e-8)
    X = np.random.default_rng(0).standard_normal((G.shape[0], 2))
    np.testing.assert_allclose(G.to_scipy() @ X, (G @ torch.from_numpy(X)).numpy())


# ---------------------------------------------------------------------------------------------------
# Hessian-vector products
# ---------------------------------------------------------------------------------------------------

def rosenbrock_matrix(x):
    """A non-quadratic scalar function of a matrix-shaped x."""
    z = x.reshape(-1)
    return (100 * (z[1:] - z[:-1] ** 2) ** 2 + (1 - z[:-1]) ** 2).sum() + torch.tanh(x).sum() ** 2


@pytest.mark.parametrize("dtype,rtol", [(torch.float64, 1e-8), (torch.float32, 1e-4)])
@pytest.mark.parametrize("method", HVP_METHODS)
def test_hvp_methods_match_dense_hessian(device, method, dtype, rtol):
    gen = torch.Generator().manual_seed(0)
    x64, v64 = (0.5 * torch.randn(3, 4, generator=gen, dtype=torch.float64) for _ in range(2))
    dense = hessian(rosenbrock_matrix)(x64).reshape(12, 12)  # (n, n)
    expected = (dense @ v64.reshape(-1)).reshape(3, 4)
    x, v = x64.to(dtype=dtype, device=device), v64.to(dtype=dtype, device=device)
    x_before, v_before = x.clone(), v.clone()
    got = hessian_vector_product(rosenbrock_matrix, x, v, method=method)
    testing.check_tensor_like("hessian_vector_product", got, x)
    assert not got.requires_grad
    if method == "finite_difference":  # error ~ u^(2/3)
        rtol = {torch.float64: 1e-8, torch.float32: 3e-3}[dtype]
    testing.check_close(f"HVP ({method})", got.double().cpu(), expected, rtol=rtol)
    testing.check_unmodified("x", x_before, x)
    testing.check_unmodified("v", v_before, v)
    if method == "double_backward":
        assert torch.equal(hvp(rosenbrock_matrix, x, v), got)


def test_hvp_agrees_with_finite_differences_of_the_gradient(device):
    gen = torch.Generator().manual_seed(1)
    x, v = (torch.randn(50, generator=gen, dtype=torch.float64).to(device) for _ in range(2))

    def f(z):
        return torch.logsumexp(z, 0) + (z ** 3).sum() / 6

    h = 1e-5
    g = [torch.func.grad(f)(x + s * h * v) for s in (1, -1)]
    testing.check_close("hvp", hvp(f, x, v), (g[0] - g[1]) / (2 * h), rtol=1e-8)


def test_hvp_of_a_requires_grad_input_and_linear_function():
    x = torch.randn(5, dtype=torch.float64, requires_grad=True)
    v = torch.ones(5, dtype=torch.float64)
    testing.check_close("hvp", hvp(lambda z: (z ** 2).sum(), x, v), 2 * v)
    for method in HVP_METHODS:
        got = hessian_vector_product(lambda z: z.sum(), x, v, method=method)
        assert torch.equal(got, torch.zeros_like(x)), method
    assert x.grad is None


@pytest.mark.parametrize("method", HVP_METHODS)
def test_model_hvp_matches_dense_hessian(device, method):
    model, loss_fn, batch = make_case("mlp", "ce_mean", device)
    dense = oracle(model, loss_fn, batch, "hessian")
    vectors = [torch.randn_like(p) for p in model.parameters()]
    flat = torch.cat([v.reshape(-1) for v in vectors])
    got = model_hvp(model, loss_fn, batch, vectors, method=method)
    assert [g.shape for g in got] == [p.shape for p in model.parameters()]
    rtol = 1e-7 if method == "finite_difference" else 1e-10
    testing.check_close("model_hvp", torch.cat([g.reshape(-1) for g in got]), dense @ flat, rtol=rtol)
    testing.check_close("model_hvp (flat)", model_hvp(model, loss_fn, batch, flat, method=method),
                        dense @ flat, rtol=rtol)
    assert all(p.grad is None for p in model.parameters())


def test_hvp_at_reuses_one_gradient_graph_and_matches_the_dense_hessian(device):
    """hvp_at: every product equals the dense oracle's, repeated products are identical, and the
    loss (forward and first backward) runs once however many products are made."""
    model, loss_fn, batch = make_case("mlp", "ce_mean", device)
    dense = oracle(model, loss_fn, batch, "hessian")
    params = list(model.parameters())
    calls = [0]

    def loss():
        calls[0] += 1
        return loss_fn(model(batch[0]), batch[1])

    product = so.curvature.hvp_at(loss, params)
    for seed in range(3):
        v = torch.randn(dense.shape[0], generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
        v = v.to(device)
        testing.check_close("hvp_at", product(v), dense @ v, rtol=1e-10)
        assert torch.equal(product(v), product(v))
    assert calls[0] == 1
    assert all(p.grad is None for p in params)
    with pytest.raises(ValueError, match="v must have shape"):
        product(torch.zeros(3, dtype=torch.float64, device=device))
    linear = so.curvature.hvp_at(lambda: (params[0] * 2).sum(), params[:1])
    assert not linear(torch.ones(params[0].numel(), dtype=params[0].dtype, device=device)).any()


def test_model_hvp_in_the_models_own_parameters_matches_functional_call(device):
    """double_backward differentiates in the model's parameters directly when they all require grad;
    a frozen parameter in ``params`` (or any other method) goes through functional_call instead."""
    model, loss_fn, batch = make_case("mlp", "ce_mean", device)
    params = list(model.parameters())
    dense = oracle(model, loss_fn, batch, "hessian")
    sizes = [p.numel() for p in params]
    blocks = torch.arange(dense.shape[0]).split(sizes)
    sub = [params[0], params[2]]  # the two weight matrices
    idx = torch.cat([blocks[0], blocks[2]])
    vs = [torch.randn_like(p) for p in sub]
    flat = torch.cat([v.reshape(-1) for v in vs])
    expected = dense[idx][:, idx] @ flat
    for method in ("double_backward", "forward_over_reverse"):
        got = torch.cat([g.reshape(-1) for g in model_hvp(model, loss_fn, batch, vs, method=method,
                                                           params=sub)])
        testing.check_close(f"model_hvp on a subset ({method})", got, expected, rtol=1e-10)
    H = HessianOperator(model, loss_fn, batch, params=sub)
    V = torch.randn(flat.numel(), 3, dtype=flat.dtype, device=flat.device)
    testing.check_close("HessianOperator on a subset, 3 columns", H @ V, dense[idx][:, idx] @ V, rtol=1e-10)
    assert all(p.grad is None for p in params)
    params[0].requires_grad_(False)  # frozen, but asked for: the functional path differentiates it
    got = torch.cat([g.reshape(-1) for g in model_hvp(model, loss_fn, batch, vs, params=sub)])
    testing.check_close("model_hvp with a frozen parameter", got, expected, rtol=1e-10)
    assert all(p.grad is None for p in params) and not params[0].requires_grad


@pytest.mark.parametrize("method", HVP_METHODS)
def test_mse_mean_forward_over_reverse_is_handled(device, method):
    """torch.func.jvp over grad fails for F.mse_loss(reduction='mean') (pytorch#123996)."""
    model, loss_fn, batch = make_case("mlp", "mse_mean", device)
    X, y = batch
    names = [n for n, _ in model.named_parameters()]
    params = tuple(p.detach() for p in model.parameters())
    vs = tuple(torch.randn_like(p) for p in params)

    def f(ps):
        return F.mse_loss(functional_call(model, dict(zip(names, ps)), (X,)), y)

    try:  # Documents the upstream bug while it lasts; the assertions below hold either way.
        torch.func.jvp(torch.func.grad(f), (params,), (vs,))
    except RuntimeError as err:
        assert "ZeroTensors are immutable" in str(err)
    got = model_hvp(model, loss_fn, batch, list(vs), method=method)
    expected = model_hvp(model, loss_fn, batch, list(vs), method="double_backward")
    for g, e in zip(got, expected):
        testing.check_close("HVP of an mse_loss model", g, e, rtol=1e-7)
    # Also for a plain function of a tensor.
    t = torch.randn(7, dtype=torch.float64, device=device)
    x = torch.randn(7, dtype=torch.float64, device=device)
    got = hessian_vector_product(lambda z: F.mse_loss(torch.tanh(z), t), x, t, method=method)
    testing.check_close("HVP of mse_loss", got, hvp(lambda z: F.mse_loss(torch.tanh(z), t), x, t), rtol=1e-7)


@pytest.mark.parametrize("method", HVP_METHODS)
def test_hvp_at_two_million_parameters_never_builds_the_hessian(device, method):
    n = 2 * 10**6
    gen = torch.Generator().manual_seed(0)
    x, v = (torch.randn(n, generator=gen, dtype=torch.float64).to(device) for _ in range(2))

    def f(z):
        return (z ** 4).sum() / 4 + (z[1:] * z[:-1]).sum()

    # ∇²f = diag(3x²) + the tridiagonal coupling: (Hv)_i = 3x_i² v_i + v_{i-1} + v_{i+1}.
    expected = 3 * x ** 2 * v
    expected[1:] += v[:-1]
    expected[:-1] += v[1:]
    start = time.perf_counter()
    got = hessian_vector_product(f, x, v, method=method)
    elapsed = time.perf_counter() - start
    rtol = 1e-8 if method == "finite_difference" else 1e-12
    testing.check_close(f"HVP ({method}, n = 2e6)", got, expected, rtol=rtol)
    assert elapsed < 30, f"an HVP at n = 2e6 took {elapsed:.1f} s: is something O(n²)?"


# ---------------------------------------------------------------------------------------------------
# Conjugate gradient and the steps built on it
# ---------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("n,cond,damping", [(1, 1.0, 0.0), (30, 1e3, 0.0), (30, 1e3, 0.5), (200, 100.0, 0.0)])
def test_cg_solves_spd_systems(device, dtype, n, cond, damping):
    A = spd_matrix(n, cond=cond, dtype=dtype, device=device, seed=n)
    b = random_block(n, 1, A, seed=2)[:, 0]
    tol = 1e-10 if dtype == torch.float64 else 1e-5
    result = cg(lambda v: A @ v, b, damping=damping, tol=tol, max_iter=3 * n)
    assert result.converged and not result.negative_curvature, result.status
    A64 = A.double().cpu() + damping * torch.eye(n, dtype=torch.float64)
    expected = torch.linalg.solve(A64, b.double().cpu())
    residual = torch.linalg.vector_norm(b.double().cpu() - A64 @ result.x.double().cpu())
    assert residual <= 10 * tol * torch.linalg.vector_norm(b.double().cpu())
    testing.check_close("cg x", result.x.double().cpu(), expected, rtol=tol * cond * 10)
    testing.check_tensor_like("cg x", result.x, b)
    assert 1 <= result.iterations <= 3 * n


def test_cg_accepts_matrix_operator_and_x0(device):
    A = spd_matrix(20, cond=50.0, device=device, seed=5)
    b = random_block(20, 1, A)[:, 0]
    x0 = random_block(20, 1, A, seed=9)[:, 0]
    x0_before = x0.clone()
    result = cg(A, b, x0=x0, tol=1e-12)
    testing.check_close("cg x", result.x, torch.linalg.solve(A, b))
    testing.check_unmodified("x0", x0_before, x0)
    exact = cg(A, A @ x0, x0=x0)  # already solved: no iteration
    assert exact.iterations == 0 and exact.converged
    assert cg(A, b, max_iter=2).status == "max_iter"


def test_cg_reports_negative_curvature(device):
    A = torch.diag(torch.tensor([2.0, 1.0, -1.0, 3.0], dtype=torch.float64, device=device))
    b = torch.tensor([1.0, 1.0, 1.0, 1.0], dtype=torch.float64, device=device)
    result = cg(A, b)
    assert result.negative_curvature and not result.converged
    # First iteration: pᵀAp = bᵀAb = 5 > 0, so the iterate after it is returned (N&W Alg. 7.1).
    assert result.iterations >= 2
    b_neg = torch.tensor([0.0, 0.0, 1.0, 0.0], dtype=torch.float64, device=device)
    first = cg(A, b_neg)
    assert first.negative_curvature and first.iterations == 1
    assert torch.equal(first.x, b_neg), "at the first iteration CG returns the steepest-descent direction b"


def test_hessian_free_and_natural_gradient_steps_solve_damped_systems(device):
    model, loss_fn, batch = make_case("mlp", "ce_mean", device)
    G = oracle(model, loss_fn, batch, "ggn")
    g = GGNOperator(model, loss_fn, batch).loss_and_gradient()[1]
    eye = torch.eye(G.shape[0], dtype=torch.float64, device=device)
    step = hessian_free_step(model, loss_fn, batch, damping=0.1, curvature="ggn", tol=1e-10, max_iter=500)
    testing.check_close("HF step", step.x, -torch.linalg.solve(G + 0.1 * eye, g), rtol=1e-7)
    nat = natural_gradient_step(model, loss_fn, batch, damping=0.1, tol=1e-10, max_iter=500)
    testing.check_close("natural-gradient step", nat.x, step.x, rtol=1e-7)
    newton = hessian_free_step(model, loss_fn, batch, damping=0.0)
    assert newton.status in ("converged", "negative_curvature", "max_iter")
    assert float(newton.x @ g) < 0, "the Newton–CG step must be a descent direction"
    mc = natural_gradient_step(model, loss_fn, batch, damping=0.1, mode="mc", mc_samples=5)
    assert mc.converged and float(mc.x @ g) < 0


# ---------------------------------------------------------------------------------------------------
# Bad input raises ValueError naming the argument
# ---------------------------------------------------------------------------------------------------

def test_hvp_rejects_bad_input():
    x = torch.zeros(3, dtype=torch.float64)
    f = lambda z: (z ** 2).sum()  # noqa: E731
    with pytest.raises(ValueError, match="v must have the shape of x"):
        hvp(f, x, torch.zeros(4, dtype=torch.float64))
    with pytest.raises(ValueError, match="v has dtype"):
        hvp(f, x, torch.zeros(3, dtype=torch.float32))
    with pytest.raises(ValueError, match="v contains NaN"):
        hvp(f, x, torch.tensor([0.0, float("nan"), 0.0], dtype=torch.float64))
    with pytest.raises(ValueError, match="x must be a floating-point"):
        hvp(f, torch.zeros(3, dtype=torch.int64), x)
    with pytest.raises(ValueError, match="f must return a scalar"):
        hvp(lambda z: z ** 2, x, x)
    with pytest.raises(ValueError, match="method must be one of"):
        hessian_vector_product(f, x, x, method="exact")
    with pytest.raises(ValueError, match="eps"):
        hessian_vector_product(f, x, x, method="double_backward", eps=1e-3)
    with pytest.raises(ValueError, match="eps"):
        hessian_vector_product(f, x, x, method="finite_difference", eps=-1.0)


@pytest.mark.gpu
def test_hvp_rejects_device_mismatch():
    x = torch.zeros(3, dtype=torch.float64)
    with pytest.raises(ValueError, match="v is on"):
        hvp(lambda z: (z ** 2).sum(), x, x.to("cuda"))


def test_operators_reject_bad_input():
    model, loss_fn, batch = make_case("mlp", "ce_mean", "cpu")
    H = HessianOperator(model, loss_fn, batch)
    n = H.shape[0]
    with pytest.raises(ValueError, match=r"v must have shape"):
        H @ torch.zeros(n + 1, dtype=torch.float64)
    with pytest.raises(ValueError, match="v has dtype"):
        H @ torch.zeros(n, dtype=torch.float32)
    with pytest.raises(ValueError, match="loss_fn"):
        GGNOperator(model, lambda o, t: o.sum(), batch)
    with pytest.raises(ValueError, match="loss_fn"):
        FisherOperator(model, nn.CrossEntropyLoss(label_smoothing=0.1), batch)
    with pytest.raises(ValueError, match="loss_fn"):
        GGNOperator(model, "hinge", batch)
    with pytest.raises(ValueError, match="batch"):
        GGNOperator(model, loss_fn, batch[0])
    with pytest.raises(ValueError, match="params"):
        HessianOperator(model, loss_fn, batch, params=[torch.zeros(2)])
    with pytest.raises(ValueError, match="mode"):
        FisherOperator(model, loss_fn, batch, mode="empirical")
    with pytest.raises(ValueError, match="mc_samples"):
        FisherOperator(model, loss_fn, batch, mode="mc", mc_samples=0)
    with pytest.raises(ValueError, match="vectors"):
        model_hvp(model, loss_fn, batch, [torch.zeros(2)])
    with pytest.raises(ValueError, match=r"vectors\[0\] has dtype"):
        model_hvp(model, loss_fn, batch, [torch.zeros_like(p, dtype=torch.float32) for p in H.parameters])
    with pytest.raises(ValueError, match="method"):
        HessianOperator(model, loss_fn, batch, method="newton")


def test_cg_rejects_bad_input():
    A = torch.eye(3, dtype=torch.float64)
    b = torch.ones(3, dtype=torch.float64)
    with pytest.raises(ValueError, match="b must be a vector"):
        cg(A, A)
    with pytest.raises(ValueError, match="x0 must have length 3"):
        cg(A, b, x0=torch.zeros(2, dtype=torch.float64))
    with pytest.raises(ValueError, match="damping"):
        cg(A, b, damping=-1.0)
    with pytest.raises(ValueError, match="tol"):
        cg(A, b, tol=0.0)
    with pytest.raises(ValueError, match="max_iter"):
        cg(A, b, max_iter=0)
    with pytest.raises(ValueError, match="matvec"):
        cg(lambda v: v[:2], b)
    with pytest.raises(ValueError, match="matvec"):
        cg(3, b)
    with pytest.raises(ValueError, match="curvature"):
        hessian_free_step(nn.Linear(2, 2), "mse", (torch.zeros(1, 2), torch.zeros(1, 2)), curvature="fisher")


def test_graded_hvp_must_come_back_detached_other_results_are_detached_for_them():
    from secondorder.exercises import get_exercise

    def attached(f, x, v):                      # create_graph=True left in the second pass
        z = x.detach().requires_grad_(True)
        (g,) = torch.autograd.grad(f(z), z, create_graph=True)
        return torch.autograd.grad((g * v).sum(), z, create_graph=True)[0]

    failed = [r for r in get_exercise("hvp").run_in_process(attached).results if not r.passed]
    assert sum("still requires grad" in r.message for r in failed) >= 3     # (linear f fails on its own)
    assert all(r.passed for r in get_exercise("hvp").run_in_process(hvp).results)

    def with_grad(B, s, y, r=1e-8):               # a result that requires grad, where nothing asks otherwise
        return so.sr1_update(B, s, y, r).requires_grad_(True)
    assert all(r.passed for r in get_exercise("sr1_update").run_in_process(with_grad).results)
