"""Returns the factors in the wrong order: (G, A)."""
EXPECT = "A and G are swapped"


def kfac_factors(a, g):
    N = a.shape[0]
    return g.T @ g / N, a.T @ a / N
