"""Raises the eigenvalues to −p instead of −1/p."""
EXPECT = "M^(−p)"
import math
import torch


def matrix_inverse_root(M, p, eps=1e-12):
    tol = math.sqrt(torch.finfo(M.dtype).eps)
    if torch.linalg.matrix_norm(M - M.mT) > tol * torch.linalg.matrix_norm(M):
        raise ValueError("M must be symmetric")
    M64 = M.double()
    lam, Q = torch.linalg.eigh(0.5 * (M64 + M64.mT))
    return ((Q * (lam.clamp(min=0) + eps) ** (-p)) @ Q.mT).to(M.dtype)
