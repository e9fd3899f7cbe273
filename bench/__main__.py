"""``python -m bench [--device cuda] [--quick] [--only PART ...] [--out FILE]``: the benchmark table.

Every row compares ours with an anchor measured in the same run on the same machine, so the ratio
is meaningful even where absolute times are not. Each part's rows are printed (and appended to
``--out``) as soon as that part ends, so a run stopped half-way keeps what it measured; a part that
raises becomes one row naming the error, and the others still run.
"""

import argparse
import platform
import sys
import time
import traceback

import torch

from bench import (
    demos,
    hvp,
    kfac,
    lbfgs_step,
    mgh,
    minimize_vs_scipy,
    shampoo_soap,
    spectral,
    structured,
    two_loop_bandwidth,
)

COLUMNS = ["benchmark", "case", "ours", "anchor", "ratio", "target", "note"]


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.3g}"
    return str(v).replace("|", "/").replace("\n", " ")


def format_rows(rows: list[dict], header: bool = True) -> str:
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)] if header else []
    lines += ["| " + " | ".join(_fmt(r.get(c, "")) for c in COLUMNS) + " |" for r in rows]
    return "\n".join(lines)


def print_table(rows: list[dict]) -> None:
    print(format_rows(rows), flush=True)


def parts(device: str, quick: bool) -> dict:
    """The benchmark parts by name, each a function returning rows."""
    sizes = (10**5, 10**6) if quick else (10**5, 10**6, 10**7)
    return {"quasi-newton": lambda: minimize_vs_scipy.run() if device == "cpu" else [],
            "mgh": lambda: mgh.run() if device == "cpu" else [],
            "lbfgs-step": lambda: lbfgs_step.run(sizes=(10, 1000) + sizes if quick else (10, 50, 1000) + sizes,
                                                 fresh_sizes=(50,) if quick else (10, 50, 1000), device=device),
            "two-loop": lambda: two_loop_bandwidth.run(sizes=sizes[1:], device=device),
            "hvp": lambda: hvp.run(device=device),
            "spectral": lambda: spectral.run(device=device),
            "kfac": lambda: kfac.run(device=device),
            "structured": lambda: structured.run(device=device),
            "shampoo-soap": lambda: shampoo_soap.run(device=device),
            "demos": lambda: demos.run(device=device)}


def machine(device: str) -> str:
    if device == "cuda":
        return torch.cuda.get_device_name()
    return platform.processor() or "cpu"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--quick", action="store_true", help="smaller sizes, for a smoke run")
    parser.add_argument("--only", nargs="+", metavar="PART", choices=list(parts("cpu", True)),
                        help="run these parts only (default: all)")
    parser.add_argument("--out", metavar="FILE", help="also write the table to FILE, part by part")
    args = parser.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda needs a CUDA device; none found")
    title = (f"# secondorder benchmarks — torch {torch.__version__}, {args.device} ({machine(args.device)}), "
             f"{torch.get_num_threads()} threads\n\n" + format_rows([]) + "\n")
    out = open(args.out, "w", encoding="utf-8") if args.out else None
    print(title, end="", flush=True)
    if out:
        out.write(title)
        out.flush()
    failed = 0
    for name, part in parts(args.device, args.quick).items():
        if args.only and name not in args.only:
            continue
        print(f"running: {name} ...", file=sys.stderr, flush=True)
        start = time.perf_counter()
        try:
            rows = part()
        except Exception as exc:  # one broken part must not cost the others' numbers
            failed += 1
            traceback.print_exc()
            rows = [dict(benchmark=name, case="failed", note=f"{type(exc).__name__}: {exc}")]
        print(f"  {name}: {time.perf_counter() - start:.0f} s", file=sys.stderr, flush=True)
        if rows:
            text = format_rows(rows, header=False) + "\n"
            print(text, end="", flush=True)
            if out:
                out.write(text)
                out.flush()
    if out:
        out.close()
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
