"""Timing helpers shared by the benchmarks."""

import time

import torch


def synchronize(device) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def best_time(fn, repeat: int = 5, number: int = 1, device="cpu") -> float:
    """Best-of-``repeat`` wall time in seconds of ``number`` calls of ``fn`` (after one warm-up call)."""
    fn()
    synchronize(device)
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        for _ in range(number):
            fn()
        synchronize(device)
        best = min(best, (time.perf_counter() - t0) / number)
    return best
