"""Invalid input rejected with assert (AssertionError) instead of raising ValueError."""
EXPECT = "where a ValueError is expected"


def wolfe_conditions(phi0, dphi0, phi_a, dphi_a, alpha, c1=1e-4, c2=0.9):
    assert 0 < c1 < c2 < 1, "need 0 < c1 < c2 < 1"
    assert dphi0 < 0, "dphi0 must be negative"
    assert alpha > 0, "alpha must be positive"
    return bool(phi_a <= phi0 + c1 * alpha * dphi0), bool(abs(dphi_a) <= c2 * abs(dphi0))
