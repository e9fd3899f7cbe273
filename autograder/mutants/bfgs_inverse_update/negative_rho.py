"""Sign error: ρ = −1/(yᵀs)."""
EXPECT = "wrong sign"
import torch


def bfgs_inverse_update(H, s, y):
    sy = torch.dot(y, s)
    if not sy > 0:
        raise ValueError("the curvature condition y·s > 0 fails")
    rho = -1.0 / sy
    eye = torch.eye(s.shape[0], dtype=H.dtype, device=H.device)
    return (eye - rho * torch.outer(s, y)) @ H @ (eye - rho * torch.outer(y, s)) + rho * torch.outer(s, s)
