"""Checks the descent direction but neither 0 < c1 < c2 < 1 nor α > 0."""
EXPECT = "instead of raising ValueError"


def wolfe_conditions(phi0, dphi0, phi_a, dphi_a, alpha, c1=1e-4, c2=0.9):
    if dphi0 >= 0:
        raise ValueError("dphi0 must be negative")
    return bool(phi_a <= phi0 + c1 * alpha * dphi0), bool(abs(dphi_a) <= c2 * abs(dphi0))
