r"""Cached training runs: the tiny transformer trained with AdamW, Shampoo, SOAP and Muon.

Section 07 compares the four optimizers on :func:`~secondorder.problems.tiny_transformer` (float32,
the same initialization and the same minibatches for every run) over a small grid of learning rates
each. A full comparison takes a few minutes on one CPU core, too long for a notebook's budget, so the
runs are stored in the package (``data/optimizer_runs.json``) and read with :func:`load_runs`; the
notebook re-runs the first steps live (:func:`train_runs` with ``steps=20``) to show that the cache
agrees with what the machine does now. Regenerate the cache with::

    python -m secondorder.experiments            # all runs, writes the packaged JSON
    python -m secondorder.experiments --steps 50 --out /tmp/runs.json

Every run starts from ``tiny_transformer(seed, init_dtype=torch.float32)`` and draws its minibatches
from a CPU generator seeded with ``seed``, so the losses are a deterministic function of the
configuration on one machine (float32 rounding may differ in the last digits between machines).
The runs advance in lockstep (step :math:`k` of every run before step :math:`k+1` of any), so a busy
machine slows all methods alike.
Times are wall-clock medians over the steps after the first, with ``threads`` intra-op threads:
``step_ms`` for a whole iteration (forward, backward, optimizer), ``opt_ms`` for ``optimizer.step()``
alone.

The optimizers (hyperparameters shared where they mean the same thing):

========  =================================================================================
adamw     ``torch.optim.AdamW``
shampoo   :class:`~secondorder.optim.Shampoo`, Adam grafting, roots every 10 steps
soap      :class:`~secondorder.optim.SOAP`, basis refreshed every 10 steps
muon      :class:`~secondorder.optim.Muon` for the hidden 2-D weights, AdamW (lr 3e-3) for
          embeddings, read-out, biases and norms
========  =================================================================================
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import statistics
import time
from importlib.resources import files
from pathlib import Path

import torch

from secondorder.optim import SOAP, Muon, Shampoo, split_muon_params
from secondorder.problems import tiny_transformer

METHODS = ("adamw", "shampoo", "soap", "muon")
#: Learning rates tried per method, three each (Muon's: the rate of its orthogonalized updates). Shampoo's best
#: in the cached runs is the largest of its three.
LEARNING_RATES = {"adamw": (1e-3, 3e-3, 1e-2), "shampoo": (3e-3, 1e-2, 3e-2), "soap": (1e-3, 3e-3, 1e-2),
                  "muon": (0.01, 0.02, 0.05)}
#: The model and data of every run (keyword arguments of :func:`~secondorder.problems.tiny_transformer`).
MODEL = dict(context=64, d_model=64, n_heads=4, n_layers=2)
BATCH_SIZE = 32
STEPS = 300
BETAS = (0.9, 0.95)
WEIGHT_DECAY = 0.01
MUON_ADAMW_LR = 3e-3
#: Steps between validation losses.
EVAL_EVERY = 50
CACHE = "optimizer_runs.json"
FORMAT = 1


def make_optimizer(method: str, model: torch.nn.Module, lr: float) -> torch.optim.Optimizer:
    """The optimizer ``method`` (one of :data:`METHODS`) for ``model`` with learning rate ``lr``."""
    common = dict(lr=lr, weight_decay=WEIGHT_DECAY)
    if method == "adamw":
        return torch.optim.AdamW(model.parameters(), betas=BETAS, **common)
    if method == "shampoo":
        return Shampoo(model.parameters(), betas=BETAS, precondition_frequency=10, **common)
    if method == "soap":
        return SOAP(model.parameters(), betas=BETAS, precondition_frequency=10, **common)
    if method == "muon":
        muon, adamw = split_muon_params(model, exclude=("head",))
        return Muon(muon, adamw_params=adamw, adamw_lr=MUON_ADAMW_LR, adamw_betas=BETAS,
                    adamw_weight_decay=WEIGHT_DECAY, **common)
    raise ValueError(f"method must be one of {METHODS}, got {method!r}")


def train_runs(configs, steps: int = STEPS, seed: int = 0, threads: int | None = 1, log=None) -> list[dict]:
    """Train the tiny transformer once per ``(method, lr)`` in ``configs``, all runs in lockstep.

    Step ``k`` of every run is taken before step ``k + 1`` of any, so that a slow phase of a busy
    machine slows every method alike and the ratios of step times stay fair.

    Parameters
    ----------
    configs : iterable of (str, float)
        Pairs ``(method, lr)``, ``method`` one of :data:`METHODS`.
    steps : int
        Number of optimizer steps.
    seed : int
        Seed of the initialization and of the minibatch sequence (the same for every run).
    threads : int or None
        Intra-op threads during the runs (restored afterwards); ``None`` keeps the current setting.
        The default dtype is float32 during the runs (restored afterwards), whatever the caller's.
    log : callable, optional
        Called with one line per finished run.

    Returns
    -------
    list of dict
        One per config: ``method``, ``lr``, ``losses`` (training loss of each step's minibatch,
        before the step), ``val_steps`` and ``val_losses`` (validation loss every :data:`EVAL_EVERY`
        steps and at the end), ``step_ms`` and ``opt_ms`` (medians, see the module docstring),
        ``n_params``.
    """
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be a positive integer, got {steps!r}")
    configs = [(str(method), float(lr)) for method, lr in configs]
    for method, _ in configs:
        if method not in METHODS:
            raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    previous = torch.get_num_threads(), torch.get_default_dtype()
    if threads is not None:
        torch.set_num_threads(threads)
    # float32 throughout, whatever the caller's default dtype; the cached runs start from a float32 draw.
    torch.set_default_dtype(torch.float32)
    try:
        runs = []
        for method, lr in configs:
            problem = tiny_transformer(seed=seed, batch_size=BATCH_SIZE, dtype=torch.float32,
                                       init_dtype=torch.float32, **MODEL)
            runs.append(dict(problem=problem, opt=make_optimizer(method, problem.model, lr), out=dict(
                method=method, lr=lr, losses=[], val_steps=[], val_losses=[], n_params=problem.n),
                step_s=[], opt_s=[]))
        batches = runs[0]["problem"].batches(BATCH_SIZE, torch.Generator().manual_seed(seed)) if runs else iter(())
        for k, batch in zip(range(steps), batches):
            for run in runs:
                _step(run, k, batch)
        for run in runs:
            out = run["out"]
            out["val_steps"].append(len(out["losses"]))
            out["val_losses"].append(float(run["problem"].validation_loss()))
            timed = slice(1, None) if len(run["step_s"]) > 1 else slice(None)
            out["step_ms"] = 1e3 * statistics.median(run["step_s"][timed])
            out["opt_ms"] = 1e3 * statistics.median(run["opt_s"][timed])
            if log:
                log(f"{out['method']:8s} lr={out['lr']:<6g} final loss {out['losses'][-1]:.3f}, val "
                    f"{out['val_losses'][-1]:.3f}, {out['step_ms']:.1f} ms/step ({out['opt_ms']:.1f} ms in step())")
    finally:
        torch.set_num_threads(previous[0])
        torch.set_default_dtype(previous[1])
    return [run["out"] for run in runs]


def _step(run: dict, k: int, batch) -> None:
    """One timed training step of one run (nothing once its loss is no longer finite)."""
    problem, opt, out = run["problem"], run["opt"], run["out"]
    if out["losses"] and not math.isfinite(out["losses"][-1]):
        return
    if k % EVAL_EVERY == 0:
        out["val_steps"].append(k)
        out["val_losses"].append(float(problem.validation_loss()))
    t0 = time.perf_counter()
    opt.zero_grad(set_to_none=True)
    loss = problem.loss(problem.model, batch)
    loss.backward()
    t1 = time.perf_counter()
    opt.step()
    t2 = time.perf_counter()
    out["losses"].append(float(loss.detach()))
    run["step_s"].append(t2 - t0)
    run["opt_s"].append(t2 - t1)


def train_run(method: str, lr: float, steps: int = STEPS, seed: int = 0, threads: int | None = 1) -> dict:
    """One run of :func:`train_runs`: the tiny transformer trained by ``method`` at learning rate ``lr``."""
    return train_runs([(method, lr)], steps=steps, seed=seed, threads=threads)[0]


def compare_optimizers(methods=METHODS, steps: int = STEPS, seed: int = 0, threads: int | None = 1,
                       learning_rates: dict | None = None, log=None) -> dict:
    """Run every method at each of its learning rates; return the cache's content (see :func:`load_runs`)."""
    learning_rates = learning_rates or LEARNING_RATES
    configs = [(method, lr) for method in methods for lr in learning_rates[method]]
    runs = train_runs(configs, steps=steps, seed=seed, threads=threads, log=log)
    return dict(format=FORMAT, steps=steps, seed=seed, batch_size=BATCH_SIZE, model=dict(MODEL), dtype="float32",
                betas=list(BETAS), weight_decay=WEIGHT_DECAY, muon_adamw_lr=MUON_ADAMW_LR, eval_every=EVAL_EVERY,
                environment=dict(torch=torch.__version__, threads=threads, machine=platform.machine()),
                runs=runs)


