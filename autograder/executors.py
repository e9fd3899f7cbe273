"""Where phase 1 of grading runs: on this machine's cores, or on a Dask cluster.

A *unit* is one submission of one assignment: the sandboxed checks of its graded functions and the
sandboxed run of its notebooks. The coordinating machine (the one running ``python -m autograder
grade``) reads and audits each submission, turns it into a unit of plain data (answer sources,
setup imports, the sanitized notebook to execute), and sends it to an executor. :func:`run_unit`
does the work and returns plain data too (each function's fraction, status and explanation; each
executed notebook as text). The gradebook, ``grades.csv`` and the feedback are written only on the
coordinating machine, so workers need no shared file system.

- :class:`LocalExecutor` (the default) runs units in threads on this machine; the work happens in
  sandboxed child processes, so threads are enough to use every core.
- :class:`DaskExecutor` ships units to the workers of a ``dask.distributed`` cluster (or of a
  ``LocalCluster`` started here). Each worker needs the same checkout of the repository (course,
  ``secondorder`` and ``autograder``) importable; a fingerprint of the grading code is compared on
  every worker, so a worker running other code is refused rather than grading differently. When a
  worker dies mid-unit, Dask reruns the unit elsewhere; a unit whose workers die
  ``distributed.scheduler.allowed-failures`` times (default 3) is recorded as an ``error`` with the
  reason, and the next run (without ``--force``) grades it again.
"""

from __future__ import annotations

import concurrent.futures
import functools
import hashlib
import os
import shutil
import socket
import sys
import tempfile
import threading
import time
import uuid
import warnings
from collections.abc import Callable
from pathlib import Path

import nbformat
from secondorder.exercises import get_exercise

from .function_checks import check_function
from .sandbox import OUTPUT, Limits, Sandbox

REPO = Path(__file__).resolve().parents[1]
Done = Callable[[dict | None, BaseException | None], None]
CONNECT_S = 30.0      # how long to try reaching a Dask scheduler


class ClusterError(Exception):
    """The cluster cannot grade (unreachable, no workers, workers running other code)."""


class UnitLost(Exception):
    """A unit did not come back from the cluster (its workers kept dying, or the cluster went away)."""


@functools.cache
def fingerprint() -> str:
    """A digest of the code that decides grades: ``autograder/`` and the ``secondorder`` package.

    Computed once per process, when the process has imported that code: it stands for what runs.
    """
    import secondorder

    h = hashlib.sha256()
    for base in (Path(__file__).resolve().parent, Path(secondorder.__file__).resolve().parent):
        for p in sorted(base.rglob("*.py")):
            if "__pycache__" not in p.parts and "mutants" not in p.parts:
                h.update(p.relative_to(base).as_posix().encode())
                h.update(p.read_bytes())
    return h.hexdigest()[:16]


# -- the work of one unit (runs on a worker, or in a thread here) ------------------------------------


def run_unit(unit: dict, workroot: Path, sandbox: Sandbox, extra_hide: list[Path] = ()) -> dict:
    """Run the function checks and notebook runs of ``unit`` under ``workroot``; return plain data.

    The function checks see neither the course library nor anything else of the repository (their
    ``import secondorder`` is a stub); the notebook runs see the library read-only, as students do.
    A check's ``"draw"`` (the instructor's draw of its hidden cases) is passed on when present.
    """
    t0 = time.monotonic()
    base = Path(workroot) / unit["student"] / unit["assignment"]
    checks: dict[str, dict[str, dict]] = {}
    for c in unit["checks"]:
        verdict = check_function(get_exercise(c["name"]), c["answer"], c["setup"], base / f"check_{c['name']}",
                                 sandbox, extra_hide=[*extra_hide, REPO / "lib"], draw=c.get("draw"))
        checks.setdefault(c["notebook"], {})[c["name"]] = {
            "fraction": verdict.fraction, "status": verdict.status, "summary": verdict.summary()}
    runs = {}
    for r in unit["runs"]:
        text, status = run_notebook(r["ipynb"], r["files"], base / f"run_{r['notebook']}", sandbox,
                                    unit["cell_timeout_s"], unit["notebook_wall_s"], extra_hide=extra_hide)
        runs[r["notebook"]] = {"ipynb": text, "status": status}
    return {"checks": checks, "runs": runs, "host": socket.gethostname(), "seconds": time.monotonic() - t0}


def library_paths() -> list[Path]:
    """What a notebook run needs beyond the Python installation: the folder ``secondorder`` is imported from
    (the repository's ``lib/`` for an editable install; inside site-packages otherwise, already visible)."""
    import secondorder
    return [Path(secondorder.__file__).resolve().parents[1]]


