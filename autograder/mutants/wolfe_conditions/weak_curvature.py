"""The weak curvature condition φ'(α) ≥ c2 φ'(0) instead of the strong one."""
EXPECT = "weak curvature"


def wolfe_conditions(phi0, dphi0, phi_a, dphi_a, alpha, c1=1e-4, c2=0.9):
    if not 0 < c1 < c2 < 1:
        raise ValueError("need 0 < c1 < c2 < 1")
    if not dphi0 < 0:
        raise ValueError("dphi0 must be negative")
    if not alpha > 0:
        raise ValueError("alpha must be positive")
    return bool(phi_a <= phi0 + c1 * alpha * dphi0), bool(dphi_a >= c2 * dphi0)
