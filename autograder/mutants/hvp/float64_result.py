"""Computes in float64 whatever the dtype of x, and returns float64."""
EXPECT = "dtype"
import torch


def hvp(f, x, v):
    x = x.detach().double().requires_grad_(True)
    (g,) = torch.autograd.grad(f(x.to(v.dtype)), x, create_graph=True)
    if not g.requires_grad:
        return torch.zeros_like(x)
    (hv,) = torch.autograd.grad(g, x, grad_outputs=v.double())
    return hv
