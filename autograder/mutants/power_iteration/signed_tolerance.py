"""Tests |λ − λ_prev| ≤ tol·λ without |·| around λ: never true for a negative dominant eigenvalue."""
EXPECT = "without |·| around λ"
import torch


def power_iteration(matvec, v0, iters=100, tol=1e-6):
    v = v0 / v0.norm()
    lam_prev = None
    for i in range(iters):
        w = matvec(v)
        lam = torch.dot(v, w)
        if float(w.norm()) == 0.0:
            break
        if lam_prev is not None and abs(float(lam) - lam_prev) <= tol * float(lam):
            break
        lam_prev = float(lam)
        if i + 1 < iters:
            v = w / w.norm()
    return lam, v
