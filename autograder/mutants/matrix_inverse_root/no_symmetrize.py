"""Calls eigh on M as given, which reads only its lower triangle."""
EXPECT = "without symmetrizing"
import math
import torch


def matrix_inverse_root(M, p, eps=1e-12):
    tol = math.sqrt(torch.finfo(M.dtype).eps)
    if torch.linalg.matrix_norm(M - M.mT) > tol * torch.linalg.matrix_norm(M):
        raise ValueError("M must be symmetric")
    M64 = M.double()
    lam, Q = torch.linalg.eigh(M64)
    return ((Q * (lam.clamp(min=0) + eps) ** (-1.0 / p)) @ Q.mT).to(M.dtype)
