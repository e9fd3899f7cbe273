"""Forgets the (1 − θ) B s term: r = θ y."""
EXPECT = "(1 − θ) B s is missing"


def powell_damped_y(B, s, y, threshold=0.2):
    Bs = B @ s
    sBs = s @ Bs
    sy = s @ y
    theta = (1 - threshold) * sBs / (sBs - sy) if sy < threshold * sBs else 1.0
    return theta * y
