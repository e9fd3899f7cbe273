"""Returns the last attempt instead of raising after max_tries failures."""
EXPECT = "must raise ValueError"
import torch


def cholesky_with_jitter(A, initial=1e-10, factor=10.0, max_tries=20):
    L, info = torch.linalg.cholesky_ex(A)
    if int(info) == 0:
        return L, 0.0
    tau = initial
    for _ in range(max_tries):
        L, info = torch.linalg.cholesky_ex(A + tau * torch.eye(A.shape[0], dtype=A.dtype))
        if int(info) == 0:
            break
        tau *= factor
    return L, float(tau)
