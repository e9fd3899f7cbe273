"""Builds H_k densely (γI, then one BFGS inverse update per pair) and multiplies: O(n²) memory."""
EXPECT = "n×n matrix"
import torch


def two_loop_recursion(g, s_hist, y_hist, gamma=None):
    n, m = g.shape[0], len(s_hist)
    ys = [torch.dot(y, s) for s, y in zip(s_hist, y_hist)]
    if any(not bool(v > 0) for v in ys):
        raise ValueError("a pair violates y·s > 0")
    if gamma is None:
        gamma = ys[-1] / torch.dot(y_hist[-1], y_hist[-1]) if m else 1.0
    eye = torch.eye(n, dtype=g.dtype)
    H = gamma * eye
    for s, y, sy in zip(s_hist, y_hist, ys):
        rho = 1.0 / sy
        H = (eye - rho * torch.outer(s, y)) @ H @ (eye - rho * torch.outer(y, s)) + rho * torch.outer(s, s)
    return H @ g
