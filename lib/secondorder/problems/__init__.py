"""Test problems for the course: every one is a function of a flat vector ``x`` plus a start ``x0``.

======================================  =====================================================
:func:`quadratic`                       strongly convex quadratic with a prescribed spectrum
:func:`rosenbrock`                      the curved valley, ``x_star = (1, …, 1)``
:func:`logistic_regression`             breast cancer data, ``n = 31``, strictly convex
:func:`softmax_regression`              digits data, ``n = 650``, strongly convex
:func:`tiny_mlp`                        tanh network on the digits, ``n = 2410``, non-convex
:func:`tiny_transformer`                character-level language model, ``n ≈ 115k``
======================================  =====================================================

All constructors take ``dtype=torch.float64, device="cpu"`` and build every tensor there; the data
files ship with the package (``data/README.md``).
"""

from secondorder.problems.base import MAX_DENSE_HESSIAN, ModelProblem, Problem, flat_params
from secondorder.problems.classification import (
    BREAST_CANCER_CLASSES,
    LinearClassificationProblem,
    load_breast_cancer,
    load_digits,
    logistic_regression,
    newton_reference,
    softmax_regression,
    standardize_columns,
)
from secondorder.problems.mgh import MGH_NAMES, MGHProblem, mgh_problem, mgh_problems
from secondorder.problems.mlp import build_mlp, cross_entropy_loss, tiny_mlp
from secondorder.problems.quadratic import QuadraticProblem, quadratic
from secondorder.problems.rosenbrock import RosenbrockProblem, rosenbrock, rosenbrock_function, rosenbrock_hessian
from secondorder.problems.transformer import (
    CharLMProblem,
    TinyTransformer,
    load_corpus,
    next_token_loss,
    tiny_transformer,
)

__all__ = [
    "BREAST_CANCER_CLASSES",
    "MAX_DENSE_HESSIAN",
    "MGH_NAMES",
    "MGHProblem",
    "CharLMProblem",
    "LinearClassificationProblem",
    "ModelProblem",
    "Problem",
    "QuadraticProblem",
    "RosenbrockProblem",
    "TinyTransformer",
    "build_mlp",
    "cross_entropy_loss",
    "flat_params",
    "load_breast_cancer",
    "load_corpus",
    "load_digits",
    "logistic_regression",
    "mgh_problem",
    "mgh_problems",
    "newton_reference",
    "next_token_loss",
    "quadratic",
    "rosenbrock",
    "rosenbrock_function",
    "rosenbrock_hessian",
    "softmax_regression",
    "standardize_columns",
    "tiny_mlp",
    "tiny_transformer",
]
