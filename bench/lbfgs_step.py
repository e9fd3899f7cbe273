"""Time per L-BFGS iteration: ``secondorder.optim.LBFGS`` against ``torch.optim.LBFGS``.

Two kinds of rows, both without a line search, float32 and ``history_size = 10``:

* **steady state** (every size): both minimize the same diagonal quadratic ``0.5 * sum(a * x**2)``
  (``a`` log-spaced in [1, 1e3]; the closure writes the gradient by hand, so it is cheap next to the
  optimizers' own work) from the same start, with tolerances 0, so every iteration runs. Each
  optimizer first fills its history in one untimed step; then timed steps of ``iters`` iterations
  alternate between the two (so slow phases of a shared machine hit both) and the best step counts.
  At small n this is the optimizers' fixed cost per iteration; at large n their memory traffic.
* **from scratch** (small n, where fixed costs are everything): what a user of a small model pays.
  A new optimizer takes one ``step`` of 20 iterations (history filling up included) on an
  ill-conditioned least-squares problem whose closure runs autograd (``zero_grad``, forward,
  ``backward``), so the closure's own cost is in both times, as it is in a real run.

Run alone: ``python -m bench.lbfgs_step [--device cuda]``.
"""

import argparse
import time

import torch
from secondorder.optim import LBFGS

from bench.timing import synchronize

#: Targets of the ratio ours / torch: no slower where fixed costs dominate, faster where bandwidth does.
SMALL, LARGE = 1e3, 1e6


def _target(n: int) -> str:
    return "≤ 1.1" if n <= SMALL else ("≤ 0.9" if n >= LARGE else "≤ 1.0")


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
    before = state.get("n_iter", 0)
    synchronize(device)
    t0 = time.perf_counter()
    opt.step(closure)
    synchronize(device)
    return (time.perf_counter() - t0) / (state["n_iter"] - before)


def _fresh(cls, n, m, iters, device, dtype):
    """A new optimizer on least squares ½‖A x - b‖² / N (A: 2n × n, condition ~1e3) with autograd."""
    gen = torch.Generator().manual_seed(0)
    A = (torch.randn(2 * n, n, generator=gen) * torch.logspace(0, 1.5, n)).to(device, dtype)  # (2n, n)
    b = torch.randn(2 * n, generator=gen).to(device, dtype)                                  # (2n,)
    x = torch.nn.Parameter(torch.zeros(n, device=device, dtype=dtype))
    opt = cls([x], history_size=m, max_iter=iters, tolerance_grad=0.0, tolerance_change=0.0)

    def closure():
        opt.zero_grad()
        loss = 0.5 * (A @ x - b).square().mean()
        loss.backward()
        return loss

    return opt, closure, opt.state[x]


def _row(kind, n, m, dtype, device, t_ours, t_torch, note):
    return dict(benchmark=f"LBFGS time per iteration vs torch.optim.LBFGS ({kind})",
                method=f"LBFGS(history_size={m}, line_search_fn=None)",
                case=f"n={n:.0e}, m={m}, {str(dtype).removeprefix('torch.')}, {device}",
                n=n, device=str(device), kind=kind, ours_s=t_ours, torch_s=t_torch, ratio=t_ours / t_torch,
                ours=t_ours * 1e3, anchor=t_torch * 1e3, target=_target(n),
                note=f"ms per iteration, {note}, {torch.get_num_threads()} threads")


def run(sizes=(10, 50, 1e3, 1e5, 1e6, 1e7), device="cpu", m: int = 10, iters: int = 10, repeat: int = 5,
        dtype=torch.float32, fresh_sizes=(10, 50, 1e3), fresh_repeat: int = 15) -> list[dict]:
    """Rows of seconds per iteration, ours and torch's, and ours / torch: steady state at every size
    in ``sizes``, then a step from scratch at each of ``fresh_sizes``."""
    rows = []
    # Iterates shrink towards 0; denormal floats would slow both optimizers by an order of magnitude.
    torch.set_flush_denormal(True)
    for n in (int(s) for s in sizes):
        # Small sizes cost microseconds per iteration: more repeats of more iterations.
        reps, its = (repeat * 4, iters * 4) if n <= SMALL else (repeat, iters)
        ours, theirs = (_setup(cls, n, m, its, device, dtype) for cls in (LBFGS, torch.optim.LBFGS))
        t_ours, t_torch = float("inf"), float("inf")
        for _ in range(reps):
            t_ours = min(t_ours, _timed_step(*ours, device))
            t_torch = min(t_torch, _timed_step(*theirs, device))
        rows.append(_row("steady state", n, m, dtype, device, t_ours, t_torch,
                         f"history full, best of {reps} steps of {its} iterations"))
        del ours, theirs
    fresh_iters = 20
    for n in (int(s) for s in fresh_sizes):
        t_ours, t_torch = float("inf"), float("inf")
        for _ in range(fresh_repeat):
            t_ours = min(t_ours, _timed_step(*_fresh(LBFGS, n, m, fresh_iters, device, dtype), device))
            t_torch = min(t_torch, _timed_step(*_fresh(torch.optim.LBFGS, n, m, fresh_iters, device, dtype),
                                               device))
        rows.append(_row("from scratch", n, m, dtype, device, t_ours, t_torch,
                         f"a new optimizer's first step of {fresh_iters} iterations with an autograd "
                         f"closure, best of {fresh_repeat}"))
    torch.set_flush_denormal(False)
    return rows


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    for row in run(device=args.device):
        print(f"{row['kind']:13s} n={row['n']:.0e}  ours {row['ours_s'] * 1e3:8.3f} ms  "
              f"torch {row['torch_s'] * 1e3:8.3f} ms  ratio {row['ratio']:.2f}  (target {row['target']})")
