"""Computes in float64 and returns float64 even for float32 input."""
EXPECT = "dtype"
import torch


def sr1_update(B, s, y, r=1e-8):
    B, s, y = B.double(), s.double(), y.double()
    v = y - B @ s
    vs = v @ s
    if abs(vs) <= r * torch.linalg.vector_norm(s) * torch.linalg.vector_norm(v):
        return B.clone()
    return B + torch.outer(v, v) / vs
