"""s and y swapped in the update."""
EXPECT = "s and y look swapped"
import torch


def sr1_update(B, s, y, r=1e-8):
    v = s - B @ y
    vy = v @ y
    if abs(vy) <= r * torch.linalg.vector_norm(y) * torch.linalg.vector_norm(v):
        return B.clone()
    return B + torch.outer(v, v) / vy
