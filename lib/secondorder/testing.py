r"""Property checks with messages that teach.

Library tests, the visible tests in the course notebooks and the autograder's hidden tests call the
same checks, so a student sees the same explanation a maintainer does. Each check raises
:class:`AssertionError` whose message names the property, by how much it failed and, where one is
typical, the likely cause. Checks compare in float64 on the CPU, so they work for any input device.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor


def _f64(x) -> Tensor:
    return torch.as_tensor(x).detach().to(device="cpu", dtype=torch.float64)


def relative_error(actual: Tensor, expected: Tensor) -> float:
    """‖actual − expected‖ / ‖expected‖ over all entries, in float64 on the CPU."""
    a, e = _f64(actual), _f64(expected)
    return float(torch.linalg.vector_norm(a - e) / max(float(torch.linalg.vector_norm(e)), 1e-300))


def default_rtol(*tensors: Tensor) -> float:
    """Relative tolerance suited to the lowest precision among ``tensors`` (1e-8 for float64)."""
    dtypes = [t.dtype for t in tensors if isinstance(t, Tensor)]
    return 1e-4 if any(d in (torch.float32, torch.float16, torch.bfloat16) for d in dtypes) else 1e-8


def check_tensor_like(name: str, actual, reference: Tensor) -> None:
    """Check that ``actual`` is a finite tensor with the shape, dtype and device of ``reference``."""
    if not isinstance(actual, Tensor):
        raise AssertionError(f"{name} should be a torch.Tensor, got {type(actual).__name__}"
                             + (" (did the function forget to return?)" if actual is None else ""))
    for what in ("shape", "dtype", "device"):
        a, r = getattr(actual, what), getattr(reference, what)
        if a != r:
            raise AssertionError(f"{name} has {what} {tuple(a) if what == 'shape' else a}, "
                                 f"expected {tuple(r) if what == 'shape' else r}")
    if not bool(torch.isfinite(actual).all()):
        raise AssertionError(f"{name} contains NaN or infinite values")


def check_close(name: str, actual: Tensor, expected: Tensor, rtol: float | None = None,
                hint: str = "") -> None:
    """Check that ``actual`` equals ``expected`` up to a relative error ``rtol`` (in the 2-norm)."""
    check_tensor_like(name, actual, expected)
    rtol = rtol if rtol is not None else default_rtol(actual, expected)
    err = relative_error(actual, expected)
    if not err <= rtol:
        raise AssertionError(f"{name} differs from the expected value by {err:.1e} (relative; "
                             f"tolerance {rtol:.0e})" + (f": {hint}" if hint else ""))


def check_secant_equation(B_new: Tensor, s: Tensor, y: Tensor, rtol: float | None = None) -> None:
    """Check the secant equation :math:`B_{k+1} s_k = y_k` for a new Hessian approximation."""
    rtol = rtol if rtol is not None else default_rtol(B_new, s, y) * 100
    err = relative_error(_f64(B_new) @ _f64(s), _f64(y))
    if not err <= rtol:
        raise AssertionError(f"B_new @ s differs from y by {err:.1e} (relative): "
                             "the secant equation B_new s = y fails")


def check_inverse_secant_equation(H_new: Tensor, s: Tensor, y: Tensor, rtol: float | None = None) -> None:
    """Check the inverse secant equation :math:`H_{k+1} y_k = s_k`."""
    rtol = rtol if rtol is not None else default_rtol(H_new, s, y) * 100
    err = relative_error(_f64(H_new) @ _f64(y), _f64(s))
    if not err <= rtol:
        raise AssertionError(f"H_new @ y differs from s by {err:.1e} (relative): "
                             "the secant equation H_new y = s fails")


def check_symmetric(name: str, M: Tensor, rtol: float | None = None) -> None:
    """Check that ``M`` is symmetric."""
    M64 = _f64(M)
    rtol = rtol if rtol is not None else default_rtol(M) * 10
    err = float(torch.linalg.matrix_norm(M64 - M64.T) / max(float(torch.linalg.matrix_norm(M64)), 1e-300))
    if not err <= rtol:
        raise AssertionError(f"{name} is not symmetric: ‖{name} − {name}ᵀ‖ / ‖{name}‖ = {err:.1e} "
                             "(a missing transpose, or an outer product on one side only?)")


def check_positive_definite(name: str, M: Tensor) -> None:
    """Check that ``M`` is symmetric positive definite."""
    M64 = _f64(M)
    lam_min = float(torch.linalg.eigvalsh(0.5 * (M64 + M64.T))[0])
    if not lam_min > 0:
        raise AssertionError(f"{name} is not positive definite: its smallest eigenvalue is {lam_min:.2e}")


def check_inverse_pair(B: Tensor, H: Tensor, rtol: float | None = None) -> None:
    """Check that ``B`` and ``H`` are inverses of each other: :math:`B H = I`."""
    rtol = rtol if rtol is not None else default_rtol(B, H) * 1e3
    B64, H64 = _f64(B), _f64(H)
    eye = torch.eye(B64.shape[0], dtype=torch.float64)
    err = float(torch.linalg.matrix_norm(B64 @ H64 - eye) / B64.shape[0] ** 0.5)
    if not err <= rtol:
        raise AssertionError(f"B @ H differs from the identity by {err:.1e}: the direct and inverse "
                             "updates are not inverses of each other")


def check_unmodified(name: str, before: Tensor, after: Tensor) -> None:
    """Check that an input was not modified in place (``before`` is a copy taken before the call)."""
    if not torch.equal(_f64(before), _f64(after)):
        raise AssertionError(f"the input {name} was modified in place; work on a copy "
                             f"(e.g. {name}.clone()) or build a new tensor")


def check_no_nxn(n: int, memory_bytes: int, itemsize: int) -> None:
    """Check that peak extra memory stays far below that of an n×n matrix."""
    dense = n * n * itemsize
    if memory_bytes >= dense / 4:
        raise AssertionError(f"the computation used {memory_bytes / 2**20:.0f} MiB, about as much as an "
                             f"n×n matrix ({dense / 2**20:.0f} MiB): the limited-memory method must "
                             "never build one")


def check_wolfe_point(phi0: float, dphi0: float, phi_a: float, dphi_a: float, alpha: float,
                      c1: float = 1e-4, c2: float = 0.9) -> None:
    """Check that the step ``alpha`` satisfies the strong Wolfe conditions."""
    phi0, dphi0, phi_a, dphi_a, alpha = (float(v) for v in (phi0, dphi0, phi_a, dphi_a, alpha))
    bound = phi0 + c1 * alpha * dphi0
    if not phi_a <= bound:
        raise AssertionError(f"sufficient decrease fails: φ(α) = {phi_a:.6g} > "
                             f"φ(0) + c1·α·φ'(0) = {bound:.6g}")
    if not abs(dphi_a) <= c2 * abs(dphi0):
        raise AssertionError(f"strong curvature condition fails: |φ'(α)| = {abs(dphi_a):.3g} > "
                             f"c2·|φ'(0)| = {c2 * abs(dphi0):.3g}")


def dense_lbfgs_matrix(s_hist: Sequence[Tensor], y_hist: Sequence[Tensor], gamma=None) -> Tensor:
    r"""Build densely, in float64, the matrix :math:`H_k` that the two-loop recursion applies (an oracle).

    Start from :math:`\gamma I` and apply the BFGS inverse update (6.17) once per pair, oldest first.
    """
    n = s_hist[0].shape[0] if s_hist else None
    if n is None:
        raise ValueError("dense_lbfgs_matrix needs at least one pair")
    S = [_f64(s) for s in s_hist]
    Y = [_f64(y) for y in y_hist]
    if gamma is None:
        gamma = float(S[-1] @ Y[-1] / (Y[-1] @ Y[-1]))
    H = float(gamma) * torch.eye(n, dtype=torch.float64)
    eye = torch.eye(n, dtype=torch.float64)
    for s, y in zip(S, Y):
        rho = 1.0 / float(y @ s)
        H = (eye - rho * torch.outer(s, y)) @ H @ (eye - rho * torch.outer(y, s)) + rho * torch.outer(s, s)
    return H
