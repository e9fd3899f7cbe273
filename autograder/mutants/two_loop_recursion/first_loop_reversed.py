"""The first loop runs oldest to newest (the second loop correct, oldest to newest)."""
EXPECT = "first loop runs in the wrong order"
import torch


def two_loop_recursion(g, s_hist, y_hist, gamma=None):
    m = len(s_hist)
    ys = [torch.dot(y, s) for s, y in zip(s_hist, y_hist)]
    if any(not bool(v > 0) for v in ys):
        raise ValueError("a pair violates y·s > 0")
    if gamma is None:
        gamma = ys[-1] / torch.dot(y_hist[-1], y_hist[-1]) if m else 1.0
    q = g.clone()
    alpha = [None] * m
    for i in range(m):
        alpha[i] = torch.dot(s_hist[i], q) / ys[i]
        q = q - alpha[i] * y_hist[i]
    r = gamma * q
    for i in range(m):
        beta = torch.dot(y_hist[i], r) / ys[i]
        r = r + (alpha[i] - beta) * s_hist[i]
    return r
