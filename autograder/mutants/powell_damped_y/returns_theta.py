"""Returns θ instead of the damped vector r."""
EXPECT = "not θ"
import torch


def powell_damped_y(B, s, y, threshold=0.2):
    Bs = B @ s
    sBs = s @ Bs
    sy = s @ y
    theta = (1 - threshold) * sBs / (sBs - sy) if sy < threshold * sBs else torch.ones((), dtype=s.dtype)
    return theta
