"""Solves with A on the transposed intermediate and forgets to transpose back: returns Δᵀ."""
EXPECT = "the result is transposed"
import math

import torch


def kfac_precondition(grad_W, A, G, damping):
    pi = math.sqrt(damping)
    A_d = A + pi * torch.eye(A.shape[0], dtype=A.dtype)
    G_d = G + pi * torch.eye(G.shape[0], dtype=G.dtype)
    left = torch.linalg.solve(G_d, grad_W)
    return torch.linalg.solve(A_d, left.T)
