"""Normalizes G in place (G.div_), so the caller's gradient is changed."""
EXPECT = "in place"
import torch


def newton_schulz(G, steps=5, coefficients=(3.4445, -4.7750, 2.0315), eps=1e-7):
    a, b, c = coefficients
    G.div_(torch.linalg.matrix_norm(G) + eps)
    tall = G.shape[0] > G.shape[1]
    X = G.mT if tall else G
    for _ in range(steps):
        A = X @ X.mT
        X = a * X + (b * A + c * A @ A) @ X
    return X.mT if tall else X
