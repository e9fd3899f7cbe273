"""Returns the gradient ∇f(x): one backward pass, the second (along v) is missing."""
EXPECT = "returned the gradient"
import torch


def hvp(f, x, v):
    x = x.detach().requires_grad_(True)
    (g,) = torch.autograd.grad(f(x), x)
    return g
