"""Hidden cases drawn afresh: each family moves with the draw, keeps what it tests, and beats a lookup table.

The autograder draws every student's hidden cases from a key only the instructor holds
(:mod:`secondorder.exercises.generators`). These tests check the four things that makes true:

- the visible cases, and the whole catalogue outside a draw, do not move (the notebooks show them);
- every hidden case's inputs change with the draw (otherwise its answer could be tabulated);
- the reference passes every case on every draw (a draw keeps the property a case pins down);
- every catalogued mutant (``autograder/mutants/<function>/*.py``) loses points on every draw, and
  is caught by the hidden cases alone (a mistake caught only by the fixed visible cases could be
  patched by special-casing them); a function that answers from a table of the reference's outputs
  on every catalogue the student can draw loses points on a draw it did not tabulate.

The mutants run in worker processes (this file run as a script) under a memory limit: some build a
40 000 × 40 000 Gram matrix, which the autograder's sandbox would stop the same way.
"""

from __future__ import annotations

import ast
import copy
import hashlib
import json
import math
import os
import signal
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import torch
from secondorder.exercises import EXERCISES
from secondorder.exercises.base import SourceFunction, args_equal, clone_args
from secondorder.exercises.secant_method import CountedG

MUTANTS = Path(__file__).resolve().parents[1] / "autograder" / "mutants"
NAMES = list(EXERCISES)
FAST_DRAWS = (1, 2)                      # the mutants are the slow part: ~20 s of CPU per draw
SLOW_DRAWS = tuple(range(1, 21))
# More draws for the mutants within the suite's time budget (30 draws were checked by hand: every mutant
# caught on each); the fast test runs FAST_DRAWS.
MUTANT_DRAWS = tuple(range(3, 9))
WORKER_MEMORY = 4 << 30                  # address space of a worker process
CALL_TIMEOUT_S = 30.0                    # per call of a mutant; the autograder allows 10 s per case
#: Hidden cases whose only content is a shape (zero matrices): two draws may pick the same one.
SHAPE_ONLY = {("newton_schulz", "zero matrix/float32/tall"), ("matrix_inverse_root", "zero matrix/p=4"),
              ("matrix_inverse_root", "zero matrix/p=2/float32")}


def same(a, b) -> bool:
    """Exact equality of two argument structures; test functions compare by source and bound tensors."""
    if isinstance(a, SourceFunction) or isinstance(b, SourceFunction):
        return isinstance(a, SourceFunction) and isinstance(b, SourceFunction) and a.source == b.source \
            and a.bound.keys() == b.bound.keys() and all(args_equal(a.bound[k], b.bound[k]) for k in a.bound)
    if isinstance(a, CountedG) or isinstance(b, CountedG):
        return isinstance(a, CountedG) and isinstance(b, CountedG) and a.source == b.source
    if isinstance(a, list | tuple) and isinstance(b, list | tuple):
        return type(a) is type(b) and len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    return args_equal(a, b)


def fingerprint(args) -> str:
    """A key for an argument structure that two equal inputs share: what a lookup table is indexed by."""
    h = hashlib.sha256()

    def walk(a):
        if isinstance(a, torch.Tensor):
            t = a.detach().cpu().contiguous()
            h.update(f"T{t.dtype}{tuple(t.shape)}".encode())
            h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
        elif isinstance(a, SourceFunction):
            h.update(f"F{a.source}".encode())
            for k in sorted(a.bound):
                h.update(k.encode())
                walk(a.bound[k])
        elif isinstance(a, CountedG):
            h.update(f"G{a.source}".encode())
        elif isinstance(a, list | tuple):
            h.update(f"L{len(a)}".encode())
            for x in a:
                walk(x)
        else:
            h.update(f"V{type(a).__name__}{a!r}".encode())
    walk(args)
    return h.hexdigest()


# -- the catalogue outside a draw, and what moves inside one -------------------------------------------

@pytest.mark.parametrize("name", NAMES)
def test_visible_cases_and_the_undrawn_catalogue_do_not_move(name):
    ex = EXERCISES[name]
    undrawn = ex.cases(None)
    assert [c.id for c in undrawn] == [c.id for c in ex.catalogue()]
    for c in undrawn:                                     # make_args is deterministic outside a draw
        assert same(c.make_args(), c.make_args()), c.id
    for draw in FAST_DRAWS:
        for c, d in zip(undrawn, ex.cases(draw)):
            assert (c.id, c.hidden) == (d.id, d.hidden)
            if not c.hidden:
                assert same(c.make_args(), d.make_args()), f"visible case {c.id} moved under draw {draw}"


