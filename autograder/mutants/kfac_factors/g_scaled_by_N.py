"""Multiplies g by N, as if it were the gradient of a mean-reduced loss."""
EXPECT = "multiplied by N"


def kfac_factors(a, g):
    N = a.shape[0]
    g = g * N
    return a.T @ a / N, g.T @ g / N
