"""Only the right factor applied, H (I − ρ y sᵀ) + ρ s sᵀ: not symmetric."""
EXPECT = "not symmetric"
import torch


def bfgs_inverse_update(H, s, y):
    sy = torch.dot(y, s)
    if not sy > 0:
        raise ValueError("the curvature condition y·s > 0 fails")
    rho = 1.0 / sy
    eye = torch.eye(s.shape[0], dtype=H.dtype, device=H.device)
    return H @ (eye - rho * torch.outer(y, s)) + rho * torch.outer(s, s)
