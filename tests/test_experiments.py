"""The cached optimizer runs of section 07: schema, and a short rerun that reproduces them."""

import math

import pytest
import torch
from secondorder import experiments

CACHE = experiments.load_runs()
RUN_KEYS = {"method", "lr", "losses", "val_steps", "val_losses", "step_ms", "opt_ms", "n_params"}


def test_cache_schema():
    assert CACHE["format"] == experiments.FORMAT
    assert CACHE["model"] == experiments.MODEL and CACHE["batch_size"] == experiments.BATCH_SIZE
    assert CACHE["dtype"] == "float32" and set(CACHE["environment"]) == {"torch", "threads", "machine"}
    configs = {(run["method"], run["lr"]) for run in CACHE["runs"]}
    assert configs == {(m, lr) for m in experiments.METHODS for lr in experiments.LEARNING_RATES[m]}
    for run in CACHE["runs"]:
        assert set(run) == RUN_KEYS, run["method"]
        assert len(run["losses"]) == CACHE["steps"] and all(math.isfinite(v) for v in run["losses"])
        assert run["val_steps"] == list(range(0, CACHE["steps"], CACHE["eval_every"])) + [CACHE["steps"]]
        assert len(run["val_losses"]) == len(run["val_steps"])
        assert run["step_ms"] > run["opt_ms"] > 0
        assert run["n_params"] == CACHE["runs"][0]["n_params"]
    # every run starts from the same model on the same batch: the same first loss, near log(88)
    first = {run["losses"][0] for run in CACHE["runs"]}
    assert len(first) == 1 and abs(first.pop() - math.log(88)) < 0.1


def test_best_runs_pick_the_lowest_final_validation_loss():
    best = experiments.best_runs(CACHE)
    assert set(best) == set(experiments.METHODS)
    for method, run in best.items():
        assert all(run["val_losses"][-1] <= r["val_losses"][-1] for r in CACHE["runs"] if r["method"] == method)


@pytest.mark.slow
def test_short_rerun_reproduces_the_cached_losses():
    steps = 8
    best = experiments.best_runs(CACHE)
    default = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)   # the runs must not depend on the caller's default dtype
    try:
        live = experiments.train_runs([(m, best[m]["lr"]) for m in experiments.METHODS], steps=steps,
                                      seed=CACHE["seed"])
    finally:
        torch.set_default_dtype(default)
    for run in live:
        cached = best[run["method"]]["losses"][:steps]
        assert run["losses"] == pytest.approx(cached, rel=1e-4), run["method"]
        assert run["val_steps"] == [0, steps]
    assert torch.get_default_dtype() == default


def test_bad_arguments_are_rejected():
    with pytest.raises(ValueError, match="method"):
        experiments.train_runs([("adagrad", 1e-3)], steps=1)
    with pytest.raises(ValueError, match="steps"):
        experiments.train_run("adamw", 1e-3, steps=0)


@pytest.mark.slow
def test_regenerated_cache_reads_back(tmp_path):
    path = tmp_path / "runs.json"
    assert experiments.main(["--steps", "2", "--out", str(path)]) == 0
    cache = experiments.load_runs(path)
    assert cache["steps"] == 2 and len(cache["runs"]) == len(CACHE["runs"])
    assert [r["losses"][0] for r in cache["runs"]] == [r["losses"][0] for r in CACHE["runs"]]
