"""s and y swapped: the update makes H_new s = y, the secant equation of B, not of H."""
EXPECT = "s and y look swapped"
import torch


def bfgs_inverse_update(H, s, y):
    sy = torch.dot(s, y)
    if not sy > 0:
        raise ValueError("the curvature condition y·s > 0 fails")
    rho = 1.0 / sy
    eye = torch.eye(s.shape[0], dtype=H.dtype, device=H.device)
    return (eye - rho * torch.outer(y, s)) @ H @ (eye - rho * torch.outer(s, y)) + rho * torch.outer(y, y)
