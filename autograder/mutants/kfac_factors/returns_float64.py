"""Accumulates in float64 and forgets to convert back."""
EXPECT = "dtype"


def kfac_factors(a, g):
    a, g = a.double(), g.double()
    N = a.shape[0]
    return a.T @ a / N, g.T @ g / N
