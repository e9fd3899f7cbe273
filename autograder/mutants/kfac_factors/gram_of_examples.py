"""Outer products the wrong way round: a aᵀ (N × N) instead of aᵀ a (d × d)."""
EXPECT = "Gram matrix of the examples"


def kfac_factors(a, g):
    N = a.shape[0]
    return a @ a.T / N, g @ g.T / N
