"""θ = sᵀBs / (sᵀBs − sᵀy): the factor (1 − ω) is missing."""
EXPECT = "(1 − threshold) is missing"


def powell_damped_y(B, s, y, threshold=0.2):
    Bs = B @ s
    sBs = s @ Bs
    sy = s @ y
    theta = sBs / (sBs - sy) if sy < threshold * sBs else 1.0
    return theta * y + (1 - theta) * Bs
