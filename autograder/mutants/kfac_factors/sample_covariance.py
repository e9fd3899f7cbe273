"""Divides by N − 1 as for a sample covariance."""
EXPECT = "divided by N − 1"


def kfac_factors(a, g):
    N = a.shape[0]
    d = max(N - 1, 1)
    return a.T @ a / d, g.T @ g / d
