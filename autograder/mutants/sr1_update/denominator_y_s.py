"""Denominator yᵀs (the BFGS habit) instead of vᵀs."""
EXPECT = "not yᵀs"
import torch


def sr1_update(B, s, y, r=1e-8):
    v = y - B @ s
    vs = v @ s
    if abs(vs) <= r * torch.linalg.vector_norm(s) * torch.linalg.vector_norm(v):
        return B.clone()
    return B + torch.outer(v, v) / (y @ s)
