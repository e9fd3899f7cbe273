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


def interleaved_best(fns: dict, rounds: int = 5, number: int = 1, device="cpu") -> dict:
    """Best time in seconds per call of each of ``fns`` (name -> function), the candidates interleaved.

    Each round times every candidate once (``best_time`` with 3 repeats of ``number`` calls), so a
    machine whose speed drifts (a GPU clocking down under sustained load, a CPU shared with other
    work) penalizes all of them alike instead of whichever ran last.
    """
    best = dict.fromkeys(fns, float("inf"))
    for _ in range(rounds):
        for name, fn in fns.items():
            best[name] = min(best[name], best_time(fn, repeat=3, number=number, device=device))
    return best
