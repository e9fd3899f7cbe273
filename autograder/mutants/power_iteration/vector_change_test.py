"""Stops when successive vectors agree, ‖w/‖w‖ − v‖ ≤ tol, instead of testing the eigenvalue."""
EXPECT = "compares successive vectors"
import torch


def power_iteration(matvec, v0, iters=100, tol=1e-6):
    v = v0 / v0.norm()
    for i in range(iters):
        w = matvec(v)
        lam = torch.dot(v, w)
        if float(w.norm()) == 0.0:
            break
        v_next = w / w.norm()
        if float((v_next - v).norm()) <= tol:
            break
        if i + 1 < iters:
            v = v_next
    return lam, v
