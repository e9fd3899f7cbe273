"""The skip rule (N&W 6.26) is missing."""
EXPECT = "skip rule is missing"
import torch


def sr1_update(B, s, y, r=1e-8):
    v = y - B @ s
    return B + torch.outer(v, v) / (v @ s)
