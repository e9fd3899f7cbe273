"""Off by one: tries only max_tries − 1 shifts."""
EXPECT = "off by one"
import torch


def cholesky_with_jitter(A, initial=1e-10, factor=10.0, max_tries=20):
    L, info = torch.linalg.cholesky_ex(A)
    if int(info) == 0:
        return L, 0.0
    for j in range(max_tries - 1):
        tau = initial * factor ** j
        L, info = torch.linalg.cholesky_ex(A + tau * torch.eye(A.shape[0], dtype=A.dtype))
        if int(info) == 0:
            return L, float(tau)
    raise ValueError("A is not positive definite")
