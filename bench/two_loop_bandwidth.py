"""Two-loop recursion: achieved memory bandwidth against the 4·m·n·bytes floor and a plain copy."""

import torch
from secondorder.two_loop import two_loop_recursion

from bench.timing import best_time


def _one(n: int, m: int, device, dtype) -> dict:
    gen = torch.Generator(device=device).manual_seed(0)
    S = [torch.randn(n, generator=gen, device=device, dtype=dtype) for _ in range(m)]
    Y = [s + 0.1 * torch.randn(n, generator=gen, device=device, dtype=dtype) for s in S]
    g = torch.randn(n, generator=gen, device=device, dtype=dtype)
    itemsize = g.element_size()
    floor_bytes = 4 * m * n * itemsize          # each s_i and y_i read once per loop
    t = best_time(lambda: two_loop_recursion(g, S, Y), device=device)
    # Anchor: the bandwidth of a large copy (read + write) of the same total size on this device.
    src = torch.ones(2 * m * n, device=device, dtype=dtype)
    dst = torch.empty_like(src)
    t_copy = best_time(lambda: dst.copy_(src), device=device)
    copy_bw = 2 * src.numel() * itemsize / t_copy
    achieved = floor_bytes / t
    return dict(benchmark="two-loop bandwidth (4·m·n·bytes / time) vs copy bandwidth, GB/s",
                case=f"n={n:.0e}, m={m}, {str(dtype).removeprefix('torch.')}, {device}",
                ours=achieved / 1e9, anchor=copy_bw / 1e9, ratio=achieved / copy_bw,
                target="info (1.0 = at the floor)", note=f"{t * 1e3:.1f} ms per call")


def run(sizes=(10**6, 10**7), m: int = 10, device="cpu", dtype=torch.float32) -> list[dict]:
    return [_one(int(n), m, device, dtype) for n in sizes]
