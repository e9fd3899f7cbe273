"""Normalizes v first, as if only its direction mattered: returns Hv/‖v‖ (and NaN for v = 0)."""
EXPECT = "normalized"
import torch


def hvp(f, x, v):
    v = v / v.norm()
    x = x.detach().requires_grad_(True)
    (g,) = torch.autograd.grad(f(x), x, create_graph=True)
    if not g.requires_grad:
        return torch.zeros_like(x)
    (hv,) = torch.autograd.grad(g, x, grad_outputs=v)
    return hv
