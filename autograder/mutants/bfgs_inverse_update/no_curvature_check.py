"""No ValueError when yᵀs ≤ 0: the update is applied anyway."""
EXPECT = "instead of raising ValueError"
import torch


def bfgs_inverse_update(H, s, y):
    rho = 1.0 / torch.dot(y, s)
    eye = torch.eye(s.shape[0], dtype=H.dtype, device=H.device)
    return (eye - rho * torch.outer(s, y)) @ H @ (eye - rho * torch.outer(y, s)) + rho * torch.outer(s, s)
