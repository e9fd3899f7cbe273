"""Correction v sᵀ instead of v vᵀ: the result is not symmetric."""
EXPECT = "not v sᵀ"
import torch


def sr1_update(B, s, y, r=1e-8):
    v = y - B @ s
    vs = v @ s
    if abs(vs) <= r * torch.linalg.vector_norm(s) * torch.linalg.vector_norm(v):
        return B.clone()
    return B + torch.outer(v, s) / vs
