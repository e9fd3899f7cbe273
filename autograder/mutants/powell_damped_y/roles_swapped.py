"""Mixes with the roles swapped: r = θ B s + (1 − θ) y."""
EXPECT = "swapped roles"


def powell_damped_y(B, s, y, threshold=0.2):
    Bs = B @ s
    sBs = s @ Bs
    sy = s @ y
    theta = (1 - threshold) * sBs / (sBs - sy) if sy < threshold * sBs else 1.0
    return theta * Bs + (1 - theta) * y
