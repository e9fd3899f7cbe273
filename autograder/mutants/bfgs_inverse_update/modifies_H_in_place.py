"""H updated in place with += (the caller's matrix changes)."""
EXPECT = "modified in place"
import torch


def bfgs_inverse_update(H, s, y):
    sy = torch.dot(y, s)
    if not sy > 0:
        raise ValueError("the curvature condition y·s > 0 fails")
    rho = 1.0 / sy
    Hy = H @ y
    yHy = torch.dot(y, Hy)
    H -= rho * (torch.outer(s, Hy) + torch.outer(Hy, s))
    H += (rho * rho * yHy + rho) * torch.outer(s, s)
    return H
