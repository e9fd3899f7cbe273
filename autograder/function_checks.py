"""Grade one graded function in a fresh, sandboxed process and judge its outputs here.

The student's answer cell (plus the imports of the instructor's cells above it) runs in a new
Python process inside the sandbox, with the course library replaced by a stub. That process only
*computes*: it calls the function on each case's arguments and saves what came back. Every
comparison happens in the grader's own process, which never ran student code, so patching
``numpy.allclose`` or ``torch.allclose`` in the submission changes nothing.

The grader watches the result files, not the process: once every case's result is in (or the answer
cell failed) it stops the process itself, so a thread the answer started, a handler that ignores
signals or a daemon it forked cannot keep grading waiting; each case also has its own time limit, and
the whole run the sum of them.
"""

from __future__ import annotations

import inspect
import shutil
import sys
import time
from pathlib import Path

import torch
from secondorder.exercises import CaseResult, Exercise, Verdict

from .sandbox import OUTPUT, Limits, Outcome, Sandbox, size_text

HERE = Path(__file__).resolve().parent
STARTUP_TIMEOUT_S = 120.0    # interpreter start, torch import and the setup imports (not the student's time)
ANSWER_TIMEOUT_S = 30.0      # the answer cell itself
MEMORY_BYTES = 2 * 2**30
# What the returned values of all cases may take on the host: a wrong answer of the wrong shape (an
# (N, d, d) stack where a (d, d) factor is due) is still the answer, graded and diagnosed, not a quota kill.
RESULT_BYTES = 1 * 2**30
DISK_BYTES = 512 * 2**20      # what the answer may write in its working directory


def _load(path: Path):
    try:
        return torch.load(path, weights_only=True)
    except Exception as exc:  # a file the student's process wrote is data, never trusted code
        return {"error": f"UnreadableResult: {type(exc).__name__}: {exc}"}


def _cases(exercise: Exercise, draw: int | None):
    """The exercise's cases, the hidden ones drawn under ``draw`` where the exercise takes a draw."""
    if "draw" in inspect.signature(exercise.cases).parameters:
        return exercise.cases(draw=draw)
    return exercise.cases()


def check_function(exercise: Exercise, answer: str, setup: list[str], workdir: Path, sandbox: Sandbox,
                   extra_hide: list[Path] = (), python: str = sys.executable, *, draw: int | None = None
                   ) -> Verdict:
    """Run ``answer`` on every case of ``exercise`` in ``sandbox`` and judge the results.

    Parameters
    ----------
    exercise : Exercise
    answer : str
        The answer cell's source.
    setup : list of str
        The instructor's cells above it (their imports), run first.
    workdir : Path
        A fresh folder for this check (emptied first).
    sandbox : Sandbox
    extra_hide : list of Path
        Hidden from this run as well.
    python : str
        The interpreter to run the answer with.
    draw : int, optional
        Which draw of the hidden cases to grade on (passed to ``exercise.cases`` when it takes one).
    """
    workdir = Path(workdir)
    if workdir.exists():
        shutil.rmtree(workdir)
    workdir.mkdir(parents=True)
    out = workdir / OUTPUT
    cases = _cases(exercise, draw)
    args = [case.make_args() for case in cases]
    encode = getattr(exercise, "encode_args", None)
    torch.save({"name": exercise.name, "setup": list(setup), "answer": answer,
                "cases": [encode(a) if encode else a for a in args],
                "count_flops": [bool(getattr(c, "count_flops", False)) for c in cases]}, workdir / "request.pt")
    shutil.copy(HERE / "child_runner.py", workdir / "child_runner.py")
    verdict = Verdict(exercise.name)
    outcomes: dict[int, CaseResult] = {}
    start = 0
    while start < len(cases):
        budget = STARTUP_TIMEOUT_S + ANSWER_TIMEOUT_S + sum(c.timeout_s for c in cases[start:])
        running = sandbox.start([python, "child_runner.py", "request.pt", str(start), OUTPUT], workdir,
                                _limits(budget), extra_hide=extra_hide)
        killed_case = _watch(running, out, cases, start)
        outcome = running.wait()
        answer_state = _load(out / "answer.pt") if (out / "answer.pt").exists() else None
        if answer_state is None or answer_state.get("error"):
            if answer_state is None:
                why = ("the answer cell did not finish within "
                       f"{ANSWER_TIMEOUT_S:.0f} s (an infinite loop in the cell?)" if outcome.timed_out
                       else _death(outcome, "while running the answer cell"))
                status = "timeout" if outcome.timed_out else "error"
            elif "[Errno 28]" in answer_state["error"]:
                why, status = (answer_state["error"] + f" (a run may write at most {size_text(DISK_BYTES)})",
                               None)
            else:
                why, status = answer_state["error"], None
            for case, a in zip(cases, args):
                if status is None:
                    verdict.results.append(_answer_failed(exercise, case, a, why))
                else:
                    verdict.results.append(CaseResult(case, False, why, status))
            return verdict
        for i in range(start, len(cases)):
            if (out / f"case_{i}.pt").exists() and i not in outcomes:
                outcomes[i] = _judge(exercise, cases[i], args[i], _load(out / f"case_{i}.pt"))
        missing = [i for i in range(start, len(cases)) if i not in outcomes]
        if not missing:
            break
        j = missing[0]
        if killed_case == j or (outcome.timed_out and (out / f"case_{j}.started").exists()):
            outcomes[j] = CaseResult(cases[j], False, f"did not return within {cases[j].timeout_s:g} s", "timeout")
        else:
            outcomes[j] = CaseResult(cases[j], False, _death(outcome, "during this case"), "error")
        start = j + 1
        if j > 0 and j - 1 in outcomes and outcomes[j - 1].status == outcomes[j].status \
                and outcomes[j].status in ("timeout", "error") and not (out / f"case_{j - 1}.pt").exists():
            # Two cases in a row hung or killed the process: the rest would too. Don't wait for each.
            for i in range(start, len(cases)):
                outcomes[i] = CaseResult(cases[i], False, f"not run: the previous cases failed the same way "
                                         f"({outcomes[j].message})", outcomes[j].status)
            break
    verdict.results = [outcomes[i] for i in range(len(cases))]
    return verdict


