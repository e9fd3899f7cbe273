"""Structured optimizers: Newton–Schulz against torch.optim.Muon and bare matmuls; step time / AdamW's."""

import torch
from secondorder.matrix_functions import MUON_COEFFICIENTS, newton_schulz
from secondorder.optim.muon import Muon, split_muon_params
from secondorder.optim.shampoo import Shampoo
from secondorder.optim.soap import SOAP
from secondorder.problems import build_mlp, tiny_transformer
from torch import nn

from bench.timing import best_time, interleaved_best


def _bare_matmuls(X: torch.Tensor, steps: int = 5):
    """The 3·steps products of Newton–Schulz on fixed operands, without the polynomial's additions."""
    r = min(X.shape)
    X = X if X.shape[0] == r else X.T.contiguous()  # (r, c)
    A = X @ X.T  # (r, r)

    def run():
        for _ in range(steps):
            X @ X.T, A @ A, A @ X

    return run


def newton_schulz_rows(shapes, device, dtype=torch.float32) -> list[dict]:
    rows = []
    for shape in shapes:
        gen = torch.Generator(device=device).manual_seed(0)
        G = torch.randn(shape, generator=gen, device=device, dtype=dtype)
        def muon_step(make, G=G):
            """A fresh one-parameter optimizer's ``step`` on the fixed gradient ``G``."""
            W = nn.Parameter(torch.zeros_like(G))
            W.grad = G
            return make([W]).step

        # The same work on both sides: momentum, Nesterov, five bfloat16 Newton–Schulz steps, update.
        t = interleaved_best({
            "torch": muon_step(lambda p: torch.optim.Muon(p, lr=1e-3)),
            "step": muon_step(lambda p: Muon(p, lr=1e-3, ns_dtype=torch.bfloat16)),
            "ours": lambda G=G: newton_schulz(G),
            "bf16": lambda G=G: newton_schulz(G.bfloat16()),
            "matmuls": _bare_matmuls(G)}, rounds=3, number=10, device=device)
        t_torch, t_step, t_ours, t_bf16, t_mm = (t[k] for k in ("torch", "step", "ours", "bf16", "matmuls"))
        case = f"{shape[0]}×{shape[1]}, {str(dtype).removeprefix('torch.')}, {device}"
        rows += [
            dict(benchmark="Muon step (ns_dtype=bfloat16) vs torch.optim.Muon step", case=case, ours=t_step,
                 anchor=t_torch, ratio=t_step / t_torch, target="<= 1.1",
                 note="same work: momentum, Nesterov, 5 bfloat16 Newton–Schulz steps, update (s)"),
            dict(benchmark="newton_schulz (5 steps) vs torch.optim.Muon step", case=case, ours=t_ours,
                 anchor=t_torch, ratio=t_ours / t_torch, target="info",
                 note="ours in the parameter's dtype, torch's in bfloat16 (s)"),
            dict(benchmark="newton_schulz in bfloat16 vs torch.optim.Muon step", case=case, ours=t_bf16,
                 anchor=t_torch, ratio=t_bf16 / t_torch, target="info",
                 note="the public function checks G for NaN/inf first: one host synchronisation (s)"),
            dict(benchmark="newton_schulz vs its 15 matmuls alone", case=case, ours=t_ours, anchor=t_mm,
                 ratio=t_ours / t_mm, target="<= 1.3",
                 note=f"{MUON_COEFFICIENTS}: overhead of normalization and polynomial (s)"),
        ]
    return rows


def _optimizers(model: nn.Module) -> dict:
    muon, adamw = split_muon_params(model, exclude=("head",))
    return {
        "AdamW": lambda: torch.optim.AdamW(model.parameters(), lr=1e-3),
        "Shampoo": lambda: Shampoo(model.parameters(), lr=1e-3),
        "SOAP": lambda: SOAP(model.parameters(), lr=1e-3),
        "Muon": lambda: Muon(muon, lr=0.02, adamw_params=adamw),
    }


def step_time_rows(name: str, model: nn.Module, device, frequency: int = 10) -> list[dict]:
    """Time ``optimizer.step()`` alone on fixed gradients, averaged over ``frequency`` steps.

    Averaging over one whole precondition period amortizes Shampoo's roots and SOAP's refresh.
    """
    gen = torch.Generator(device=device).manual_seed(0)
    for p in model.parameters():
        p.grad = 1e-3 * torch.randn(p.shape, generator=gen, device=device, dtype=p.dtype)
    times = {}
    for label, make in _optimizers(model).items():
        opt = make()
        times[label] = best_time(opt.step, repeat=3, number=frequency, device=device)
    n = sum(p.numel() for p in model.parameters())
    return [dict(benchmark="optimizer step time / AdamW step time",
                 case=f"{label}, {name} (n={n:,}), {device}",
                 ours=times[label], anchor=times["AdamW"], ratio=times[label] / times["AdamW"],
                 target="info", note=f"precondition_frequency {frequency}, float32 (s per step)")
            for label in ("Shampoo", "SOAP", "Muon")]


def run(device="cpu") -> list[dict]:
    big = torch.device(device).type == "cuda"
    shapes = [(1024, 4096), (4096, 4096)] if big else [(256, 1024), (512, 512)]
    rows = newton_schulz_rows(shapes, device)
    transformer = tiny_transformer(dtype=torch.float32, device=device).model  # d_model 64, 2 layers
    rows += step_time_rows("tiny transformer", transformer, device)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        mlp = build_mlp((512, 1024, 512, 10)).to(device)  # about 1.06M parameters
    rows += step_time_rows("MLP 512-1024-512-10", mlp, device)
    return rows


if __name__ == "__main__":
    from bench.__main__ import print_table

    print_table(run())
