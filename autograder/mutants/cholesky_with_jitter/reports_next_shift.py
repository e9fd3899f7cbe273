"""Multiplies τ by the factor before returning: reports the next shift, not the one used."""
EXPECT = "next shift"
import torch


def cholesky_with_jitter(A, initial=1e-10, factor=10.0, max_tries=20):
    L, info = torch.linalg.cholesky_ex(A)
    if int(info) == 0:
        return L, 0.0
    eye = torch.eye(A.shape[0], dtype=A.dtype)
    tau = initial
    for _ in range(max_tries):
        L, info = torch.linalg.cholesky_ex(A + tau * eye)
        tau *= factor
        if int(info) == 0:
            return L, float(tau)
    raise ValueError("A is not positive definite")
