"""Uses sᵀs where sᵀBs belongs (assumes B = I)."""
EXPECT = "B = I is assumed"


def powell_damped_y(B, s, y, threshold=0.2):
    Bs = B @ s
    sy = s @ y
    ss = s @ s
    theta = (1 - threshold) * ss / (ss - sy) if sy < threshold * ss else 1.0
    return theta * y + (1 - theta) * Bs