def _rounded(cache: dict) -> dict:
    """Losses to 6 significant digits and times to 0.01 ms: a small file that diffs well."""
    out = dict(cache)
    out["runs"] = [dict(run, losses=[float(f"{v:.6g}") for v in run["losses"]],
                        val_losses=[float(f"{v:.6g}") for v in run["val_losses"]],
                        step_ms=round(run["step_ms"], 2), opt_ms=round(run["opt_ms"], 2)) for run in cache["runs"]]
    return out


def cache_path() -> Path:
    """Where the packaged cache lives (inside the installed package)."""
    return Path(str(files("secondorder") / "data" / CACHE))


def load_runs(path: str | Path | None = None) -> dict:
    """Read the cached runs (the packaged file by default).

    Returns
    -------
    dict
        ``format``, ``steps``, ``seed``, ``batch_size``, ``model``, ``dtype``, ``betas``,
        ``weight_decay``, ``muon_adamw_lr``, ``eval_every``, ``environment`` and ``runs``: a list of
        the dicts :func:`train_run` returns, one per (method, learning rate).
    """
    text = Path(path).read_text() if path is not None else (files("secondorder") / "data" / CACHE).read_text()
    cache = json.loads(text)
    if cache.get("format") != FORMAT:
        raise ValueError(f"cache format {cache.get('format')!r} is not {FORMAT}; regenerate it with "
                         "`python -m secondorder.experiments`")
    return cache


def best_runs(cache: dict) -> dict[str, dict]:
    """For each method, the run with the lowest final validation loss."""
    best: dict[str, dict] = {}
    for run in cache["runs"]:
        final = run["val_losses"][-1]
        if math.isfinite(final) and (run["method"] not in best or final < best[run["method"]]["val_losses"][-1]):
            best[run["method"]] = run
    return best


def main(argv=None) -> int:
    """Regenerate the cache: ``python -m secondorder.experiments [--steps N] [--out PATH]``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=STEPS)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=None, help="default: the packaged cache")
    args = parser.parse_args(argv)
    cache = compare_optimizers(steps=args.steps, seed=args.seed, threads=args.threads, log=print)
    out = args.out or cache_path()
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(_rounded(cache), separators=(",", ":")) + "\n")
    print(f"wrote {out} ({out.stat().st_size / 1024:.0f} KiB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
