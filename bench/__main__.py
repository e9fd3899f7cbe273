"""``python -m bench [--device cuda] [--quick]``: print the benchmark table in markdown.

Every row compares ours with an anchor measured in the same run on the same machine, so the ratio
is meaningful even where absolute times are not.
"""

import argparse
import platform
import sys

import torch

from bench import hvp, kfac, lbfgs_step, minimize_vs_scipy, spectral, structured, two_loop_bandwidth


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.3g}"
    return str(v)


def print_table(rows: list[dict]) -> None:
    cols = ["benchmark", "case", "ours", "anchor", "ratio", "target", "note"]
    print("| " + " | ".join(cols) + " |")
    print("|" + "---|" * len(cols))
    for r in rows:
        print("| " + " | ".join(_fmt(r.get(c, "")) for c in cols) + " |")
    sys.stdout.flush()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--quick", action="store_true", help="smaller sizes, for a smoke run")
    args = parser.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda needs a CUDA device; none found")
    sizes = (10**5, 10**6) if args.quick else (10**5, 10**6, 10**7)
    name = torch.cuda.get_device_name() if args.device == "cuda" else platform.processor() or "cpu"
    print(f"# secondorder benchmarks — torch {torch.__version__}, {args.device} ({name}), "
          f"{torch.get_num_threads()} threads\n")
    parts = [("quasi-Newton vs scipy", lambda: minimize_vs_scipy.run() if args.device == "cpu" else []),
             ("L-BFGS step", lambda: lbfgs_step.run(sizes=sizes, device=args.device)),
             ("two-loop bandwidth", lambda: two_loop_bandwidth.run(sizes=sizes[1:], device=args.device)),
             ("Hessian-vector products", lambda: hvp.run(device=args.device)),
             ("spectral", lambda: spectral.run(device=args.device)),
             ("K-FAC", lambda: kfac.run(device=args.device)),
             ("Shampoo, SOAP, Muon", lambda: structured.run(device=args.device))]
    rows = []
    for name, part in parts:
        print(f"running: {name} ...", file=sys.stderr, flush=True)
        rows += part()
    print_table(rows)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
