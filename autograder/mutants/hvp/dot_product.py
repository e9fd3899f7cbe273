"""Forms ∇f(x)ᵀv with torch.dot, which takes vectors only: a matrix-shaped x makes it raise."""
EXPECT = "(g * v).sum()"
import torch


def hvp(f, x, v):
    z = x.detach().requires_grad_(True)
    (g,) = torch.autograd.grad(f(z), z, create_graph=True)
    if not g.requires_grad:
        return torch.zeros_like(x)
    (hv,) = torch.autograd.grad(torch.dot(g, v), z)
    return hv.detach()
