"""Returns the step −Δ instead of Δ."""
EXPECT = "returned −Δ"
import math

import torch


def kfac_precondition(grad_W, A, G, damping):
    pi = math.sqrt(damping)
    A_d = A + pi * torch.eye(A.shape[0], dtype=A.dtype)
    G_d = G + pi * torch.eye(G.shape[0], dtype=G.dtype)
    return -torch.linalg.solve(G_d, torch.linalg.solve(A_d, grad_W.T).T)
