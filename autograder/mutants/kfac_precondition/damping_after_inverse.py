"""Adds the damping to the inverses: (G⁻¹ + √λI) ∇W (A⁻¹ + √λI)."""
EXPECT = "added after inverting"
import math

import torch


def kfac_precondition(grad_W, A, G, damping):
    pi = math.sqrt(damping)
    A_inv = torch.linalg.pinv(A) + pi * torch.eye(A.shape[0], dtype=A.dtype)
    G_inv = torch.linalg.pinv(G) + pi * torch.eye(G.shape[0], dtype=G.dtype)
    return G_inv @ grad_W @ A_inv
