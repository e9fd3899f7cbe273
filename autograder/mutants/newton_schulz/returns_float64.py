"""Computes in float64 and returns float64 even for float32 input."""
EXPECT = "dtype"
import torch


def newton_schulz(G, steps=5, coefficients=(3.4445, -4.7750, 2.0315), eps=1e-7):
    a, b, c = coefficients
    tall = G.shape[0] > G.shape[1]
    X = (G.mT if tall else G).double()
    X = X / (torch.linalg.matrix_norm(X) + eps)
    for _ in range(steps):
        A = X @ X.mT
        X = a * X + (b * A + c * A @ A) @ X
    return X.mT if tall else X
