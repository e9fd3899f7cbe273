"""Adds λ (not √λ) to each factor."""
EXPECT = "λ was added to each factor"
import torch


def kfac_precondition(grad_W, A, G, damping):
    A_d = A + damping * torch.eye(A.shape[0], dtype=A.dtype)
    G_d = G + damping * torch.eye(G.shape[0], dtype=G.dtype)
    return torch.linalg.solve(G_d, torch.linalg.solve(A_d, grad_W.T).T)
