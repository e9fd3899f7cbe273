"""Uses y where B s belongs: r = θ y + (1 − θ) y = y."""
EXPECT = "no damping is applied"


def powell_damped_y(B, s, y, threshold=0.2):
    Bs = B @ s
    sBs = s @ Bs
    sy = s @ y
    theta = (1 - threshold) * sBs / (sBs - sy) if sy < threshold * sBs else 1.0
    return theta * y + (1 - theta) * y
