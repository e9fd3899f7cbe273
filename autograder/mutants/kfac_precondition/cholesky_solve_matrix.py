"""Passes the damped factor itself to torch.cholesky_solve, which expects its Cholesky factor."""
EXPECT = "Cholesky factor"
import math

import torch


def kfac_precondition(grad_W, A, G, damping):
    pi = math.sqrt(damping)
    A_d = A + pi * torch.eye(A.shape[0], dtype=A.dtype)
    G_d = G + pi * torch.eye(G.shape[0], dtype=G.dtype)
    left = torch.cholesky_solve(grad_W, G_d)
    return torch.cholesky_solve(left.T, A_d).T
