"""The benchmark runner and the GPU check script: a broken part costs only its own rows, the table is
written part by part, and the GPU check runs end to end (rehearsed on the CPU)."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

import bench.__main__ as runner

ROOT = Path(__file__).resolve().parents[1]


def _fake_parts(calls):
    def ok():
        calls.append("ok")
        return [dict(benchmark="fast thing", case="n=3", ours=1.0, anchor=2.0, ratio=0.5, target="≤ 1",
                     note="a | b")]

    def broken():
        calls.append("broken")
        raise RuntimeError("CUDA out of memory")

    def after():
        calls.append("after")
        return [dict(benchmark="later thing", case="n=4", ours=3.0)]

    return lambda device, quick: {"ok": ok, "broken": broken, "after": after}


def test_a_failing_part_becomes_a_row_and_the_rest_still_run(monkeypatch, tmp_path, capsys):
    calls = []
    monkeypatch.setattr(runner, "parts", _fake_parts(calls))
    out = tmp_path / "table.md"
    assert runner.main(["--out", str(out)]) == 1             # failure is reported in the exit status
    assert calls == ["ok", "broken", "after"]
    table = out.read_text()
    lines = [line for line in table.splitlines() if line.startswith("| ")]
    assert lines[0] == "| benchmark | case | ours | anchor | ratio | target | note |"
    assert "| fast thing | n=3 | 1 | 2 | 0.5 | ≤ 1 | a / b |" in lines      # a "|" in a note keeps the columns
    assert "| broken | failed |" in table and "RuntimeError: CUDA out of memory" in table
    assert "| later thing | n=4 | 3 |" in table
    assert all(line.count(" | ") == 6 for line in lines)
    assert capsys.readouterr().out == table                  # the same table on stdout


def test_only_runs_the_named_parts(monkeypatch, tmp_path):
    calls = []
    monkeypatch.setattr(runner, "parts", _fake_parts(calls))
    assert runner.main(["--only", "after", "--out", str(tmp_path / "t.md")]) == 0
    assert calls == ["after"]


def test_unknown_part_is_refused(capsys):
    with pytest.raises(SystemExit):
        runner.main(["--only", "nonsense"])
    assert "invalid choice: 'nonsense'" in capsys.readouterr().err


@pytest.mark.slow
def test_gpu_check_rehearsal_on_cpu(tmp_path):
    """bench/gpu_check.sh as a GPU machine would run it, on the CPU: library tests only (the course's
    need the course tooling), a quick benchmark part, everything written to GPU_OUT."""
    env = dict(os.environ, PY=sys.executable, GPU_OUT=str(tmp_path), GPU_DEVICE="cpu",
               GPU_MARKS="not slow", BENCH_ARGS="--quick --only spectral")
    proc = subprocess.run(["bash", str(ROOT / "bench" / "gpu_check.sh")], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bench.md", "machine.txt", "tests.log", "tests.xml"]
    assert "torch" in (tmp_path / "machine.txt").read_text()
    log = (tmp_path / "tests.log").read_text()
    assert " passed" in log and " failed" not in log and "test_sections" not in log
    assert "Lanczos vs power iteration" in (tmp_path / "bench.md").read_text()


def test_shampoo_soap_without_its_references_says_how_to_get_them(monkeypatch, tmp_path):
    from torch import nn

    from bench import shampoo_soap

    monkeypatch.setattr(sys, "path", list(sys.path))        # the loader adds SHAMPOO_REFERENCE_PATH to it
    monkeypatch.setenv("SHAMPOO_REFERENCE_PATH", str(tmp_path))
    monkeypatch.setenv("SOAP_REFERENCE_PATH", str(tmp_path))  # no soap.py there
    monkeypatch.setitem(sys.modules, "distributed_shampoo", None)  # makes the import fail even if installed
    assert shampoo_soap.shampoo_reference() is None and shampoo_soap.soap_reference() is None
    assert shampoo_soap.agreement_rows("cpu") == []
    rows = shampoo_soap.step_time_rows("one layer", nn.Linear(4, 4), "cpu", rounds=1)
    assert [r["note"] for r in rows] == [shampoo_soap.SHAMPOO_HOW, shampoo_soap.SOAP_HOW]
