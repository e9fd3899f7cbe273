"""The threshold test is reversed: damps when sᵀy ≥ ω sᵀBs."""
EXPECT = "wrong way round"


def powell_damped_y(B, s, y, threshold=0.2):
    Bs = B @ s
    sBs = s @ Bs
    sy = s @ y
    if sy < threshold * sBs:
        return y.clone()
    theta = (1 - threshold) * sBs / (sBs - sy)
    return theta * y + (1 - theta) * Bs
