"""Decomposes M in its own dtype: in float32 the small eigenvalues, which the power amplifies, are inaccurate."""
EXPECT = "eigendecomposition was done in torch.float32"
import math
import torch


def matrix_inverse_root(M, p, eps=1e-12):
    tol = math.sqrt(torch.finfo(M.dtype).eps)
    if torch.linalg.matrix_norm(M - M.mT) > tol * torch.linalg.matrix_norm(M):
        raise ValueError("M must be symmetric")
    lam, Q = torch.linalg.eigh(0.5 * (M + M.mT))
    return (Q * (lam.clamp(min=0) + eps) ** (-1.0 / p)) @ Q.mT
