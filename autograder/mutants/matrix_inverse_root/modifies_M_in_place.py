"""Adds eps·I to M in place before the decomposition, changing the caller's matrix."""
EXPECT = "in place"
import math
import torch


def matrix_inverse_root(M, p, eps=1e-12):
    tol = math.sqrt(torch.finfo(M.dtype).eps)
    if torch.linalg.matrix_norm(M - M.mT) > tol * torch.linalg.matrix_norm(M):
        raise ValueError("M must be symmetric")
    M += eps * torch.eye(M.shape[0], dtype=M.dtype)
    M64 = M.double()
    lam, Q = torch.linalg.eigh(0.5 * (M64 + M64.mT))
    return ((Q * lam.clamp(min=eps) ** (-1.0 / p)) @ Q.mT).to(M.dtype)
