"""Computes in float64 and returns float64 even for float32 input."""
EXPECT = "dtype"
import torch


def bfgs_inverse_update(H, s, y):
    H, s, y = H.double(), s.double(), y.double()
    sy = torch.dot(y, s)
    if not sy > 0:
        raise ValueError("the curvature condition y·s > 0 fails")
    rho = 1.0 / sy
    eye = torch.eye(s.shape[0], dtype=H.dtype)
    return (eye - rho * torch.outer(s, y)) @ H @ (eye - rho * torch.outer(y, s)) + rho * torch.outer(s, s)
