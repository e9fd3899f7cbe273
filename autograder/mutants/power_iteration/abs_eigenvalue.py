"""Returns |λ|: the sign of a negative dominant eigenvalue is lost."""
EXPECT = "sign"
import torch


def power_iteration(matvec, v0, iters=100, tol=1e-6):
    v = v0 / v0.norm()
    lam_prev = None
    for i in range(iters):
        w = matvec(v)
        lam = torch.dot(v, w).abs()
        if float(w.norm()) == 0.0:
            break
        if lam_prev is not None and abs(float(lam) - lam_prev) <= tol * abs(float(lam)):
            break
        lam_prev = float(lam)
        if i + 1 < iters:
            v = w / w.norm()
    return lam, v
