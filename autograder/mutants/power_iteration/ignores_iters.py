"""Loops until the tolerance holds: iters is never used."""
EXPECT = "allows at most"
import torch


def power_iteration(matvec, v0, iters=100, tol=1e-6):
    v = v0 / v0.norm()
    lam_prev = None
    while True:
        w = matvec(v)
        lam = torch.dot(v, w)
        if float(w.norm()) == 0.0:
            break
        if lam_prev is not None and abs(float(lam) - lam_prev) <= tol * abs(float(lam)):
            break
        lam_prev = float(lam)
        v = w / w.norm()
    return lam, v
