"""Always makes iters products: tol is never tested."""
EXPECT = "tol seems ignored"
import torch


def power_iteration(matvec, v0, iters=100, tol=1e-6):
    v = v0 / v0.norm()
    for i in range(iters):
        w = matvec(v)
        lam = torch.dot(v, w)
        if float(w.norm()) == 0.0:
            break
        if i + 1 < iters:
            v = w / w.norm()
    return lam, v
