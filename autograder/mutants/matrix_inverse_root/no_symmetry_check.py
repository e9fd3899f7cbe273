"""Never checks symmetry: a non-symmetric M is silently symmetrized and rooted."""
EXPECT = "symmetry check is missing"
import torch


def matrix_inverse_root(M, p, eps=1e-12):
    M64 = M.double()
    lam, Q = torch.linalg.eigh(0.5 * (M64 + M64.mT))
    return ((Q * (lam.clamp(min=0) + eps) ** (-1.0 / p)) @ Q.mT).to(M.dtype)
