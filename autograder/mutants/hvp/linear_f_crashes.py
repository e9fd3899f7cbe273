"""Correct double backward, but a linear f (constant gradient, no graph) makes the second pass raise."""
EXPECT = "f is linear here"
import torch


def hvp(f, x, v):
    x = x.detach().requires_grad_(True)
    (g,) = torch.autograd.grad(f(x), x, create_graph=True)
    (hv,) = torch.autograd.grad(g, x, grad_outputs=v)
    return hv.detach()
