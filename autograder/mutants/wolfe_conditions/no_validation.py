"""No ValueError at all: invalid constants, an ascent direction or α ≤ 0 are evaluated anyway."""
EXPECT = "instead of raising ValueError"


def wolfe_conditions(phi0, dphi0, phi_a, dphi_a, alpha, c1=1e-4, c2=0.9):
    return bool(phi_a <= phi0 + c1 * alpha * dphi0), bool(abs(dphi_a) <= c2 * abs(dphi0))