def run_notebook(ipynb: str, files: dict[str, bytes], work: Path, sandbox: Sandbox, cell_timeout_s: int,
                 wall_s: float, extra_hide: list[Path] = ()) -> tuple[str | None, str]:
    """Execute a sanitized notebook in the sandbox; return the executed notebook's text (or None) and a status.

    The notebook's own files (``files``) and the notebook lie read-only in the run's working directory;
    the executed notebook comes back through the run's output folder.
    """
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    for name, data in files.items():
        (work / name).write_bytes(data)
    (work / "in.ipynb").write_text(ipynb)
    shutil.copy(Path(__file__).with_name("notebook_runner.py"), work / "notebook_runner.py")
    limits = Limits(wall_s=wall_s)
    outcome = sandbox.run([sys.executable, "notebook_runner.py", "in.ipynb", f"{OUTPUT}/out.ipynb",
                           str(cell_timeout_s)], work, limits, extra_hide=extra_hide, readonly=library_paths())
    out = work / OUTPUT / "out.ipynb"
    if not out.exists():
        if outcome.reason:
            return None, f"not executed: {outcome.detail}"
        return None, "not executed: " + (outcome.stderr.strip()[-300:] or f"exit status {outcome.returncode}")
    # Where the executed notebook of a unit has always been kept (the coordinator compares against it).
    os.replace(out, work / "out.ipynb")
    shutil.rmtree(work / OUTPUT, ignore_errors=True)
    out = work / "out.ipynb"
    try:
        ran = nbformat.read(out, as_version=4)
    except Exception:  # the sandboxed process wrote something that is not a notebook
        return None, "not executed: the run produced an unreadable notebook"
    status = ran.metadata.get("autograder_run", {}).get("status", "stopped early")
    if outcome.timed_out:
        status = f"stopped at the {wall_s:.0f} s limit"
    elif outcome.reason:
        status = f"stopped: {outcome.detail}"
    return nbformat.writes(ran), str(status)


_worker_state: dict = {}
_worker_lock = threading.Lock()


def _isolation() -> str:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return Sandbox().isolation


def run_unit_on_worker(unit: dict) -> dict:
    """The task a Dask worker runs: :func:`run_unit` in a private scratch folder, removed afterwards."""
    with _worker_lock:
        if "sandbox" not in _worker_state:
            try:
                from distributed import get_worker
                local = Path(get_worker().local_directory)
            except (ImportError, ValueError):
                local = Path(tempfile.gettempdir())
            scratch = local / "autograder-units"
            scratch.mkdir(parents=True, exist_ok=True)
            # Student code sees only the sandbox's minimal view; the worker's folder (its other units, its
            # spilled data) and the sources stay hidden even if one of them lies inside a bound folder.
            _worker_state["sandbox"] = Sandbox(hide=[local, REPO / "course", REPO / "solutions", REPO / "autograder",
                                                     REPO / ".git"])
            _worker_state["scratch"] = scratch
            _worker_state["fingerprint"] = fingerprint()
    if unit["fingerprint"] != _worker_state["fingerprint"]:
        raise ClusterError(f"worker {socket.gethostname()} runs other grading code (fingerprint "
                           f"{_worker_state['fingerprint']}, coordinator {unit['fingerprint']}); "
                           "install the same checkout on every worker")
    workroot = Path(tempfile.mkdtemp(dir=_worker_state["scratch"]))
    try:
        return run_unit(unit, workroot, _worker_state["sandbox"])
    finally:
        shutil.rmtree(workroot, ignore_errors=True)


# -- executors ---------------------------------------------------------------------------------------


class LocalExecutor:
    """Units in a thread pool on this machine (today's behaviour): ``jobs`` submissions at a time."""

    name = "local"

    def __init__(self, jobs: int):
        self.jobs = jobs
        self.pool = concurrent.futures.ThreadPoolExecutor(jobs)

    @property
    def slots(self) -> int:
        return self.jobs

    def describe(self) -> str:
        return f"{self.jobs} parallel"

    def submit(self, unit: dict, done: Done, *, workroot: Path, sandbox: Sandbox) -> None:
        fut = self.pool.submit(run_unit, unit, workroot, sandbox)

        def finished(f):
            try:
                result = f.result()
            except BaseException as exc:  # noqa: BLE001 - handed to the coordinator, which records it
                done(None, exc)
                return
            done(result, None)

        fut.add_done_callback(finished)

    def close(self) -> None:
        self.pool.shutdown(wait=True)


