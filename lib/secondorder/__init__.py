"""secondorder: second-order optimization for machine learning, in device-agnostic PyTorch.

Pure kernels (tensor in, tensor out) for the quasi-Newton updates, line searches, the two-loop
recursion, Hessian-vector products, spectral estimates, K-FAC, matrix roots and Newton–Schulz;
:func:`minimize` for vectors; ``torch.optim`` optimizers in :mod:`secondorder.optim`; curvature
operators in :mod:`secondorder.curvature`; the course's test problems in :mod:`secondorder.problems`.
Notation follows the course's notation page: ``s, y, B, H, g``.
"""

from . import curvature, exercises, optim, problems, sharpness, testing
from .cost_model import optimizer_cost
from .curvature import hvp
from .kfac import kfac_factors, kfac_precondition
from .linesearch import LineSearchResult, backtracking, cubic_minimizer, strong_wolfe, wolfe_conditions
from .matrix_functions import matrix_inverse_root, newton_schulz
from .minimize import METHODS, OptimizeResult, minimize
from .monitor import CurvatureMonitor
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
from .secant import estimate_order, secant_method
from .spectral import hutchinson_trace, hutchpp_trace, lanczos, power_iteration, slq_density
from .stability import cholesky_with_jitter, levenberg_marquardt
from .two_loop import two_loop_recursion

__version__ = "0.1.0"

__all__ = [
    "METHODS",
    "CurvatureMonitor",
    "LineSearchResult",
    "OptimizeResult",
    "backtracking",
    "bfgs_inverse_update",
    "bfgs_update",
    "cholesky_with_jitter",
    "cubic_minimizer",
    "curvature",
    "curvature_pair_accepted",
    "dfp_inverse_update",
    "estimate_order",
    "exercises",
    "hutchinson_trace",
    "hutchpp_trace",
    "hvp",
    "initial_scaling",
    "kfac_factors",
    "kfac_precondition",
    "lanczos",
    "levenberg_marquardt",
    "matrix_inverse_root",
    "minimize",
    "newton_schulz",
    "optim",
    "optimizer_cost",
    "power_iteration",
    "powell_damped_y",
    "problems",
    "secant_method",
    "sharpness",
    "secant_residual",
    "slq_density",
    "sr1_update",
    "strong_wolfe",
    "testing",
    "two_loop_recursion",
    "wolfe_conditions",
]
