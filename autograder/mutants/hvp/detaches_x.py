"""Detaches x and never makes it require grad: autograd has no graph to differentiate."""
EXPECT = "x must require grad"
import torch


def hvp(f, x, v):
    x = x.detach()
    (g,) = torch.autograd.grad(f(x), x, create_graph=True)
    (hv,) = torch.autograd.grad((g * v).sum(), x)
    return hv.detach()
