"""The threshold argument is ignored (0.2 hard-coded)."""
EXPECT = "ignored"


def powell_damped_y(B, s, y, threshold=0.2):
    Bs = B @ s
    sBs = s @ Bs
    sy = s @ y
    theta = 0.8 * sBs / (sBs - sy) if sy < 0.2 * sBs else 1.0
    return theta * y + (1 - theta) * Bs
