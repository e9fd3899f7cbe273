"""ρᵢ = 1/(sᵢᵀsᵢ), a normalisation instead of the BFGS scalar 1/(yᵢᵀsᵢ)."""
EXPECT = "not 1/(sᵢᵀsᵢ)"
import torch


def two_loop_recursion(g, s_hist, y_hist, gamma=None):
    m = len(s_hist)
    ys = [torch.dot(y, s) for s, y in zip(s_hist, y_hist)]
    if any(not bool(v > 0) for v in ys):
        raise ValueError("a pair violates y·s > 0")
    if gamma is None:
        gamma = ys[-1] / torch.dot(y_hist[-1], y_hist[-1]) if m else 1.0
    rho = [1.0 / torch.dot(s, s) for s in s_hist]
    q = g.clone()
    alpha = [None] * m
    for i in reversed(range(m)):
        alpha[i] = rho[i] * torch.dot(s_hist[i], q)
        q = q - alpha[i] * y_hist[i]
    r = gamma * q
    for i in range(m):
        beta = rho[i] * torch.dot(y_hist[i], r)
        r = r + (alpha[i] - beta) * s_hist[i]
    return r
