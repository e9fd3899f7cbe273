"""v computed as B s − y instead of y − B s."""
EXPECT = "wrong sign"
import torch


def sr1_update(B, s, y, r=1e-8):
    v = B @ s - y
    vs = v @ s
    if abs(vs) <= r * torch.linalg.vector_norm(s) * torch.linalg.vector_norm(v):
        return B.clone()
    return B + torch.outer(v, v) / vs
