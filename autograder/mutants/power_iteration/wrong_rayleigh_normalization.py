"""Keeps v unnormalized and divides vᵀAv by ‖v‖ instead of ‖v‖² (normalizes v only at the end)."""
EXPECT = "‖v‖²"
import torch


def power_iteration(matvec, v0, iters=100, tol=1e-6):
    v = v0.clone()
    lam_prev = None
    for i in range(iters):
        w = matvec(v)
        lam = torch.dot(v, w) / v.norm()
        if lam_prev is not None and abs(float(lam) - lam_prev) <= tol * abs(float(lam)):
            break
        lam_prev = float(lam)
        if i + 1 < iters:
            v = w
    return lam, v / v.norm()
