"""Keeps create_graph=True in the second backward pass and returns Hv still attached to the graph."""
EXPECT = "still requires grad"
import torch


def hvp(f, x, v):
    z = x.detach().requires_grad_(True)
    (g,) = torch.autograd.grad(f(z), z, create_graph=True)
    (hv,) = torch.autograd.grad((g * v).sum(), z, create_graph=True)
    return hv
