"""Never tests w = 0: a start in the null space of A divides 0 by 0 and returns NaN."""
EXPECT = "stop as soon as w = 0"
import torch


def power_iteration(matvec, v0, iters=100, tol=1e-6):
    v = v0 / v0.norm()
    lam_prev = None
    for i in range(iters):
        w = matvec(v)
        lam = torch.dot(v, w)
        if lam_prev is not None and abs(float(lam) - lam_prev) <= tol * abs(float(lam)):
            break
        lam_prev = float(lam)
        if i + 1 < iters:
            v = w / w.norm()
    return lam, v