class DaskExecutor:
    """Units as tasks on a ``dask.distributed`` cluster.

    Parameters
    ----------
    address : str
        ``"local"`` (a ``LocalCluster`` of one single-threaded process per core, started here),
        a scheduler address (``tcp://host:8786``, ``host:8786`` or ``dask://host:8786``), or the path
        of a scheduler file (``.json``, as ``dask scheduler --scheduler-file`` writes).
    n_workers : int, optional
        Workers of the local cluster (default: one per core).
    wait_s : float
        How long to wait for a first worker.
    client : distributed.Client, optional
        An existing client to use instead (it is left open by :meth:`close`).
    """

    name = "dask"

    def __init__(self, address: str | None = None, n_workers: int | None = None, wait_s: float = 60.0,
                 client=None):
        try:
            from distributed import Client, LocalCluster
        except ImportError:
            raise ClusterError("Dask is not installed: pip install -e '.[cluster]'") from None
        self.cluster, self.owns_client = None, client is None
        try:
            if client is not None:
                self.client = client
            elif address == "local":
                self.cluster = LocalCluster(n_workers=n_workers or (os.cpu_count() or 1), threads_per_worker=1,
                                            processes=True, dashboard_address=None)
                self.client = Client(self.cluster)
            elif address.endswith(".json"):
                self.client = Client(scheduler_file=address, timeout=CONNECT_S)
            else:
                self.client = Client(address.replace("dask://", "tcp://", 1), timeout=CONNECT_S)
        except (OSError, TimeoutError) as exc:
            raise ClusterError(f"cannot reach the Dask scheduler at {address}: {exc}") from None
        try:
            self.client.wait_for_workers(1, timeout=wait_s)
        except TimeoutError:
            self.close()
            raise ClusterError(f"the Dask scheduler at {address} has no workers after {wait_s:.0f} s") from None
        self.fingerprint = fingerprint()
        theirs = self.client.run(fingerprint)
        wrong = sorted(w for w, fp in theirs.items() if fp != self.fingerprint)
        if wrong:
            self.close()
            raise ClusterError(f"workers {', '.join(wrong)} run other grading code than this checkout "
                               f"(fingerprint {self.fingerprint}); install the same commit on every worker")
        isolation = self.client.run(_isolation)
        weak = sorted(w for w, how in isolation.items() if not how.startswith("bubblewrap"))
        if weak:
            print(f"warning: workers {', '.join(weak)} lack bubblewrap: submissions run there without file-system "
                  "and network isolation, only with resource limits", file=sys.stderr)
        self.futures: set = set()
        self.lock = threading.Lock()

    @property
    def slots(self) -> int:
        return max(1, sum(self.client.nthreads().values()))

    def describe(self) -> str:
        n = self.client.nthreads()
        return f"dask: {len(n)} workers, {sum(n.values())} threads"

    def submit(self, unit: dict, done: Done, *, workroot: Path, sandbox: Sandbox) -> None:
        unit = dict(unit, fingerprint=self.fingerprint)
        key = f"grade-{unit['student']}-{unit['assignment']}-{uuid.uuid4().hex[:8]}"
        fut = self.client.submit(run_unit_on_worker, unit, key=key, pure=False, retries=1)
        with self.lock:
            self.futures.add(fut)        # a future nobody holds is cancelled: keep it until it is done

        def finished(f):
            try:
                result = f.result()
            except BaseException as exc:  # noqa: BLE001 - handed to the coordinator, which records it
                done(None, _lost(exc))
            else:
                done(result, None)
            finally:
                with self.lock:
                    self.futures.discard(f)

        fut.add_done_callback(finished)

    def close(self) -> None:
        if self.owns_client:
            self.client.close()
        if self.cluster is not None:
            self.cluster.close()


def _lost(exc: BaseException) -> BaseException:
    name = type(exc).__name__
    if name == "KilledWorker":
        return UnitLost("every Dask worker that tried to grade this submission died before finishing "
                        "(distributed.scheduler.allowed-failures times); the submission may crash the worker "
                        "itself, or the workers lack memory")
    if name in ("CancelledError", "FutureCancelledError"):
        return UnitLost(f"the Dask cluster lost this submission ({exc}); the scheduler or the connection went away")
    return exc


def make_executor(spec: str | None, jobs: int) -> LocalExecutor | DaskExecutor:
    """``None``: threads on this machine; anything else: a Dask cluster address (see :class:`DaskExecutor`)."""
    if spec is None:
        return LocalExecutor(jobs)
    return DaskExecutor(spec, n_workers=jobs if spec == "local" else None)
