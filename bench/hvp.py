"""Hessian-vector product cost in gradients, per method, beside curvlinops' HessianLinearOperator.

``python -m bench.hvp [--device cuda]``. The "ours" column is HVP time / gradient time for
``model_hvp`` with each method on two ~1M-parameter tanh MLPs and on the configuration of the
field notes (784-1024-512-10, B=256, float64; see :func:`matmul_floor` for the ratio their matrix
products alone imply); the anchor is the same ratio for curvlinops' ``HessianLinearOperator @ v``
(forward over reverse: ``torch.func.jvp`` of ``jacrev``, under ``vmap``), measured in the same run.
A last row per case times :class:`~secondorder.curvature.HessianOperator` with its defaults, which keeps
the gradient's graph between products at one point (what CG, power iteration and Lanczos do): one
product, and ten from a fresh operator with the graph's construction included.

The gradient is timed as in training, ``torch.autograd.grad`` of ``loss_fn(model(X), y)`` on the same
model, loss and batch. A plain double backward written out by hand (two ``torch.autograd.grad``
calls, no library code) is timed beside it, so the note shows the library's own overhead. Every
candidate gets the same warm-up call; times interleave the candidates over several rounds and keep
each one's best, so a machine shared with other work penalizes them alike.
"""

import argparse
from functools import partial

import torch
from secondorder.curvature import HVP_METHODS, HessianOperator, model_hvp
from secondorder.problems import build_mlp
from torch import nn

from bench.timing import interleaved_best

#: Two ~1M-parameter tanh MLPs: a deep one, and an MNIST-shaped one whose first layer dominates.
ARCHITECTURES = {"deep": (256, 1024, 512, 256, 10), "wide-input": (784, 1024, 256, 10)}
BATCH = 512
#: The configuration of the field notes' measurement (1.33M parameters), float64 only.
FIELD_NOTES = ("field-notes", (784, 1024, 512, 10), 256, (torch.float64,))
DEFAULT = HVP_METHODS[0]


def matmul_floor(sizes) -> float:
    """Matrix-multiply work of a double-backward HVP over that of a gradient, for an MLP.

    Per ``Linear`` layer (one unit = one ``B × in × out`` product) a gradient takes the forward
    product and the weight gradient, plus the input gradient except in the first layer: 2 or 3
    units. Double backward adds the graph of the first backward pass: 4 units in the first layer
    (forward, weight gradient, and the second pass through both), 9 in the others. The ratio is a
    floor that elementwise work (tanh, softmax) only raises. Forward-over-reverse does more in
    torch 2.13: the input has no tangent, and the forward-mode formulas of ``addmm``/``mm`` fill
    that gap with a zero tensor that is multiplied for real, two more units in the first layer (6).
    """
    units = [(4, 2) if i == 0 else (9, 3) for i in range(len(sizes) - 1)]
    work = [a * b for a, b in zip(sizes[:-1], sizes[1:])]
    return sum(u[0] * w for u, w in zip(units, work)) / sum(u[1] * w for u, w in zip(units, work))


def _candidates(model, X, y, vectors) -> dict:
    """The functions to time: one gradient, a hand-written double backward, ``model_hvp`` by each
    method, curvlinops' matvec; all on the same model, loss and batch."""
    params, loss_fn = list(model.parameters()), nn.CrossEntropyLoss()

    def plain_double_backward():
        g = torch.autograd.grad(loss_fn(model(X), y), params, create_graph=True)
        return torch.autograd.grad(g, params, grad_outputs=vectors)

    flat = torch.cat([v.reshape(-1) for v in vectors])
    H = HessianOperator(model, loss_fn, (X, y))               # defaults: the gradient graph is kept
    H @ flat                                                  # built here, once

    def ten_products_at_one_point():          # what power iteration, Lanczos or CG do at one point
        fresh = HessianOperator(model, loss_fn, (X, y))
        for _ in range(10):
            fresh @ flat

    fns = {"gradient": lambda: torch.autograd.grad(loss_fn(model(X), y), params),
           "plain": plain_double_backward, "operator": partial(H.__matmul__, flat),
           "operator, 10 products": ten_products_at_one_point}
    for method in HVP_METHODS:
        fns[method] = partial(model_hvp, model, loss_fn, (X, y), vectors, method=method)
    try:
        from curvlinops import HessianLinearOperator
    except ImportError:  # the anchor is optional (the `test` extra installs it)
        return fns
    H = HessianLinearOperator(model, loss_fn, params, [(X, y)], check_deterministic=False)
    fns["curvlinops"] = partial(H.__matmul__, torch.cat([v.reshape(-1) for v in vectors]))
    return fns


