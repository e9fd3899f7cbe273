"""The threshold argument r is ignored (1e-8 hard-coded)."""
EXPECT = "r is ignored"
import torch


def sr1_update(B, s, y, r=1e-8):
    v = y - B @ s
    vs = v @ s
    if abs(vs) <= 1e-8 * torch.linalg.vector_norm(s) * torch.linalg.vector_norm(v):
        return B.clone()
    return B + torch.outer(v, v) / vs