def _hidden_args(ex, draw):
    return {c.id: c.make_args() for c in ex.cases(draw) if c.hidden}


@pytest.mark.parametrize("name", NAMES)
def test_every_hidden_case_moves_with_the_draw(name):
    ex = EXERCISES[name]
    undrawn, first, second = (_hidden_args(ex, d) for d in (None, *FAST_DRAWS))
    for cid, args in undrawn.items():
        assert not same(args, first[cid]), f"{cid}: the same inputs as without a draw"
        assert not same(args, second[cid]), f"{cid}: the same inputs as without a draw"
        assert not same(first[cid], second[cid]), f"{cid}: the same inputs under draws {FAST_DRAWS}"


@pytest.mark.slow
@pytest.mark.parametrize("name", NAMES)
def test_every_hidden_case_moves_on_many_draws(name):
    ex = EXERCISES[name]
    undrawn = {cid: fingerprint(a) for cid, a in _hidden_args(ex, None).items()}
    seen = {cid: set() for cid in undrawn}
    for draw in SLOW_DRAWS:
        for cid, args in _hidden_args(ex, draw).items():
            key = fingerprint(args)
            assert key != undrawn[cid], f"{cid}: the same inputs as without a draw under draw {draw}"
            seen[cid].add(key)
    for cid, keys in seen.items():
        # A zero matrix is only its shape: two of 20 draws may pick the same one, but rarely more.
        least = len(SLOW_DRAWS) // 2 if (name, cid) in SHAPE_ONLY else len(SLOW_DRAWS)
        assert len(keys) >= least, f"{cid}: only {len(keys)} different inputs over {len(SLOW_DRAWS)} draws"


# -- the reference passes every case on every draw ----------------------------------------------------

def _reference_passes(name, draws):
    ex = EXERCISES[name]
    for draw in draws:
        verdict = ex.run_in_process(type(ex).reference, hidden=True, draw=draw)
        assert verdict.fraction == 1, f"draw {draw}: {verdict.summary()}"


@pytest.mark.parametrize("name", NAMES)
def test_reference_passes_every_case_on_every_draw(name):
    _reference_passes(name, range(1, 9))


@pytest.mark.slow
@pytest.mark.parametrize("name", NAMES)
def test_reference_passes_every_case_on_many_draws(name):
    _reference_passes(name, range(100, 125))


def test_drawn_power_iteration_cases_stop_far_from_their_boundary():
    """As for the catalogue (``test_sharpness.py``): a correct answer makes as many products as the reference."""
    from secondorder.exercises.power_iteration import stop_margin

    for draw in (*FAST_DRAWS, 3, 4):
        for case in EXERCISES["power_iteration"].cases(draw):
            assert stop_margin(*case.make_args()) > 0.02, (draw, case.id)


# -- every mutant is caught on every draw, by the hidden cases alone ----------------------------------

def load_mutants(function: str) -> dict:
    """``{name: fn}`` of the wrong answers in ``autograder/mutants/<function>/``, each run as an answer cell."""
    found = {}
    for path in sorted((MUTANTS / function).glob("*.py")):
        text = path.read_text()
        ast.parse(text)                                   # a syntax error is the catalogue's, say so here
        namespace = {"torch": torch, "math": math, "__name__": "__mutant__"}
        exec(compile(text, str(path), "exec"), namespace)
        found[path.stem] = namespace[function]
    return found


class CallTimeout(Exception):
    """A mutant's call ran past :data:`CALL_TIMEOUT_S` (the autograder would stop it too)."""


def _guarded(fn):
    def call(*args):
        def expire(*_):
            raise CallTimeout(f"did not return within {CALL_TIMEOUT_S:g} s")
        previous = signal.signal(signal.SIGALRM, expire)
        signal.setitimer(signal.ITIMER_REAL, CALL_TIMEOUT_S)
        try:
            return fn(*args)
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, previous)
    return call


def grade_mutants(names: list[str], draws: list[int]) -> dict:
    """``{exercise: {mutant: [[draw, fraction, caught by a hidden case], ...]}}`` (run in a worker process)."""
    out = {}
    for name in names:
        ex = EXERCISES[name]
        out[name] = {}
        for mutant, fn in load_mutants(name).items():
            rows = []
            for draw in draws:
                verdict = ex.run_in_process(_guarded(fn), hidden=True, draw=draw)
                rows.append([draw, verdict.fraction, any(not r.passed for r in verdict.results if r.case.hidden)])
            out[name][mutant] = rows
    return out


