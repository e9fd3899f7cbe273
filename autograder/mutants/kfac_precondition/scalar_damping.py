"""Adds √λ as a scalar, A + √λ, which broadcasts to every entry instead of the diagonal."""
EXPECT = "to every entry"
import math

import torch


def kfac_precondition(grad_W, A, G, damping):
    pi = math.sqrt(damping)
    left = torch.linalg.solve(G + pi, grad_W)
    return torch.linalg.solve(A + pi, left.T).T
