"""Damps the Kronecker product, (G ⊗ A + λI)⁻¹ vec(∇W), through the eigendecompositions."""
EXPECT = "added to the Kronecker product"
import torch


def kfac_precondition(grad_W, A, G, damping):
    lam_A, Q_A = torch.linalg.eigh(A)
    lam_G, Q_G = torch.linalg.eigh(G)
    V = Q_G.T @ grad_W @ Q_A
    V = V / (torch.outer(lam_G, lam_A) + damping)
    return Q_G @ V @ Q_A.T
