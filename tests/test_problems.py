"""Tests of secondorder.problems against independent float64 oracles (scipy, numpy, closed forms)."""

import math

import numpy as np
import pytest
import scipy.optimize
import torch
from secondorder.problems import (
    BREAST_CANCER_CLASSES,
    MAX_DENSE_HESSIAN,
    ModelProblem,
    flat_params,
    load_breast_cancer,
    load_digits,
    logistic_regression,
    newton_reference,
    quadratic,
    rosenbrock,
    rosenbrock_function,
    softmax_regression,
    tiny_mlp,
    tiny_transformer,
)
from secondorder.sharpness import squared_loss_mlp
from torch import nn

devices = ["cpu"] + [pytest.param("cuda", marks=pytest.mark.gpu)] * torch.cuda.is_available()


def random_point(n, seed=0, scale=1.0):
    return scale * torch.randn(n, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def small_problems():
    """Problems cheap enough for gradcheck and dense Hessians, in float64 on the CPU."""
    return {
        "quadratic": quadratic(n=6, cond=50.0),
        "rosenbrock": rosenbrock(4),
        "logistic": logistic_regression(),
        "mlp": tiny_mlp(hidden=(3,)),
    }


# ---------------------------------------------------------------------------------------------
# The common interface
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["quadratic", "rosenbrock", "logistic", "mlp"])
def test_gradient_passes_gradcheck(name):
    problem = small_problems()[name]
    x = (problem.x0 + 0.1 * random_point(problem.n, seed=1)).requires_grad_(True)
    assert torch.autograd.gradcheck(problem.f, (x,), eps=1e-6, atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("name", ["quadratic", "rosenbrock", "logistic", "mlp"])
def test_value_and_grad_leaves_x_alone_and_detaches(name):
    problem = small_problems()[name]
    x = problem.x0 + 0.1 * random_point(problem.n, seed=2)
    before = x.clone()
    for x_in in (x, x.clone().requires_grad_(True)):
        value, g = problem.value_and_grad(x_in)
        assert value.shape == () and g.shape == (problem.n,)
        assert not value.requires_grad and not g.requires_grad
        assert x_in.grad is None
        torch.testing.assert_close(value, problem.f(x).detach())
        torch.testing.assert_close(g, problem.grad(x))
    assert torch.equal(x, before)


def test_gradient_matches_central_differences_along_a_direction():
    problem = logistic_regression()
    x = random_point(problem.n, seed=3, scale=0.3)
    v = random_point(problem.n, seed=4)
    h = 1e-5
    fd = (problem.f(x + h * v) - problem.f(x - h * v)) / (2 * h)
    torch.testing.assert_close(problem.grad(x) @ v, fd, rtol=1e-8, atol=1e-10)


@pytest.mark.parametrize("name", ["quadratic", "rosenbrock", "logistic", "mlp"])
def test_hessian_is_symmetric_and_matches_differences_of_gradients(name):
    problem = small_problems()[name]
    x = problem.x0 + 0.1 * random_point(problem.n, seed=5)
    H = problem.hessian(x)
    assert H.shape == (problem.n, problem.n)
    torch.testing.assert_close(H, H.T, rtol=0, atol=1e-12)
    v = random_point(problem.n, seed=6)
    h = 1e-6
    fd = (problem.grad(x + h * v) - problem.grad(x - h * v)) / (2 * h)
    torch.testing.assert_close(H @ v, fd, rtol=1e-5, atol=1e-6)


def test_hessian_refuses_large_problems():
    problem = tiny_transformer(n_layers=1, d_model=16, n_heads=2, context=16, dtype=torch.float32)
    assert problem.n > MAX_DENSE_HESSIAN
    with pytest.raises(ValueError, match="n = .* too large"):
        problem.hessian(problem.x0)


def test_x_with_wrong_shape_or_dtype_is_rejected_with_its_name():
    problem = rosenbrock(3)
    with pytest.raises(ValueError, match="x must have length 3"):
        problem.grad(torch.zeros(2, dtype=torch.float64))
    with pytest.raises(ValueError, match="x has dtype torch.float32"):
        problem.grad(torch.zeros(3, dtype=torch.float32))


@pytest.mark.parametrize("device", devices)
@pytest.mark.parametrize("make", [
    lambda **kw: quadratic(n=5, cond=10.0, **kw),
    lambda **kw: rosenbrock(3, **kw),
    lambda **kw: logistic_regression(**kw),
    lambda **kw: softmax_regression(**kw),
    lambda **kw: tiny_mlp(**kw),
    lambda **kw: tiny_transformer(n_layers=1, context=16, batch_size=4, **kw),
], ids=["quadratic", "rosenbrock", "logistic", "softmax", "mlp", "transformer"])
def test_dtype_and_device_are_respected(make, device):
    problem = make(dtype=torch.float32, device=device)
    value, g = problem.value_and_grad(problem.x0)
    for t in (problem.x0, value, g):
        assert t.dtype == torch.float32 and t.device.type == device
    for extra in ("x_star", "A", "b", "eigenvalues", "X"):
        t = getattr(problem, extra, None)
        if t is not None:
            assert t.dtype == torch.float32 and t.device.type == device
    if isinstance(problem, ModelProblem):
        assert all(p.device.type == device and p.dtype == torch.float32 for p in problem.model.parameters())
        assert all(t.device.type == device for t in problem.batch)
    assert torch.isfinite(value)


@pytest.mark.parametrize("device", devices)
def test_float32_agrees_with_float64(device):
    p64 = logistic_regression()
    p32 = logistic_regression(dtype=torch.float32, device=device)
    x = random_point(p64.n, seed=7, scale=0.2)
    f32, g32 = p32.value_and_grad(x.to(torch.float32).to(device))
    f64, g64 = p64.value_and_grad(x)
    torch.testing.assert_close(f32.double().cpu(), f64, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(g32.double().cpu(), g64, rtol=1e-4, atol=1e-5)


# ---------------------------------------------------------------------------------------------
# Quadratic
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("spacing", ["geometric", "linear"])
def test_quadratic_has_the_prescribed_spectrum(spacing):
    problem = quadratic(n=30, cond=1e4, spacing=spacing, seed=3)
    eig = torch.linalg.eigvalsh(problem.A)
    torch.testing.assert_close(eig, problem.eigenvalues, rtol=1e-10, atol=1e-9)
    assert eig[0].item() == pytest.approx(1.0) and eig[-1].item() == pytest.approx(1e4)
    assert problem.cond == pytest.approx(1e4)
    assert (torch.linalg.cond(problem.A) / 1e4).item() == pytest.approx(1.0, rel=1e-8)
    steps = eig.log().diff() if spacing == "geometric" else eig.diff()
    torch.testing.assert_close(steps, steps.mean().expand_as(steps), rtol=1e-8, atol=1e-8)


def test_quadratic_takes_a_given_spectrum_and_eigenvectors_are_orthogonal():
    problem = quadratic(spectrum=[3.0, 1.0, 2.0, 10.0])
    torch.testing.assert_close(problem.eigenvalues, torch.tensor([1.0, 2.0, 3.0, 10.0], dtype=torch.float64))
    Q = problem.eigenvectors
    torch.testing.assert_close(Q.T @ Q, torch.eye(4, dtype=torch.float64))
    torch.testing.assert_close(problem.A @ Q, Q * problem.eigenvalues)
    assert problem.n == 4 and problem.cond == pytest.approx(10.0)


def test_quadratic_minimizer_value_and_hessian():
    problem = quadratic(n=25, cond=1e6, seed=1)
    x_star = problem.x_star
    torch.testing.assert_close(problem.A @ x_star, problem.b, rtol=1e-9, atol=1e-9)
    assert problem.grad(x_star).norm().item() < 1e-8
    assert problem.f(x_star).item() == pytest.approx(problem.f_star, rel=1e-12)
    assert problem.f(problem.x0).item() == 0.0 and problem.f_star < 0
    torch.testing.assert_close(problem.hessian(x_star), problem.A)
    # f - f* = ½ (x - x*)ᵀ A (x - x*): an identity that pins down b and f_star together.
    x = random_point(25, seed=2)
    e = x - x_star
    torch.testing.assert_close(problem.f(x) - problem.f_star, 0.5 * e @ problem.A @ e)


def test_quadratic_seed_is_reproducible():
    a, b, c = quadratic(n=8, seed=4), quadratic(n=8, seed=4), quadratic(n=8, seed=5)
    assert torch.equal(a.A, b.A) and torch.equal(a.b, b.b)
    assert not torch.allclose(a.A, c.A)


@pytest.mark.parametrize("kwargs, argument", [
    (dict(n=0), "n"),
    (dict(n=2.5), "n"),
    (dict(cond=0.5), "cond"),
    (dict(cond=float("inf")), "cond"),
    (dict(n=1, cond=10.0), "cond"),
    (dict(spacing="log"), "spacing"),
    (dict(spectrum=[1.0, -2.0]), "spectrum"),
    (dict(spectrum=[]), "spectrum"),
    (dict(spectrum=[1.0, float("nan")]), "spectrum"),
    (dict(spectrum=[1.0, 2.0], n=3), "n"),
    (dict(spectrum=[1.0, 2.0], cond=2.0), "cond"),
])
def test_quadratic_rejects_bad_arguments(kwargs, argument):
    with pytest.raises(ValueError, match=rf"^{argument}\b"):
        quadratic(**kwargs)


# ---------------------------------------------------------------------------------------------
# Rosenbrock
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("n", [2, 3, 7])
def test_rosenbrock_matches_scipy(n):
    problem = rosenbrock(n)
    for seed in range(3):
        x = random_point(n, seed=seed)
        x_np = x.numpy()
        assert problem.f(x).item() == pytest.approx(scipy.optimize.rosen(x_np), rel=1e-14)
        np.testing.assert_allclose(problem.grad(x).numpy(), scipy.optimize.rosen_der(x_np), rtol=1e-13)
        np.testing.assert_allclose(problem.hessian(x).numpy(), scipy.optimize.rosen_hess(x_np),
                                   rtol=1e-13, atol=1e-12)


def test_rosenbrock_function_broadcasts_over_a_grid():
    x = torch.stack(torch.meshgrid(torch.linspace(-2, 2, 5), torch.linspace(-1, 3, 4), indexing="xy"), -1)
    values = rosenbrock_function(x.double())  # (4, 5)
    expected = scipy.optimize.rosen(np.moveaxis(x.double().numpy(), -1, 0))
    np.testing.assert_allclose(values.numpy(), expected, rtol=1e-14)


def test_rosenbrock_standard_start_and_solution():
    assert rosenbrock(2).x0.tolist() == [-1.2, 1.0]
    assert rosenbrock(2).f(rosenbrock(2).x0).item() == pytest.approx(24.2)
    assert rosenbrock(5).x0.tolist() == [-1.2, 1.0, -1.2, 1.0, -1.2]
    problem = rosenbrock(6)
    assert problem.x0.tolist() == [-1.2, 1.0] * 3
    assert problem.f_star == 0.0 and problem.f(problem.x_star).item() == 0.0
    assert problem.grad(problem.x_star).abs().max().item() == 0.0
    custom = rosenbrock(3, x0=[0.0, 0.5, 1.0])
    assert custom.x0.tolist() == [0.0, 0.5, 1.0] and custom.x0.dtype == torch.float64


@pytest.mark.parametrize("kwargs, argument", [
    (dict(n=1), "n"),
    (dict(n=2.0), "n"),
    (dict(n=3, x0=[0.0, 1.0]), "x0"),
])
def test_rosenbrock_rejects_bad_arguments(kwargs, argument):
    with pytest.raises(ValueError, match=rf"^{argument}\b"):
        rosenbrock(**kwargs)


# ---------------------------------------------------------------------------------------------
# Data and linear classifiers
# ---------------------------------------------------------------------------------------------


def test_breast_cancer_data():
    X, y = load_breast_cancer()
    assert X.shape == (569, 30) and X.dtype == torch.float64
    assert y.shape == (569,) and y.dtype == torch.int64
    assert torch.bincount(y).tolist() == [212, 357]
    assert BREAST_CANCER_CLASSES == ("malignant", "benign")
    # Label meaning: malignant nuclei are larger. Mean radius (column 0) averages about 17.5 for
    # malignant and 12.1 for benign tumours.
    assert X[y == 0, 0].mean().item() == pytest.approx(17.46, abs=0.05)
    assert X[y == 1, 0].mean().item() == pytest.approx(12.15, abs=0.05)


def test_digits_data():
    X, y = load_digits(dtype=torch.float32)
    assert X.shape == (1797, 64) and X.dtype == torch.float32
    assert X.min().item() == 0 and X.max().item() == 16
    assert torch.equal(X, X.round())
    assert torch.bincount(y).tolist() == [178, 182, 177, 183, 181, 182, 181, 179, 174, 180]


def test_loaders_return_fresh_tensors():
    X, _ = load_digits()
    X[0, 0] = 99.0
    assert load_digits()[0][0, 0].item() == 0.0


def numpy_logistic(x, A, y, l2):
    """Loss and gradient from the closed form, in numpy."""
    w, b = x[:-1], x[-1]
    z = A @ w + b
    sigma = 1.0 / (1.0 + np.exp(-z))
    loss = np.mean(np.logaddexp(0.0, z) - y * z) + 0.5 * l2 * w @ w
    grad = np.concatenate([A.T @ (sigma - y) / len(y) + l2 * w, [np.mean(sigma - y)]])
    hess_data = (np.hstack([A, np.ones((len(y), 1))]).T * (sigma * (1 - sigma))) @ np.hstack(
        [A, np.ones((len(y), 1))]) / len(y)
    return loss, grad, hess_data + l2 * np.diag(np.r_[np.ones(len(w)), 0.0])


def test_logistic_regression_matches_closed_form():
    problem = logistic_regression(l2=0.01)
    A = problem.X.numpy()
    raw = load_breast_cancer()[0].numpy()
    np.testing.assert_allclose(A, (raw - raw.mean(0)) / raw.std(0), rtol=1e-12, atol=1e-12)
    assert problem.n == 31 and problem.x_star is None and problem.f_star is None
    assert problem.f(problem.x0).item() == pytest.approx(math.log(2), rel=1e-15)
    x = random_point(31, seed=8, scale=0.5)
    loss, grad, hess = numpy_logistic(x.numpy(), A, problem.y.numpy().astype(float), 0.01)
    assert problem.f(x).item() == pytest.approx(loss, rel=1e-13)
    np.testing.assert_allclose(problem.grad(x).numpy(), grad, rtol=1e-11, atol=1e-14)
    np.testing.assert_allclose(problem.hessian(x).numpy(), hess, rtol=1e-10, atol=1e-14)
    w, b = problem.unpack(x)
    assert w.shape == (30,) and b.shape == ()


def test_newton_reference_solves_logistic_regression():
    problem = logistic_regression()
    x_star, f_star = newton_reference(problem)
    assert problem.grad(x_star).abs().max().item() < 1e-10
    assert f_star < problem.f(problem.x0).item()
    eig = torch.linalg.eigvalsh(problem.hessian(x_star))
    assert eig[0].item() > 0  # strictly convex, so x_star is the unique minimizer
    accuracy = ((problem.X @ x_star[:-1] + x_star[-1] > 0).long() == problem.y).double().mean()
    assert accuracy.item() > 0.97


def numpy_softmax(x, A, y, l2, k=10):
    """Loss and gradient from an independent numpy implementation."""
    d = A.shape[1]
    W, b = x[: k * d].reshape(k, d), x[k * d :]
    Z = A @ W.T + b
    Z = Z - Z.max(axis=1, keepdims=True)
    P = np.exp(Z) / np.exp(Z).sum(axis=1, keepdims=True)
    m = len(y)
    loss = -np.mean(np.log(P[np.arange(m), y])) + 0.5 * l2 * x @ x
    R = P.copy()
    R[np.arange(m), y] -= 1.0
    grad = np.concatenate([(R.T @ A / m).ravel(), R.mean(axis=0)]) + l2 * x
    return loss, grad


@pytest.mark.parametrize("standardize", [False, True])
def test_softmax_regression_matches_numpy(standardize):
    problem = softmax_regression(l2=0.01, standardize=standardize)
    raw = load_digits()[0].numpy()
    if standardize:
        std = raw.std(0)
        expected_X = (raw - raw.mean(0)) / np.where(std > 0, std, 1.0)
    else:
        expected_X = raw / 16.0
    np.testing.assert_allclose(problem.X.numpy(), expected_X, rtol=1e-12, atol=1e-12)
    assert problem.n == 650 and problem.x_star is None
    assert problem.f(problem.x0).item() == pytest.approx(math.log(10), rel=1e-15)
    x = random_point(650, seed=9, scale=0.3)
    loss, grad = numpy_softmax(x.numpy(), problem.X.numpy(), problem.y.numpy(), 0.01)
    assert problem.f(x).item() == pytest.approx(loss, rel=1e-13)
    np.testing.assert_allclose(problem.grad(x).numpy(), grad, rtol=1e-10, atol=1e-14)
    W, b = problem.unpack(x)
    assert W.shape == (10, 64) and b.shape == (10,)


@pytest.mark.parametrize("make", [logistic_regression, softmax_regression])
def test_classification_rejects_negative_l2(make):
    with pytest.raises(ValueError, match=r"^l2\b"):
        make(l2=-1.0)


# ---------------------------------------------------------------------------------------------
# Neural-network problems
# ---------------------------------------------------------------------------------------------


def test_model_problem_flat_vector_and_module_agree():
    problem = tiny_mlp(seed=3)
    model = problem.model
    assert problem.n == 64 * 32 + 32 + 32 * 10 + 10
    torch.testing.assert_close(problem.x0, flat_params(model))
    params = problem.unflatten(problem.x0)
    assert list(params) == [name for name, _ in model.named_parameters()]
    assert all(params[name].shape == p.shape for name, p in model.named_parameters())
    # f(x0) and its gradient equal the module's loss and .grad.
    loss = problem.loss(model, problem.batch)
    loss.backward()
    value, g = problem.value_and_grad(problem.x0)
    torch.testing.assert_close(value, loss.detach())
    torch.testing.assert_close(g, torch.cat([p.grad.reshape(-1) for p in model.parameters()]))
    # Evaluating f elsewhere leaves the module alone; load writes into it.
    x = problem.x0 + 0.01 * random_point(problem.n, seed=10)
    problem.f(x)
    torch.testing.assert_close(flat_params(model), problem.x0)
    problem.load(x)
    torch.testing.assert_close(flat_params(model), x)
    torch.testing.assert_close(problem.loss_at(None), problem.f(x))


def test_model_problem_seed_and_minibatches():
    a, b, c = tiny_mlp(seed=0), tiny_mlp(seed=0), tiny_mlp(seed=1)
    assert torch.equal(a.x0, b.x0) and not torch.equal(a.x0, c.x0)
    batches = a.batches(16, torch.Generator().manual_seed(0))
    X, y = next(batches)
    assert X.shape == (16, 64) and y.shape == (16,)
    X2, _ = next(a.batches(16, torch.Generator().manual_seed(0)))
    assert torch.equal(X, X2)
    value, g = a.value_and_grad(a.x0, (X, y))
    assert value.shape == () and g.shape == (a.n,)
    with pytest.raises(ValueError, match="batch_size"):
        next(a.batches(0))
    with pytest.raises(ValueError, match="validation_batch"):
        a.validation_loss()
    with pytest.raises(ValueError, match="^hidden"):
        tiny_mlp(hidden=(0,))


# ---------------------------------------------------------------------------------------------
# Transformer
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def transformer():
    return tiny_transformer(dtype=torch.float32)


def test_transformer_shapes_vocabulary_and_initial_loss(transformer):
    problem = transformer
    assert len(problem.vocab) == 88 and problem.model.head.out_features == 88
    assert 100_000 < problem.n < 130_000
    assert len(problem.train_ids) == 54_000 and len(problem.val_ids) == 6_000
    assert problem.decode(problem.encode("def f(x):")) == "def f(x):"
    inputs, targets = problem.batch
    assert inputs.shape == targets.shape == (32, 64)
    assert torch.equal(inputs[:, 1:], targets[:, :-1])
    logits = problem.model(inputs)
    assert logits.shape == (32, 64, 88)
    assert problem.f(problem.x0).item() == pytest.approx(math.log(88), abs=0.05)
    assert problem.validation_loss().item() == pytest.approx(math.log(88), abs=0.05)
    val_inputs, _ = problem.validation_batch
    assert val_inputs.shape == (93, 64)  # every whole window of the 6000 validation characters


def test_transformer_is_causal(transformer):
    model = transformer.model
    inputs = transformer.batch[0][:2]
    changed = inputs.clone()
    changed[:, 40:] = (changed[:, 40:] + 1) % 88
    with torch.no_grad():
        torch.testing.assert_close(model(inputs)[:, :40], model(changed)[:, :40])
        assert not torch.allclose(model(inputs)[:, 40:], model(changed)[:, 40:])


def test_transformer_weight_matrices_are_linear_layers(transformer):
    linears = [m for m in transformer.model.modules() if isinstance(m, nn.Linear)]
    assert len(linears) == 2 * 6 + 1  # q, k, v, proj, fc_in, fc_out per block; the read-out
    matrices = {id(p) for p in transformer.model.parameters() if p.ndim == 2}
    embeddings = {id(m.weight) for m in transformer.model.modules() if isinstance(m, nn.Embedding)}
    assert matrices - embeddings == {id(m.weight) for m in linears}


def test_transformer_second_derivatives_in_float64():
    problem = tiny_transformer(n_layers=1, d_model=8, n_heads=2, context=8, batch_size=2)
    assert problem.n < MAX_DENSE_HESSIAN and problem.dtype == torch.float64
    x = problem.x0 + 0.05 * random_point(problem.n, seed=11)
    v = random_point(problem.n, seed=12)
    h = 1e-5
    fd = (problem.f(x + h * v) - problem.f(x - h * v)) / (2 * h)
    torch.testing.assert_close(problem.grad(x) @ v, fd, rtol=1e-7, atol=1e-9)
    # Double backward through attention (the reason for the math kernel), against the dense Hessian.
    z = x.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(problem.f(z), z, create_graph=True)
    (hvp,) = torch.autograd.grad(g @ v, z)
    torch.testing.assert_close(hvp, problem.hessian(x) @ v, rtol=1e-8, atol=1e-10)
    # Central differences err by about h²‖v‖³·|f‴|/6 (‖v‖ ≈ 50 here) plus u‖g‖/h of rounding:
    # h = 1e-6 keeps both far below the tolerance.
    h = 1e-6
    fd = (problem.grad(x + h * v) - problem.grad(x - h * v)) / (2 * h)
    torch.testing.assert_close(hvp, fd, rtol=1e-5, atol=1e-7)


def test_fused_attention_computes_the_same_function(transformer):
    fused = tiny_transformer(fused_attention=True, dtype=torch.float32)
    torch.testing.assert_close(fused.f(transformer.x0), transformer.f(transformer.x0))


def test_transformer_rejects_bad_arguments():
    with pytest.raises(ValueError, match="^context"):
        tiny_transformer(context=0)
    with pytest.raises(ValueError, match="d_model .* divisible by n_heads"):
        tiny_transformer(d_model=30, n_heads=4)


def train(problem, steps, lr, batch_size=32, seed=0):
    torch.manual_seed(seed)
    optimizer = torch.optim.AdamW(problem.model.parameters(), lr=lr, weight_decay=0.0)
    for _, batch in zip(range(steps), problem.batches(batch_size, torch.Generator().manual_seed(seed))):
        loss = problem.loss_at(None, batch)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()


def test_transformer_short_training_reduces_loss():
    problem = tiny_transformer(n_layers=1, context=32, dtype=torch.float32)
    before = problem.validation_loss().item()
    train(problem, steps=30, lr=1e-2, batch_size=16)
    after = problem.validation_loss().item()
    assert after < before - 1.0, (before, after)
    # The flat-vector view follows the trained module.
    torch.testing.assert_close(problem.f(flat_params(problem.model)), problem.loss_at(None))


@pytest.mark.slow
def test_transformer_trains_well_below_three_nats():
    problem = tiny_transformer(dtype=torch.float32)
    train(problem, steps=300, lr=3e-3)
    assert problem.validation_loss().item() < 2.5
    assert problem.loss_at(None).item() < 2.3


@pytest.mark.parametrize("make", [
    lambda dtype: tiny_mlp(dtype=dtype),
    lambda dtype: tiny_transformer(dtype=dtype),
    lambda dtype: squared_loss_mlp(dtype=dtype),
], ids=["tiny_mlp", "tiny_transformer", "squared_loss_mlp"])
def test_start_point_ignores_default_dtype_and_generator_state(make):
    """A float64 session (or one that drew random numbers before) starts where the notebooks do."""
    reference = make(torch.float64).x0
    default = torch.get_default_dtype()
    torch.manual_seed(123)
    before = torch.random.get_rng_state()
    try:
        torch.set_default_dtype(torch.float64)
        other = make(torch.float64).x0
    finally:
        torch.set_default_dtype(default)
    assert torch.get_default_dtype() == default
    assert torch.equal(torch.random.get_rng_state(), before), "the caller's generator must be left alone"
    assert torch.equal(other, reference)


@pytest.mark.parametrize("make", [tiny_mlp, tiny_transformer])
def test_init_dtype_must_be_a_float_type(make):
    with pytest.raises(ValueError, match="init_dtype"):
        make(init_dtype=torch.int64)
