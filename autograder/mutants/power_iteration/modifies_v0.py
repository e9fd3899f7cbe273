"""Normalizes v0 in place: the caller's starting vector is changed."""
EXPECT = "modified in place"
import torch


def power_iteration(matvec, v0, iters=100, tol=1e-6):
    v0 /= v0.norm()
    v = v0
    lam_prev = None
    for i in range(iters):
        w = matvec(v)
        lam = torch.dot(v, w)
        if float(w.norm()) == 0.0:
            break
        if lam_prev is not None and abs(float(lam) - lam_prev) <= tol * abs(float(lam)):
            break
        lam_prev = float(lam)
        if i + 1 < iters:
            v = w / w.norm()
    return lam, v
