"""Finite difference that shifts x in place and back: x comes back changed by rounding."""
EXPECT = "modified in place"
import torch


def hvp(f, x, v):
    def grad(z):
        z = z.detach().requires_grad_(True)
        return torch.autograd.grad(f(z), z)[0]

    h = 1e-5
    with torch.no_grad():
        x += h * v
    g_plus = grad(x)
    with torch.no_grad():
        x -= 2 * h * v
    g_minus = grad(x)
    with torch.no_grad():
        x += h * v
    return (g_plus - g_minus) / (2 * h)
