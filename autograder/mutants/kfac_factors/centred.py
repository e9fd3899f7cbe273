"""Subtracts the batch mean: a covariance instead of the uncentred second moment."""
EXPECT = "uncentred second moment"


def kfac_factors(a, g):
    N = a.shape[0]
    a = a - a.mean(dim=0)
    g = g - g.mean(dim=0)
    return a.T @ a / N, g.T @ g / N
