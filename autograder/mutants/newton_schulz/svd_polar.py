"""Returns the exact polar factor U Vᵀ from an SVD instead of running the iteration."""
EXPECT = "exact polar factor"
import torch


def newton_schulz(G, steps=5, coefficients=(3.4445, -4.7750, 2.0315), eps=1e-7):
    U, _, Vh = torch.linalg.svd(G, full_matrices=False)
    return U @ Vh
