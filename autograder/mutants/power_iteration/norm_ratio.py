"""Estimates λ by ‖Av‖ instead of the Rayleigh quotient vᵀAv."""
EXPECT = "Rayleigh quotient"


def power_iteration(matvec, v0, iters=100, tol=1e-6):
    v = v0 / v0.norm()
    lam_prev = None
    for i in range(iters):
        w = matvec(v)
        lam = w.norm()
        if lam_prev is not None and abs(float(lam) - lam_prev) <= tol * abs(float(lam)):
            break
        lam_prev = float(lam)
        if i + 1 < iters:
            v = w / w.norm()
    return lam, v
