"""Builds the dense Hessian with torch.func.hessian and multiplies: n² memory, impossible at n = 10⁶."""
EXPECT = "n×n Hessian"
import torch


def hvp(f, x, v):
    H = torch.func.hessian(lambda z: f(z.reshape(x.shape)))(x.detach().reshape(-1))
    return (H @ v.reshape(-1)).reshape(x.shape)
