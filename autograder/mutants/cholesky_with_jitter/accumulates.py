"""Adds each shift to the already shifted matrix, so the total shift is the sum of the ladder."""
EXPECT = "accumulated"
import torch


def cholesky_with_jitter(A, initial=1e-10, factor=10.0, max_tries=20):
    L, info = torch.linalg.cholesky_ex(A)
    if int(info) == 0:
        return L, 0.0
    M = A.clone()
    tau = initial
    for _ in range(max_tries):
        M = M + tau * torch.eye(A.shape[0], dtype=A.dtype)
        L, info = torch.linalg.cholesky_ex(M)
        if int(info) == 0:
            return L, float(tau)
        tau *= factor
    raise ValueError("A is not positive definite")
