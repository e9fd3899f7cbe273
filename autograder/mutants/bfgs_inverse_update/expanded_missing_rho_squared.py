"""Expanded form with coefficient ρ yᵀHy + ρ of s sᵀ instead of ρ² yᵀHy + ρ."""
EXPECT = "ρ² is missing"
import torch


def bfgs_inverse_update(H, s, y):
    sy = torch.dot(y, s)
    if not sy > 0:
        raise ValueError("the curvature condition y·s > 0 fails")
    rho = 1.0 / sy
    Hy = H @ y
    return H - rho * (torch.outer(s, Hy) + torch.outer(Hy, s)) + (rho * torch.dot(y, Hy) + rho) * torch.outer(s, s)
