"""Computes in float64 and forgets to convert back."""
EXPECT = "dtype"


def powell_damped_y(B, s, y, threshold=0.2):
    B, s, y = B.double(), s.double(), y.double()
    Bs = B @ s
    sBs, sy = s @ Bs, s @ y
    theta = (1 - threshold) * sBs / (sBs - sy) if sy < threshold * sBs else 1.0
    return theta * y + (1 - theta) * Bs
