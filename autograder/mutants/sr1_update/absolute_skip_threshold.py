"""An absolute skip test |vᵀs| < r, not relative to r‖s‖‖v‖."""
EXPECT = "looks absolute"
import torch


def sr1_update(B, s, y, r=1e-8):
    v = y - B @ s
    vs = v @ s
    if abs(vs) < r:
        return B.clone()
    return B + torch.outer(v, v) / vs
