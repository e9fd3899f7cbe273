"""Multiplies by the damped factors instead of solving with them."""
EXPECT = "multiplied by the damped factors"
import math

import torch


def kfac_precondition(grad_W, A, G, damping):
    pi = math.sqrt(damping)
    A_d = A + pi * torch.eye(A.shape[0], dtype=A.dtype)
    G_d = G + pi * torch.eye(G.shape[0], dtype=G.dtype)
    return G_d @ grad_W @ A_d
