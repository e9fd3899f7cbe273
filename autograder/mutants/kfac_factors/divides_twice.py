"""Averages the rows first and then divides the product by N again (N² in all)."""
EXPECT = "divided by N twice"


def kfac_factors(a, g):
    N = a.shape[0]
    a, g = a / N, g / N
    return a.T @ a, g.T @ g
