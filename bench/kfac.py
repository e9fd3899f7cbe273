"""K-FAC: factor construction against curvlinops, and a training iteration against AdamW's."""

import torch
import torch.nn.functional as F
from secondorder.optim.kfac import KFAC
from secondorder.problems import tiny_mlp, tiny_transformer
from torch import nn

from bench.timing import best_time


class _ClassesSecond(nn.Module):
    """(B, T, C) logits as (B, C, T), the layout curvlinops' CrossEntropyLoss expects."""

    def __init__(self, lm: nn.Module):
        super().__init__()
        self.lm = lm

    def forward(self, idx):
        return self.lm(idx).transpose(1, 2)


def _cases(device, dtype) -> list[dict]:
    """Each problem's model, a batch, logits as (N, C) with targets (N,), and curvlinops' view of it."""
    mlp = tiny_mlp(device=device, dtype=dtype)
    X, y = mlp.batch[0][:1024], mlp.batch[1][:1024]  # (1024, 64), (1024,)
    lm = tiny_transformer(device=device, dtype=dtype, batch_size=32)
    idx, nxt = lm.batch  # (B, T), (B, T)
    return [
        dict(case=f"tiny_mlp, batch {X.shape[0]}", model=mlp.model, logits_of=mlp.model, x=X, y=y,
             anchor_model=mlp.model, anchor_y=y),
        dict(case=f"tiny_transformer, batch {idx.shape[0]}×{idx.shape[1]}", model=lm.model,
             logits_of=lambda t: lm.model(t).flatten(0, 1), x=idx, y=nxt.flatten(),  # (B·T, C), (B·T,)
             anchor_model=_ClassesSecond(lm.model), anchor_y=nxt),
    ]


def _factor_rows(cases, device, repeat):
    try:
        from curvlinops import KFACLinearOperator  # a test-only dependency
    except ImportError:
        return [dict(benchmark="K-FAC factors vs curvlinops", case="-", note="curvlinops not installed")]
    rows = []
    for c in cases:
        opt = KFAC(c["model"])
        gen = torch.Generator(device=device).manual_seed(0)

        def ours(c=c, opt=opt, gen=gen):
            opt.update_factors(c["logits_of"](c["x"]), generator=gen)

        params = [p for m in c["model"].modules() if isinstance(m, nn.Linear) for p in m.parameters()]
        op = KFACLinearOperator(c["anchor_model"], nn.CrossEntropyLoss(), params, [(c["x"], c["anchor_y"])],
                                fisher_type="mc", separate_weight_and_bias=False, check_deterministic=False)
        t_ours = best_time(ours, repeat=repeat, device=device)
        opt.remove_hooks()  # so that the anchor's forwards are not recorded
        t_anchor = best_time(op.compute_kronecker_factors, repeat=repeat, device=device)
        rows.append(dict(benchmark="K-FAC factors, forward + sampled-label backward: ours vs curvlinops "
                         "KFACLinearOperator (mc)", case=f"{c['case']}, {device}", ours=t_ours * 1e3,
                         anchor=t_anchor * 1e3, ratio=t_ours / t_anchor, target="≤ 1", note="ms per batch"))
    return rows


def _iteration(c: dict, opt, gen=None):
    """One training iteration; with a generator, also K-FAC's sampled-label factor update."""
    def run():
        opt.zero_grad()
        logits = c["logits_of"](c["x"])  # (N, C)
        if gen is not None:
            opt.update_factors(logits, generator=gen)
        F.cross_entropy(logits, c["y"]).backward()
        opt.step()
    return run


def _step_rows(cases, device, inv_period: int, repeat: int):
    rows = []
    for c in cases:
        model = c["model"]
        initial = {k: v.clone() for k, v in model.state_dict().items()}
        kfac = KFAC(model, lr=1e-3, inv_period=inv_period)  # a small lr: timing only, keep it finite
        gen = torch.Generator(device=device).manual_seed(0)
        # number=inv_period times one full period, so each timing includes one eigendecomposition.
        t_ours = best_time(_iteration(c, kfac, gen), repeat=repeat, number=inv_period, device=device)
        kfac.remove_hooks()
        model.load_state_dict(initial)
        adamw = torch.optim.AdamW(model.parameters(), lr=1e-3)
        t_anchor = best_time(_iteration(c, adamw), repeat=repeat, number=inv_period, device=device)
        model.load_state_dict(initial)
        rows.append(dict(benchmark="training iteration (forward, backward, step): KFAC vs AdamW",
                         case=f"{c['case']}, factors every step, eigh every {inv_period}, {device}",
                         ours=t_ours * 1e3, anchor=t_anchor * 1e3, ratio=t_ours / t_anchor,
                         target="info", note="ms per iteration"))
    return rows


def run(device="cpu", dtype=torch.float32, inv_period: int = 10, repeat: int = 5) -> list[dict]:
    cases = _cases(device, dtype)
    return _factor_rows(cases, device, 2 * repeat) + _step_rows(cases, device, inv_period, repeat)


if __name__ == "__main__":
    from bench.__main__ import print_table

    print_table(run())
