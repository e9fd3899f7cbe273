"""Section 07's library additions: the singular-value map of Newton–Schulz and transformers of any size."""

import math
from pathlib import Path

import pytest
import torch
from secondorder import testing
from secondorder.cost_model import transformer_config_for_size, transformer_shapes
from secondorder.matrix_functions import MUON_COEFFICIENTS, newton_schulz, singular_value_map


def with_singular_values(m, n, sigma, seed=0):
    gen = torch.Generator().manual_seed(seed)
    U, _ = torch.linalg.qr(torch.randn(m, len(sigma), generator=gen, dtype=torch.float64))
    V, _ = torch.linalg.qr(torch.randn(n, len(sigma), generator=gen, dtype=torch.float64))
    return (U * sigma) @ V.T


@pytest.mark.parametrize("steps, coefficients", [(5, MUON_COEFFICIENTS), (1, MUON_COEFFICIENTS), (0, MUON_COEFFICIENTS),
                                                 (12, (1.5, -0.5, 0.0))])
@pytest.mark.parametrize("shape", [(30, 12), (12, 30)])
def test_map_predicts_the_singular_values_of_newton_schulz(steps, coefficients, shape):
    sigma = torch.logspace(0, -4, min(shape), dtype=torch.float64)
    G = with_singular_values(*shape, sigma)
    expected = singular_value_map(sigma / (sigma.square().sum().sqrt() + 1e-7), steps, coefficients)
    actual = torch.linalg.svdvals(newton_schulz(G, steps, coefficients))
    testing.check_close("σ(NS(G))", actual.sort().values, expected.sort().values, rtol=1e-10)


def test_map_is_the_scalar_polynomial():
    a, b, c = MUON_COEFFICIENTS
    s = torch.tensor([0.0, 1e-3, 0.3, 1.0], dtype=torch.float64)
    once = a * s + b * s**3 + c * s**5
    testing.check_close("φ(σ)", singular_value_map(s, 1), once, rtol=1e-15)
    testing.check_close("φ(φ(σ))", singular_value_map(s, 2), a * once + b * once**3 + c * once**5, rtol=1e-15)


def test_muon_band():
    sigma = torch.logspace(math.log10(0.005), 0, 2000, dtype=torch.float64)
    out = singular_value_map(sigma)
    assert 0.68 <= float(out.min()) and float(out.max()) <= 1.16
    assert float(singular_value_map(torch.tensor(1e-3))) < 0.68
    # just below the band's lower end the map overshoots a little before it falls off (section 07, §4)
    out = singular_value_map(torch.logspace(math.log10(0.0016), math.log10(0.005), 500, dtype=torch.float64))
    assert 0.68 <= float(out.min()) and 1.16 < float(out.max()) <= 1.21
    assert float(singular_value_map(torch.logspace(-6, math.log10(0.0015), 500, dtype=torch.float64)).max()) < 0.68


def test_map_rejects_bad_arguments():
    with pytest.raises(ValueError, match="steps"):
        singular_value_map(torch.ones(3), steps=-1)
    with pytest.raises(ValueError, match="coefficients"):
        singular_value_map(torch.ones(3), coefficients=(1.0, 2.0))


@pytest.mark.parametrize("n_params", [2e8, 1e9, 7e9, 7e10])
@pytest.mark.parametrize("options", [{}, dict(vocab=256000), dict(aspect=32), dict(d_ff_mult=8, tied=True)])
def test_config_for_size_hits_the_size_and_the_aspect(n_params, options):
    config = transformer_config_for_size(n_params, **options)
    count = sum(math.prod(s) for s in transformer_shapes(**config))   # the oracle: the shapes themselves
    assert 0.8 < count / n_params < 1.25, (config, count)
    assert config["d_model"] % 64 == 0
    assert config["n_layers"] == max(1, round(config["d_model"] / options.get("aspect", 128.0)))


def test_config_for_size_matches_the_7b_preset_shape():
    config = transformer_config_for_size(6.74e9)
    assert abs(config["d_model"] - 4096) <= 128 and abs(config["n_layers"] - 32) <= 1


def test_config_for_size_rejects_bad_arguments():
    with pytest.raises(ValueError, match="n_params"):
        transformer_config_for_size(0)


# ---------------------------------------------------------------------------------------------------
# The newton_schulz exercise: the visible tall case counts matrix products, so a missing transpose fails it


MUTANT = Path(__file__).resolve().parents[1] / "autograder/mutants/newton_schulz/no_transpose.py"


def _no_transpose():
    """The catalogued answer that never transposes, as a function here."""
    namespace = {}
    exec(compile(MUTANT.read_text(), str(MUTANT), "exec"), namespace)
    return namespace["newton_schulz"]


def _products_reused(G, steps=5, coefficients=(3.4445, -4.7750, 2.0315), eps=1e-7):
    """Right, with the products grouped as A(AX): about 1.3× the reference's FLOPs on the tall case."""
    a, b, c = coefficients
    tall = G.shape[0] > G.shape[1]
    X = G.mT if tall else G
    X = X / (torch.linalg.matrix_norm(X) + eps)
    for _ in range(steps):
        A = X @ X.mT
        AX = A @ X
        X = a * X + b * AX + c * (A @ AX)
    return X.mT if tall else X


def test_the_visible_tall_case_fails_an_answer_without_the_transpose():
    from secondorder.exercises.newton_schulz import NewtonSchulz

    exercise = NewtonSchulz()
    failed = [r for r in exercise.run_in_process(_no_transpose()).results if not r.passed]
    assert [r.case.id for r in failed] == ["tall/64×24/float64"]
    assert "Gram matrix was 64×64, not 24×24" in failed[0].message and "Transpose a tall G" in failed[0].message
    for answer in (newton_schulz, _products_reused):
        assert all(r.passed for r in exercise.run_in_process(answer).results)


def test_the_grader_counts_the_products_in_its_sandbox(tmp_path):

    from secondorder.exercises.newton_schulz import NewtonSchulz

    from autograder.function_checks import check_function
    from autograder.sandbox import Sandbox

    exercise = NewtonSchulz()
    visible = type("Visible", (), {"cases": lambda self, draw=None: [c for c in exercise.cases() if not c.hidden],
                                   "__getattr__": lambda self, name: getattr(exercise, name)})()
    verdict = check_function(visible, MUTANT.read_text(), ["import torch"], tmp_path / "work", Sandbox())
    failed = [r for r in verdict.results if not r.passed]
    assert [r.case.id for r in failed] == ["tall/64×24/float64"] and "5.2×" in failed[0].message
