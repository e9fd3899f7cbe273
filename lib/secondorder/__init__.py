"""secondorder: second-order optimization for machine learning, in device-agnostic PyTorch.

Pure kernels (tensor in, tensor out) for the quasi-Newton updates, line searches and the two-loop
recursion; :func:`minimize` for vectors; ``torch.optim`` optimizers for models; and the problems the
course runs them on. Notation follows the course's notation page: ``s, y, B, H, g``.
"""

from .linesearch import LineSearchResult, backtracking, cubic_minimizer, strong_wolfe, wolfe_conditions
from .minimize import METHODS, OptimizeResult, minimize
from .quasi_newton import (
    bfgs_inverse_update,
    bfgs_update,
    curvature_pair_accepted,
    dfp_inverse_update,
    initial_scaling,
    powell_damped_y,
    secant_residual,
    sr1_update,
)
from .two_loop import two_loop_recursion

__version__ = "0.1.0"

__all__ = [
    "METHODS",
    "LineSearchResult",
    "OptimizeResult",
    "backtracking",
    "bfgs_inverse_update",
    "bfgs_update",
    "cubic_minimizer",
    "curvature_pair_accepted",
    "dfp_inverse_update",
    "initial_scaling",
    "minimize",
    "powell_damped_y",
    "secant_residual",
    "sr1_update",
    "strong_wolfe",
    "two_loop_recursion",
    "wolfe_conditions",
]
