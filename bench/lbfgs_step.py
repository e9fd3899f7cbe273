"""Time per L-BFGS iteration: ``secondorder.optim.LBFGS`` against ``torch.optim.LBFGS``.

Both minimize the same diagonal quadratic ``0.5 * sum(a * x**2)`` (``a`` log-spaced in [1, 1e3]; the
closure writes the gradient by hand, so it is cheap next to the optimizers' own work) from the same
start, with ``history_size`` pairs, no line search and tolerances 0, so every iteration runs. Each
optimizer first fills its history in one untimed step; then timed steps of ``iters`` iterations
alternate between the two (so slow phases of a shared machine hit both) and the best step counts.

Run alone: ``python -m bench.lbfgs_step [--device cuda]``.
"""

import argparse
import time

import torch
from secondorder.optim import LBFGS

from bench.timing import synchronize


def _setup(cls, n, m, iters, device, dtype):
    a = torch.logspace(0, 3, n, device=device, dtype=dtype)  # (n,)
    x = torch.nn.Parameter(torch.ones(n, device=device, dtype=dtype))
    x.grad = torch.zeros_like(x)
    opt = cls([x], history_size=m, max_iter=m + 2, max_eval=10**9, tolerance_grad=0.0,
              tolerance_change=0.0)

    def closure():
        # The gradient a ⊙ x by hand, into the existing .grad: no autograd graph and no allocation,
        # so the time left is the optimizers' own.
        with torch.no_grad():
            torch.mul(a, x, out=x.grad)
            return 0.5 * torch.dot(x, x.grad)

    opt.step(closure)                   # untimed: fills the history
    opt.param_groups[0]["max_iter"] = iters
    return opt, closure, opt.state[x]


def _timed_step(opt, closure, state, device) -> float:
    """Seconds per iteration of one step (its first closure call included, as a user pays it)."""
    before = state["n_iter"]
    synchronize(device)
    t0 = time.perf_counter()
    opt.step(closure)
    synchronize(device)
    return (time.perf_counter() - t0) / (state["n_iter"] - before)


def run(sizes=(1e5, 1e6, 1e7), device="cpu", m: int = 10, iters: int = 10, repeat: int = 5,
        dtype=torch.float32) -> list[dict]:
    """One row per size: seconds per iteration of ours and torch's, and ours / torch."""
    rows = []
    # Iterates shrink towards 0; denormal floats would slow both optimizers by an order of magnitude.
    torch.set_flush_denormal(True)
    for n in (int(s) for s in sizes):
        ours, theirs = (_setup(cls, n, m, iters, device, dtype) for cls in (LBFGS, torch.optim.LBFGS))
        t_ours, t_torch = float("inf"), float("inf")
        for _ in range(repeat):
            t_ours = min(t_ours, _timed_step(*ours, device))
            t_torch = min(t_torch, _timed_step(*theirs, device))
        rows.append(dict(
            benchmark="LBFGS time per iteration vs torch.optim.LBFGS",
            method=f"LBFGS(history_size={m}, line_search_fn=None)",
            case=f"n={n:.0e}, m={m}, {str(dtype).removeprefix('torch.')}, {device}",
            n=n, device=str(device), ours_s=t_ours, torch_s=t_torch, ratio=t_ours / t_torch,
            ours=t_ours * 1e3, anchor=t_torch * 1e3, target="≤ 1.0",
            note=f"ms per iteration, best of {repeat} steps of {iters} iterations, "
                 f"{torch.get_num_threads()} threads"))
        del ours, theirs
    torch.set_flush_denormal(False)
    return rows


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    for row in run(device=args.device):
        print(f"n={row['n']:.0e}  ours {row['ours_s'] * 1e3:8.2f} ms  torch {row['torch_s'] * 1e3:8.2f} ms"
              f"  ratio {row['ratio']:.2f}")
