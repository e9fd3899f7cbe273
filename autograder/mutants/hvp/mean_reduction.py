"""Forms ∇f(x)ᵀv with .mean() instead of .sum(): the product comes out divided by the size of x."""
EXPECT = "averaged (.mean())"
import torch


def hvp(f, x, v):
    z = x.detach().requires_grad_(True)
    (g,) = torch.autograd.grad(f(z), z, create_graph=True)
    if not g.requires_grad:
        return torch.zeros_like(x)
    (hv,) = torch.autograd.grad((g * v).mean(), z)
    return hv.detach()
