"""The DFP update (6.15) written instead of BFGS."""
EXPECT = "DFP"
import torch


def bfgs_inverse_update(H, s, y):
    sy = torch.dot(y, s)
    if not sy > 0:
        raise ValueError("the curvature condition y·s > 0 fails")
    Hy = H @ y
    return H - torch.outer(Hy, Hy) / torch.dot(y, Hy) + torch.outer(s, s) / sy
