"""Splits the damping with Martens–Grosse's trace-norm π instead of π = 1."""
EXPECT = "Martens–Grosse's π"
import math

import torch


def kfac_precondition(grad_W, A, G, damping):
    d_out, d_in = grad_W.shape
    pi = math.sqrt((float(torch.trace(A)) / d_in) / (float(torch.trace(G)) / d_out))
    shift = math.sqrt(damping)
    A_d = A + pi * shift * torch.eye(d_in, dtype=A.dtype)
    G_d = G + shift / pi * torch.eye(d_out, dtype=G.dtype)
    return torch.linalg.solve(G_d, torch.linalg.solve(A_d, grad_W.T).T)
