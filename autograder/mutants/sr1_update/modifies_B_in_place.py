"""B updated in place (the caller's matrix changes)."""
EXPECT = "modified in place"
import torch


def sr1_update(B, s, y, r=1e-8):
    v = y - B @ s
    vs = v @ s
    if abs(vs) <= r * torch.linalg.vector_norm(s) * torch.linalg.vector_norm(v):
        return B
    B += torch.outer(v, v) / vs
    return B