def _flat(tensors) -> torch.Tensor:
    return torch.cat([t.reshape(-1) for t in tensors])  # (n,)


def _cases(dtypes):
    for arch, sizes in ARCHITECTURES.items():
        for dtype in dtypes:
            yield arch, sizes, BATCH, dtype
    name, sizes, batch, fn_dtypes = FIELD_NOTES
    for dtype in fn_dtypes:
        yield name, sizes, batch, dtype


def run(device="cpu", dtypes=(torch.float32, torch.float64), rounds: int = 5) -> list[dict]:
    rows = []
    for arch, sizes, batch, dtype in _cases(dtypes):
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            model = build_mlp(sizes).to(dtype=dtype, device=device)
        gen = torch.Generator().manual_seed(1)
        X = torch.randn(batch, sizes[0], generator=gen, dtype=dtype).to(device)  # (B, d)
        y = torch.randint(0, sizes[-1], (batch,), generator=gen).to(device)  # (B,)
        vectors = [torch.randn(p.shape, generator=gen, dtype=dtype).to(device) for p in model.parameters()]
        n = sum(v.numel() for v in vectors)
        fns = _candidates(model, X, y, vectors)
        t = interleaved_best(fns, rounds, device=device)
        anchor = t["curvlinops"] / t["gradient"] if "curvlinops" in t else float("nan")
        exact = _flat(fns[DEFAULT]())  # (n,)
        for method in HVP_METHODS:
            ours = t[method] / t["gradient"]
            note = f"gradient {t['gradient'] * 1e3:.1f} ms, HVP {t[method] * 1e3:.1f} ms"
            if method == DEFAULT:
                note += (f", matmul floor {matmul_floor(sizes):.2f}, "
                         f"hand-written double backward {t['plain'] / t['gradient']:.2f}")
            else:
                err = torch.linalg.vector_norm(_flat(fns[method]()) - exact) / torch.linalg.vector_norm(exact)
                note += f", relative difference to {DEFAULT} {float(err):.1e}"
            rows.append(dict(benchmark="HVP time / gradient time (anchor: curvlinops HessianLinearOperator)",
                             case=f"{method}, {arch} tanh MLP {'-'.join(map(str, sizes))} "
                                  f"(n={n / 1e6:.2f}M), B={batch}, "
                                  f"{str(dtype).removeprefix('torch.')}, {device}",
                             ours=ours, anchor=anchor, ratio=ours / anchor,
                             target="≤ 2.2" if method == DEFAULT else "info", note=note))
        ours = t["operator"] / t["gradient"]
        amortized = t["operator, 10 products"] / 10 / t["gradient"]
        rows.append(dict(benchmark="HVP time / gradient time (anchor: curvlinops HessianLinearOperator)",
                         case=f"HessianOperator @ v (graph kept at one point), {arch} tanh MLP "
                              f"{'-'.join(map(str, sizes))} (n={n / 1e6:.2f}M), B={batch}, "
                              f"{str(dtype).removeprefix('torch.')}, {device}",
                         ours=ours, anchor=anchor, ratio=ours / anchor, target="≤ 2.2",
                         note=f"one product {t['operator'] * 1e3:.1f} ms; 10 products at one point, graph "
                              f"included: {amortized:.2f} gradients each"))
    return rows


def main(argv=None) -> int:
    from bench.__main__ import print_table

    parser = argparse.ArgumentParser(prog="python -m bench.hvp", description=__doc__)
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    args = parser.parse_args(argv)
    print(f"# HVP cost — torch {torch.__version__}, {args.device}, {torch.get_num_threads()} threads\n")
    print_table(run(device=args.device))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
