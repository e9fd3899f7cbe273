"""Refuses pairs with yᵀs < 1e-10 (an absolute threshold): small but valid steps raise."""
EXPECT = "absolute threshold"
import torch


def bfgs_inverse_update(H, s, y):
    sy = torch.dot(y, s)
    if sy < 1e-10:
        raise ValueError("the curvature condition y·s > 0 fails")
    rho = 1.0 / sy
    eye = torch.eye(s.shape[0], dtype=H.dtype, device=H.device)
    return (eye - rho * torch.outer(s, y)) @ H @ (eye - rho * torch.outer(y, s)) + rho * torch.outer(s, s)
