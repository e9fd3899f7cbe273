"""ρ taken as yᵀs instead of 1/(yᵀs)."""
EXPECT = "not yᵀs"
import torch


def bfgs_inverse_update(H, s, y):
    rho = torch.dot(y, s)
    if not rho > 0:
        raise ValueError("the curvature condition y·s > 0 fails")
    eye = torch.eye(s.shape[0], dtype=H.dtype, device=H.device)
    return (eye - rho * torch.outer(s, y)) @ H @ (eye - rho * torch.outer(y, s)) + rho * torch.outer(s, s)