def _worker(names: list[str], draws: tuple[int, ...]) -> dict:
    # One thread per worker: two workers with two OpenMP threads each on two cores spin-wait for each other.
    env = dict(os.environ, PYTHONWARNINGS="ignore", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    done = subprocess.run([sys.executable, __file__, json.dumps({"names": names, "draws": list(draws)})],
                          capture_output=True, text=True, env=env, timeout=3600)
    assert done.returncode == 0, f"worker for {names} failed:\n{done.stderr[-3000:]}"
    return json.loads(done.stdout.strip().splitlines()[-1])


#: Relative cost of an exercise's mutants (seconds per draw on one core), to balance the workers.
_COST = {"two_loop_recursion": 7.3, "hvp": 3.9, "newton_schulz": 3.7, "power_iteration": 1.4}


def mutant_table(draws: tuple[int, ...]) -> dict:
    """Every exercise's mutants graded on ``draws``, in as many worker processes as there are cores (2 at least)."""
    workers = max(2, min(4, os.cpu_count() or 2))
    shares = [[] for _ in range(workers)]
    load = [0.0] * workers
    for name in sorted(NAMES, key=lambda n: -_COST.get(n, 0.5)):
        i = load.index(min(load))
        shares[i].append(name)
        load[i] += _COST.get(name, 0.5)
    with ThreadPoolExecutor(workers) as pool:
        parts = list(pool.map(lambda share: _worker(share, draws), [s for s in shares if s]))
    return {k: v for part in parts for k, v in part.items()}


def _check_mutants(draws):
    table = mutant_table(draws)
    assert set(table) == set(NAMES)
    survivors, visible_only = [], []
    for name, mutants in table.items():
        assert mutants, f"no mutants catalogued for {name}"
        for mutant, rows in mutants.items():
            survivors += [f"{name}/{mutant} (draw {d})" for d, fraction, _ in rows if fraction >= 1]
            visible_only += [f"{name}/{mutant} (draw {d})" for d, _, hidden in rows if not hidden]
    assert not survivors, f"mutants that lose no points: {survivors}"
    assert not visible_only, f"mutants caught by the visible cases only: {visible_only}"


def test_every_mutant_is_caught_by_hidden_cases_on_every_draw():
    _check_mutants(FAST_DRAWS)


@pytest.mark.slow
def test_every_mutant_is_caught_by_hidden_cases_on_many_draws():
    _check_mutants(MUTANT_DRAWS)


# -- a table of the reference's answers on the catalogues a student can draw loses points ---------------

def lookup_answer(ex, draws):
    """A function answering from the reference's outputs on ``cases(None)`` and ``cases(d)``, d in ``draws``.

    It is what a student with the package installed can build: on an input it tabulated it returns
    (or raises) what the reference did, elsewhere it returns None.
    """
    table = {}
    for draw in (None, *draws):
        for case in ex.cases(draw):
            args = case.make_args()
            try:
                table[fingerprint(args)] = ("return", type(ex).reference(*clone_args(args)))
            except Exception as exc:  # noqa: BLE001 - an error is an answer too (invalid input)
                table[fingerprint(args)] = ("raise", exc)

    def answer(*args):
        kind, value = table.get(fingerprint(args), ("return", None))
        if kind == "raise":
            raise type(value)(*value.args)
        return copy.deepcopy(value)
    return answer


@pytest.mark.parametrize("name", NAMES)
def test_a_lookup_table_loses_points_on_an_untabulated_draw(name):
    ex = EXERCISES[name]
    answer = lookup_answer(ex, draws=(0, 1, 2))
    tabulated = ex.run_in_process(answer, hidden=True, draw=1)
    assert tabulated.fraction == 1, f"the table should pass a draw it holds: {tabulated.summary()}"
    for draw in (7_919, 2**40 + 3):                       # draws the table does not hold (the grader's key)
        verdict = ex.run_in_process(answer, hidden=True, draw=draw)
        assert verdict.fraction < 1
        hidden = [r for r in verdict.results if r.case.hidden]
        assert all(r.passed for r in verdict.results if not r.case.hidden)
        assert not any(r.passed for r in hidden), [r.case.id for r in hidden if r.passed]


if __name__ == "__main__":
    import resource
    import warnings

    warnings.simplefilter("ignore")
    resource.setrlimit(resource.RLIMIT_AS, (WORKER_MEMORY, WORKER_MEMORY))
    torch.set_num_threads(1)
    request = json.loads(sys.argv[1])
    print(json.dumps(grade_mutants(request["names"], request["draws"])))
