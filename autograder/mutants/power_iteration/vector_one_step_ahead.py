"""Updates v after the last λ when iters runs out: the returned v is one step ahead of λ."""
EXPECT = "one step ahead"
import torch


def power_iteration(matvec, v0, iters=100, tol=1e-6):
    v = v0 / v0.norm()
    lam_prev = None
    for _ in range(iters):
        w = matvec(v)
        lam = torch.dot(v, w)
        if float(w.norm()) == 0.0:
            break
        if lam_prev is not None and abs(float(lam) - lam_prev) <= tol * abs(float(lam)):
            break
        lam_prev = float(lam)
        v = w / w.norm()
    return lam, v
