"""Returns −Hv, as if computing a descent direction."""
EXPECT = "sign is wrong"
import torch


def hvp(f, x, v):
    x = x.detach().requires_grad_(True)
    (g,) = torch.autograd.grad(f(x), x, create_graph=True)
    if not g.requires_grad:
        return torch.zeros_like(x)
    (hv,) = torch.autograd.grad(g, x, grad_outputs=v)
    return -hv
