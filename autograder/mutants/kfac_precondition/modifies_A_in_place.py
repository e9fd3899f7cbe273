"""Adds the damping to the factors' diagonals in place."""
EXPECT = "modified in place"
import math

import torch


def kfac_precondition(grad_W, A, G, damping):
    pi = math.sqrt(damping)
    A.diagonal().add_(pi)
    G.diagonal().add_(pi)
    return torch.linalg.solve(G, torch.linalg.solve(A, grad_W.T).T)
