"""Detaches the gradient before forming ∇f(x)ᵀv, so the second backward pass has no graph to follow."""
EXPECT = "must not be detached"
import torch


def hvp(f, x, v):
    z = x.detach().requires_grad_(True)
    (g,) = torch.autograd.grad(f(z), z, create_graph=True)
    g = g.detach()
    (hv,) = torch.autograd.grad((g * v).sum(), z)
    return hv
