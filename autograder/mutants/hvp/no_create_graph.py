"""The first backward pass is made without create_graph=True, so ∇f(x)ᵀv cannot be differentiated."""
EXPECT = "create_graph=True"
import torch


def hvp(f, x, v):
    x = x.detach().requires_grad_(True)
    (g,) = torch.autograd.grad(f(x), x)
    (hv,) = torch.autograd.grad((g * v).sum(), x)
    return hv
