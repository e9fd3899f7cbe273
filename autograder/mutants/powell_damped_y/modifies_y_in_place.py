"""Writes the result into y in place."""
EXPECT = "modified in place"


def powell_damped_y(B, s, y, threshold=0.2):
    Bs = B @ s
    sBs = s @ Bs
    sy = s @ y
    theta = (1 - threshold) * sBs / (sBs - sy) if sy < threshold * sBs else 1.0
    y.mul_(theta).add_((1 - theta) * Bs)
    return y
