"""Adds τ to every entry of A instead of to its diagonal."""
EXPECT = "every entry"
import torch


def cholesky_with_jitter(A, initial=1e-10, factor=10.0, max_tries=20):
    L, info = torch.linalg.cholesky_ex(A)
    if int(info) == 0:
        return L, 0.0
    tau = initial
    for _ in range(max_tries):
        L, info = torch.linalg.cholesky_ex(A + tau)
        if int(info) == 0:
            return L, float(tau)
        tau *= factor
    raise ValueError("A is not positive definite")
