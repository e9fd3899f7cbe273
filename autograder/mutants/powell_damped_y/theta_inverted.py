"""θ inverted: (sᵀBs − sᵀy) / ((1 − ω) sᵀBs) instead of its reciprocal."""
EXPECT = "θ is inverted"


def powell_damped_y(B, s, y, threshold=0.2):
    Bs = B @ s
    sBs = s @ Bs
    sy = s @ y
    theta = (sBs - sy) / ((1 - threshold) * sBs) if sy < threshold * sBs else 1.0
    return theta * y + (1 - theta) * Bs
