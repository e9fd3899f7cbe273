"""Central finite difference of the gradient along v: approximate (about 1e-10), not exact."""
EXPECT = "finite-difference"
import torch


def hvp(f, x, v):
    def grad(z):
        z = z.detach().requires_grad_(True)
        return torch.autograd.grad(f(z), z)[0]

    eps = torch.finfo(x.dtype).eps
    h = eps ** (1 / 3) * (1 + float(x.detach().norm())) / max(float(v.norm()), 1e-300)
    return (grad(x + h * v) - grad(x - h * v)) / (2 * h)
