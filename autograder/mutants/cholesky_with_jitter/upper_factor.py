"""Returns the upper factor Lᵀ."""
EXPECT = "upper factor"
import torch


def cholesky_with_jitter(A, initial=1e-10, factor=10.0, max_tries=20):
    eye = torch.eye(A.shape[0], dtype=A.dtype)
    L, info = torch.linalg.cholesky_ex(A)
    tau = 0.0
    j = 0
    while int(info) != 0:
        if j == max_tries:
            raise ValueError("A is not positive definite")
        tau = initial * factor ** j
        L, info = torch.linalg.cholesky_ex(A + tau * eye)
        j += 1
    return L.T, float(tau)
