"""Puts A on the left and G on the right: (A + √λI)⁻¹ ∇W (G + √λI)⁻¹ (fails to run on rectangular layers)."""
EXPECT = "wrong sides"
import math

import torch


def kfac_precondition(grad_W, A, G, damping):
    pi = math.sqrt(damping)
    A_d = A + pi * torch.eye(A.shape[0], dtype=A.dtype)
    G_d = G + pi * torch.eye(G.shape[0], dtype=G.dtype)
    return torch.linalg.solve(A_d, grad_W) @ torch.linalg.inv(G_d)
