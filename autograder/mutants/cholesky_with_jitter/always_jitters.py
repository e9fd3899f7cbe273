"""Always adds jitter, even when A is already positive definite."""
EXPECT = "A itself must be tried first"
import torch


def cholesky_with_jitter(A, initial=1e-10, factor=10.0, max_tries=20):
    eye = torch.eye(A.shape[0], dtype=A.dtype)
    tau = initial
    for _ in range(max_tries):
        L, info = torch.linalg.cholesky_ex(A + tau * eye)
        if int(info) == 0:
            return L, float(tau)
        tau *= factor
    raise ValueError("A is not positive definite")