def _limits(budget: float) -> Limits:
    """The caps of one child process: ``budget`` seconds in all, the memory and disk of one check."""
    return Limits(wall_s=budget, memory_bytes=MEMORY_BYTES, disk_bytes=DISK_BYTES, output_bytes=RESULT_BYTES)


def _watch(running, out: Path, cases, start: int) -> int | None:
    """Follow the child through its result files; return the index of a case that overran its own limit.

    The child is killed when a case overruns, when the answer cell overruns, and also when its work is
    done (every result written, or the answer cell failed) but it has not exited: a live thread or a
    forked daemon must not make grading wait. ``running.poll`` enforces the whole run's wall clock.
    """
    answer = out / "answer.pt"
    answer_ok = None
    while running.poll() is None:
        if answer_ok is None and answer.exists():
            answer_ok = _load(answer).get("error") is None
        if answer_ok is None:
            started = out / "answer.started"
            if (started.exists() and time.time() - started.stat().st_mtime > ANSWER_TIMEOUT_S) \
                    or running.elapsed() > STARTUP_TIMEOUT_S + ANSWER_TIMEOUT_S:
                running.kill("time", f"the answer cell ran past {ANSWER_TIMEOUT_S:g} s")
                return None
        elif not answer_ok or all((out / f"case_{i}.pt").exists() for i in range(start, len(cases))):
            running.kill(None)               # its work is written; only its leftovers keep it alive
            return None
        else:
            for i in range(start, len(cases)):
                marker = out / f"case_{i}.started"
                if marker.exists() and not (out / f"case_{i}.pt").exists():
                    if time.time() - marker.stat().st_mtime > cases[i].timeout_s:
                        running.kill("time", f"case {i} ran past {cases[i].timeout_s:g} s")
                        return i
                    break
        time.sleep(0.05)
    return None


def _death(outcome: Outcome, when: str) -> str:
    """Why the child process ended without its results, in words for the student."""
    if outcome.reason == "memory":
        return (f"the process was killed {when}: it went over the {size_text(MEMORY_BYTES)} memory limit "
                "(all it holds at once counts: tensors, lists, strings)")
    if outcome.reason == "disk":
        return f"the process was stopped {when}: {outcome.detail}"
    if outcome.reason == "file size":
        return f"the process was stopped {when}: {outcome.detail}"
    if outcome.timed_out:
        return f"the process ran out of time {when}"
    if outcome.reason == "killed":
        return f"the process was killed {when}: {outcome.detail}"
    tail = outcome.stderr.strip().splitlines()[-1:] or [""]
    return f"the process exited with status {outcome.returncode} {when} {tail[0][:300]}".strip()


def _answer_failed(exercise: Exercise, case, args, error: str) -> CaseResult:
    if error.startswith("MissingFunction"):
        return CaseResult(case, False, error.split(":", 1)[1].strip(), "missing")
    return exercise.judge(case, args, None, error=f"the answer cell raised {error}")


def _judge(exercise: Exercise, case, args, result: dict) -> CaseResult:
    if result.get("error"):
        return exercise.judge(case, args, None, error=result["error"])
    decode_after = result.get("args_after")
    return exercise.judge(case, args, result.get("out"), args_after=tuple(decode_after) if decode_after else None,
                          calls=result.get("calls"), flops=result.get("flops"))
