"""Never transposes: for a tall G the Gram matrix X Xᵀ is m×m (huge for a tall, thin matrix)."""
EXPECT = "transpose first"
import torch


def newton_schulz(G, steps=5, coefficients=(3.4445, -4.7750, 2.0315), eps=1e-7):
    a, b, c = coefficients
    X = G / (torch.linalg.matrix_norm(G) + eps)
    for _ in range(steps):
        A = X @ X.mT
        X = a * X + (b * A + c * A @ A) @ X
    return X
