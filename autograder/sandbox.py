"""Run untrusted code in its own sandbox: a private file-system view, no network, capped resources.

With bubblewrap (``bwrap``, Debian package ``bubblewrap``) each run gets a read-only view of the
machine with a private ``/tmp``, a fresh network namespace (loopback only), its own PID namespace,
the paths in ``hide`` covered by empty tmpfs mounts, and one writable folder. Resource caps come from
cgroups when the grader may create them (root on Linux: ``pids.max``, memory limit), otherwise from
rlimits (``prlimit``: address space, processes, file size). Without bubblewrap the code still runs
under rlimits and a wall-clock limit, but can read and write what the grading user can: a warning
says so once per process. Setting ``AUTOGRADER_NO_BWRAP=1`` makes the grader behave as if bubblewrap
were not installed (the test suite uses it to run the grading tests the way a machine without it does).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
import warnings
from dataclasses import dataclass
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")


@dataclass(frozen=True)
class Limits:
    """Caps for one sandboxed run."""

    wall_s: float = 60.0
    memory_bytes: int = 2 * 2**30
    pids: int = 128
    file_bytes: int = 256 * 2**20
    tmp_bytes: int = 256 * 2**20


@dataclass
class Outcome:
    """How a sandboxed run ended."""

    returncode: int | None
    stdout: str
    stderr: str
    timed_out: bool
    oom: bool
    seconds: float

    @property
    def ok(self) -> bool:
        """Exited with status 0 in time."""
        return self.returncode == 0 and not self.timed_out


NO_BWRAP_ENV = "AUTOGRADER_NO_BWRAP"


def _bwrap_disabled() -> bool:
    """``AUTOGRADER_NO_BWRAP`` is set to anything but ``""`` or ``"0"``: act as if bubblewrap were absent."""
    return os.environ.get(NO_BWRAP_ENV, "") not in ("", "0")


def _bwrap_works() -> bool:
    if _bwrap_disabled():
        return False
    exe = shutil.which("bwrap")
    if exe is None:
        return False
    try:
        return subprocess.run([exe, "--ro-bind", "/", "/", "--unshare-net", "true"], capture_output=True,
                              timeout=20).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


class _Cgroups:
    """Per-run pids and memory cgroups (v1 hierarchies or the v2 unified one), when writable."""

    def __init__(self, limits: Limits):
        self.dirs: list[Path] = []
        name = f"secondorder-{uuid.uuid4().hex[:12]}"
        unified = (CGROUP_ROOT / "cgroup.controllers").exists()
        try:
            if unified:
                d = CGROUP_ROOT / name
                d.mkdir()
                self.dirs.append(d)
                (d / "pids.max").write_text(str(limits.pids))
                (d / "memory.max").write_text(str(limits.memory_bytes))
                (d / "memory.swap.max").write_text("0")
            else:
                for ctrl, files in (("pids", {"pids.max": limits.pids}),
                                    ("memory", {"memory.limit_in_bytes": limits.memory_bytes})):
                    d = CGROUP_ROOT / ctrl / name
                    d.mkdir()
                    self.dirs.append(d)
                    for f, v in files.items():
                        (d / f).write_text(str(v))
                try:
                    (CGROUP_ROOT / "memory" / name / "memory.memsw.limit_in_bytes").write_text(
                        str(limits.memory_bytes))
                except OSError:
                    pass  # swap accounting is off: the plain memory limit still applies
        except OSError:
            self.remove()
            raise

    def join_prefix(self) -> list[str]:
        """A shell prefix that moves the process into the cgroups before exec'ing the command."""
        writes = "; ".join(f"echo $$ > '{d}/cgroup.procs'" for d in self.dirs)
        return ["/bin/sh", "-c", f'{writes}; exec "$@"', "sandbox"]

    def oom_killed(self) -> bool:
        for d in self.dirs:
            for f in ("memory.events", "memory.oom_control"):
                p = d / f
                if p.exists():
                    for line in p.read_text().splitlines():
                        key, _, value = line.partition(" ")
                        if key == "oom_kill" and value.strip() not in ("", "0"):
                            return True
            if (d / "memory.failcnt").exists() and (d / "memory.failcnt").read_text().strip() not in ("", "0"):
                return True
        return False

    def kill_all(self) -> None:
        for d in self.dirs:
            try:
                for pid in (d / "cgroup.procs").read_text().split():
                    try:
                        os.kill(int(pid), signal.SIGKILL)
                    except (ProcessLookupError, PermissionError):
                        pass
            except OSError:
                pass

    def remove(self) -> None:
        for d in self.dirs:
            for _ in range(50):
                try:
                    d.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    self.kill_all()
                    time.sleep(0.05)
        self.dirs = []


def _cgroups_usable() -> bool:
    try:
        probe = _Cgroups(Limits())
    except OSError:
        return False
    probe.remove()
    return True


def bwrap_available() -> bool:
    """Whether sandboxed runs get bubblewrap's isolation on this machine (probed once per process, no warning)."""
    return Sandbox.probe()[0]


def processes_capped() -> bool:
    """Whether a sandboxed run's process count is capped: by a cgroup, or by ``RLIMIT_NPROC`` (which root ignores)."""
    return Sandbox.probe()[1] or os.geteuid() != 0


