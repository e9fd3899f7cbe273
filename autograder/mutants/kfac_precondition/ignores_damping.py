"""Ignores the damping argument (breaks down on singular factors)."""
EXPECT = "damping is ignored"
import torch


def kfac_precondition(grad_W, A, G, damping):
    return torch.linalg.solve(G, torch.linalg.solve(A, grad_W.T).T)
