"""Initializes λ_prev with the first λ before the test, so the loop stops after one product."""
EXPECT = "first product"
import torch


def power_iteration(matvec, v0, iters=100, tol=1e-6):
    v = v0 / v0.norm()
    lam_prev = None
    for i in range(iters):
        w = matvec(v)
        lam = torch.dot(v, w)
        if lam_prev is None:
            lam_prev = float(lam)
        if abs(float(lam) - lam_prev) <= tol * abs(float(lam)):
            break
        lam_prev = float(lam)
        if i + 1 < iters:
            v = w / w.norm()
    return lam, v