class Sandbox:
    """Launches commands confined to one writable folder each.

    Parameters
    ----------
    hide : list of Path
        Folders the sandboxed code must not see (the gradebook, other submissions, the instructor
        sources); each is covered by an empty tmpfs.
    require_isolation : bool
        Raise if bubblewrap is unavailable instead of running with rlimits only.
    """

    _probe: tuple[bool, bool] | None = None
    _warned = False

    def __init__(self, hide: list[Path] = (), require_isolation: bool = False, keep: list[Path] = ()):
        self.hide = [Path(h).resolve() for h in hide]
        # The private /tmp would also hide a Python environment or checkout that lives under /tmp.
        self.keep = [Path(k).resolve() for k in (sys.prefix, sys.base_prefix, *keep)]
        self.has_bwrap, self.has_cgroups = Sandbox.probe()
        if not self.has_bwrap:
            if require_isolation:
                raise RuntimeError("bubblewrap (bwrap) is not available; install the 'bubblewrap' package")
            if not Sandbox._warned:              # once per process: every grader and worker makes one
                Sandbox._warned = True
                warnings.warn("bubblewrap (bwrap) not found: submissions run without file-system and network "
                              "isolation, only with resource limits (apt-get install bubblewrap)",
                              RuntimeWarning, stacklevel=2)

    @staticmethod
    def probe() -> tuple[bool, bool]:
        """``(bubblewrap works, cgroups are writable)``, probed once per process."""
        if Sandbox._probe is None:
            Sandbox._probe = (_bwrap_works(), _cgroups_usable())
        return Sandbox._probe

    @property
    def isolation(self) -> str:
        """``"bubblewrap+cgroups"``, ``"bubblewrap+rlimits"`` or ``"rlimits"``."""
        base = "bubblewrap+" if self.has_bwrap else ""
        return base + ("cgroups" if self.has_cgroups else "rlimits")

    def _argv(self, argv: list[str], workdir: Path, limits: Limits, extra_hide: list[Path]) -> list[str]:
        rl = ["prlimit", f"--fsize={limits.file_bytes}", "--core=0"]
        if not self.has_cgroups:
            rl += [f"--as={limits.memory_bytes}", f"--nproc={limits.pids}"]
        inner = rl + ["--"] + argv
        if not self.has_bwrap:
            return inner
        bw = ["bwrap", "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc",
              "--size", str(limits.tmp_bytes), "--tmpfs", "/tmp"]
        for k in self.keep:
            if Path("/tmp") in k.parents and k.exists():
                bw += ["--ro-bind", str(k), str(k)]
        for h in self.hide + [Path(p).resolve() for p in extra_hide]:
            if h.exists():
                bw += ["--tmpfs", str(h)]
        bw += ["--bind", str(workdir), str(workdir), "--chdir", str(workdir),
               "--unshare-net", "--unshare-pid", "--unshare-ipc", "--unshare-uts",
               "--unshare-user", "--uid", "65534", "--gid", "65534",
               "--die-with-parent", "--new-session"]
        return bw + inner

    def start(self, argv: list[str], workdir: Path, limits: Limits = Limits(), env: dict | None = None,
              extra_hide: list[Path] = ()) -> Running:
        """Start ``argv`` in ``workdir``; return a handle to poll, wait for or kill."""
        workdir = Path(workdir).resolve()
        workdir.mkdir(parents=True, exist_ok=True)
        cg = _Cgroups(limits) if self.has_cgroups else None
        full = (cg.join_prefix() if cg else []) + self._argv(argv, workdir, limits, list(extra_hide))
        base_env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(workdir),
                    "LANG": "C.UTF-8", "MPLBACKEND": "Agg", "OMP_NUM_THREADS": "1",
                    "PYTHONDONTWRITEBYTECODE": "1", "PYTHONUNBUFFERED": "1",
                    "JUPYTER_RUNTIME_DIR": str(workdir / ".runtime"), "IPYTHONDIR": str(workdir / ".ipython"),
                    "MPLCONFIGDIR": str(workdir / ".mpl"), "TMPDIR": "/tmp"}
        base_env.update(env or {})
        out = open(workdir / ".stdout", "wb")
        err = open(workdir / ".stderr", "wb")
        proc = subprocess.Popen(full, cwd=workdir, env=base_env, stdin=subprocess.DEVNULL, stdout=out,
                                stderr=err, start_new_session=True)
        return Running(proc, cg, workdir, limits, (out, err))

    def run(self, argv: list[str], workdir: Path, limits: Limits = Limits(), env: dict | None = None,
            extra_hide: list[Path] = ()) -> Outcome:
        """Run ``argv`` to completion (or until its wall-clock limit) and report how it ended."""
        return self.start(argv, workdir, limits, env, extra_hide).wait()


class Running:
    """A sandboxed process in flight."""

    def __init__(self, proc, cgroups, workdir, limits, files):
        self.proc, self.cg, self.workdir, self.limits, self._files = proc, cgroups, workdir, limits, files
        self.t0 = time.monotonic()
        self.timed_out = False

    def elapsed(self) -> float:
        return time.monotonic() - self.t0

    def poll(self) -> int | None:
        return self.proc.poll()

    def kill(self, timed_out: bool = True) -> None:
        self.timed_out = self.timed_out or timed_out
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        if self.cg:
            self.cg.kill_all()

    def wait(self, poll_s: float = 0.05) -> Outcome:
        """Wait for the process, killing it at the wall-clock limit; clean up; report."""
        while self.proc.poll() is None:
            if self.elapsed() > self.limits.wall_s:
                self.kill()
                break
            time.sleep(poll_s)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.kill()
            self.proc.wait()
        oom = bool(self.cg and self.cg.oom_killed())
        if self.cg:
            self.cg.kill_all()
            self.cg.remove()
        for f in self._files:
            f.close()
        return Outcome(self.proc.returncode, _tail(self.workdir / ".stdout"), _tail(self.workdir / ".stderr"),
                       self.timed_out, oom, self.elapsed())


def _tail(path: Path, limit: int = 20000) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - limit))
            return f.read().decode("utf-8", "replace")
    except OSError:
        return ""
