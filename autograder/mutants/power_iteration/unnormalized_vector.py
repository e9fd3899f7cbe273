"""Never normalizes: v = w each step, λ = vᵀAv / vᵀv, and v is returned at whatever length it grew to."""
EXPECT = "normalized"
import torch


def power_iteration(matvec, v0, iters=100, tol=1e-6):
    v = v0.clone()
    lam_prev = None
    for i in range(iters):
        w = matvec(v)
        lam = torch.dot(v, w) / torch.dot(v, v)
        if lam_prev is not None and abs(float(lam) - lam_prev) <= tol * abs(float(lam)):
            break
        lam_prev = float(lam)
        if i + 1 < iters:
            v = w
    return lam, v
