"""Floors after the shift, max(λ + eps, 0): a rounding-negative λ below −eps gives 0^(-1/p) = ∞."""
EXPECT = "the floor came after the shift"
import math
import torch


def matrix_inverse_root(M, p, eps=1e-12):
    tol = math.sqrt(torch.finfo(M.dtype).eps)
    if torch.linalg.matrix_norm(M - M.mT) > tol * torch.linalg.matrix_norm(M):
        raise ValueError("M must be symmetric")
    M64 = M.double()
    lam, Q = torch.linalg.eigh(0.5 * (M64 + M64.mT))
    return ((Q * (lam + eps).clamp(min=0) ** (-1.0 / p)) @ Q.mT).to(M.dtype)
