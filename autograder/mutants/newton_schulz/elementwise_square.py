"""Writes the quintic term with A**2, an elementwise square, instead of the matrix product A @ A."""
EXPECT = "computed elementwise"
import torch


def newton_schulz(G, steps=5, coefficients=(3.4445, -4.7750, 2.0315), eps=1e-7):
    a, b, c = coefficients
    tall = G.shape[0] > G.shape[1]
    X = G.mT if tall else G
    X = X / (torch.linalg.matrix_norm(X) + eps)
    for _ in range(steps):
        A = X @ X.mT
        X = a * X + (b * A + c * A ** 2) @ X
    return X.mT if tall else X
