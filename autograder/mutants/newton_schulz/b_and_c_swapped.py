"""Puts b on the quintic term and c on the cubic one: a, c, b = coefficients."""
EXPECT = "wrong order"
import torch


def newton_schulz(G, steps=5, coefficients=(3.4445, -4.7750, 2.0315), eps=1e-7):
    a, c, b = coefficients
    tall = G.shape[0] > G.shape[1]
    X = G.mT if tall else G
    X = X / (torch.linalg.matrix_norm(X) + eps)
    for _ in range(steps):
        A = X @ X.mT
        X = a * X + (b * A + c * A @ A) @ X
    return X.mT if tall else X
