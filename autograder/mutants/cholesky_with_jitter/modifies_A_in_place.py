"""Adds the shift to the diagonal of A in place."""
EXPECT = "modified in place"
import torch


def cholesky_with_jitter(A, initial=1e-10, factor=10.0, max_tries=20):
    L, info = torch.linalg.cholesky_ex(A)
    if int(info) == 0:
        return L, 0.0
    for j in range(max_tries):
        tau = initial * factor ** j
        A.diagonal().add_(tau - (initial * factor ** (j - 1) if j else 0.0))
        L, info = torch.linalg.cholesky_ex(A)
        if int(info) == 0:
            return L, float(tau)
    raise ValueError("A is not positive definite")
