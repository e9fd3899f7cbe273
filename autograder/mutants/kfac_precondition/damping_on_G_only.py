"""Adds the damping to G only."""
EXPECT = "added to G only"
import math

import torch


def kfac_precondition(grad_W, A, G, damping):
    pi = math.sqrt(damping)
    G_d = G + pi * torch.eye(G.shape[0], dtype=G.dtype)
    left = torch.linalg.solve(G_d, grad_W)
    return torch.linalg.solve(A, left.T).T
