"""Works on x.reshape(-1) and returns a flat vector, even for a matrix-shaped x."""
EXPECT = "shape of x"
import torch


def hvp(f, x, v):
    shape = x.shape
    z = x.detach().reshape(-1).requires_grad_(True)
    (g,) = torch.autograd.grad(f(z.reshape(shape)), z, create_graph=True)
    if not g.requires_grad:
        return torch.zeros_like(z)
    (hv,) = torch.autograd.grad(g @ v.reshape(-1), z)
    return hv
