"""Run untrusted code in its own sandbox: a minimal read-only view, an unprivileged user, capped resources.

With bubblewrap (``bwrap``, Debian package ``bubblewrap``) a run sees only what it needs, read-only:
the system directories (``/usr`` and its ``/bin``, ``/lib``, ``/lib64``, ``/sbin`` links), a few files
of ``/etc`` (the loader cache, time zone, name-service files; a two-line ``passwd``), the Python
installation (``sys.prefix`` and ``sys.base_prefix``, nothing around them) and the folders a run asks
for (``readonly``). No home folder, repository, submission or grading folder is there, wherever it
lies. Its working directory is a tmpfs of ``Limits.disk_bytes`` (the disk quota: writes past it fail
with "No space left on device") in which the run's inputs are bound read-only; the only folder it can
write on the host is its output folder, whose size the grader polls (over ``Limits.output_bytes`` the
run is killed and the folder emptied). ``/tmp`` and ``/dev/shm`` are private tmpfs mounts; the network
namespace has only a loopback; the PID namespace makes every process the run starts die with it.

When the grader runs as root, bubblewrap mounts as root and the command then drops to uid/gid 65534
with no groups and no capabilities (``setpriv``), so its file accesses are those of an unprivileged user:
a root-only file is unreadable even inside a bound folder. (An unprivileged bubblewrap would resolve the
bound paths as uid 65534 and could not reach a Python installed under ``/root``; as another user the
grader's own uid is mapped into a user namespace.) Resource caps come from cgroups when the grader may
create them (root on Linux: ``pids.max``, memory limit), otherwise from rlimits (``prlimit``: address
space, processes); ``RLIMIT_FSIZE`` caps every file. stdout and stderr go through pipes the grader
drains, keeping the first and last part of each (``Limits.log_bytes``).

Without bubblewrap the code still runs under rlimits, a wall-clock limit and a polled disk quota on its
folder, but can read and write what the grading user can: a warning says so once per process. Its
processes are killed by process group, cgroup, and a scan for the run's tag in ``/proc/*/environ``.
Setting ``AUTOGRADER_NO_BWRAP=1`` makes the grader behave as if bubblewrap were not installed (the test
suite uses it to run the grading tests the way a machine without it does).
"""

from __future__ import annotations

import collections
import os
import select
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
import warnings
from dataclasses import dataclass
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")
NOBODY = 65534                       # the uid and gid sandboxed code runs as when the grader is root
OUTPUT = "out"                       # the run's writable folder on the host, under its working directory
SYSTEM_DIRS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
# What of /etc the interpreter, its libraries and a Jupyter kernel read; not the rest (pip.conf, gitconfig,
# npmrc, ssh keys and the like may hold credentials).
ETC_FILES = ("ld.so.cache", "ld.so.conf", "ld.so.conf.d", "localtime", "timezone", "nsswitch.conf", "hosts",
             "host.conf", "gai.conf", "protocols", "services", "mime.types", "alternatives", "fonts")
DISK_POLL_S = 0.2                    # how often the output folder's size is measured (a bounded walk)
MAX_ENTRIES = 10000                  # a folder with more files than this counts as over its quota


@dataclass(frozen=True)
class Limits:
    """Caps for one sandboxed run.

    Attributes
    ----------
    wall_s : float
        Wall-clock limit; at it every process of the run is killed.
    memory_bytes : int
        Memory of all its processes together (cgroup), or address space per process (rlimit).
    pids : int
        Processes and threads.
    file_bytes : int
        Largest file it may write (``RLIMIT_FSIZE``: Python, which ignores SIGXFSZ, gets "File too large";
        other programs end with SIGXFSZ).
    tmp_bytes : int
        Size of its private ``/tmp`` and ``/dev/shm`` (each).
    disk_bytes : int
        Disk quota of its working directory (tmpfs size with bubblewrap, a polled folder size without).
    output_bytes : int
        What it may leave in its output folder on the host (polled; over it the run is killed).
    log_bytes : int
        How much of its stdout, and of its stderr, is kept (the first and the last half).
    """

    wall_s: float = 60.0
    memory_bytes: int = 2 * 2**30
    pids: int = 128
    file_bytes: int = 256 * 2**20
    tmp_bytes: int = 256 * 2**20
    disk_bytes: int = 512 * 2**20
    output_bytes: int = 64 * 2**20
    log_bytes: int = 2**20


@dataclass
class Outcome:
    """How a sandboxed run ended.

    ``reason`` says why it was stopped, when it was: ``"time"`` (the wall clock), ``"memory"`` (the cgroup's
    memory limit), ``"disk"`` (its output folder, or without bubblewrap its folder, grew over the quota),
    ``"file size"`` (a file over ``Limits.file_bytes``), ``"killed"`` (a signal from elsewhere, e.g. the
    system's out-of-memory killer); ``None`` when it ended by itself, or was stopped after its work was done.
    ``detail`` is the same as words ("it wrote more than the 512 MiB disk quota"). A negative
    ``returncode`` is the signal that ended it, with or without bubblewrap.
    """

    returncode: int | None
    stdout: str
    stderr: str
    timed_out: bool
    oom: bool
    seconds: float
    reason: str | None = None
    detail: str = ""

    @property
    def ok(self) -> bool:
        """Exited with status 0 and was not stopped for a limit."""
        return self.returncode == 0 and self.reason is None

    @property
    def disk(self) -> bool:
        """Stopped for writing more than its disk quota."""
        return self.reason == "disk"


NO_BWRAP_ENV = "AUTOGRADER_NO_BWRAP"


def size_text(n: int) -> str:
    """``536870912`` -> ``"512 MiB"``; ``2 * 2**30`` -> ``"2 GiB"``."""
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= scale:
            return f"{n / scale:.3g} {unit}"
    return f"{n} bytes"


def _bwrap_disabled() -> bool:
    """``AUTOGRADER_NO_BWRAP`` is set to anything but ``""`` or ``"0"``: act as if bubblewrap were absent."""
    return os.environ.get(NO_BWRAP_ENV, "") not in ("", "0")


def _drops_privileges() -> bool:
    """The grader is root: bubblewrap mounts as root and the command drops to uid 65534 (``setpriv``)."""
    return os.geteuid() == 0


def _bwrap_works() -> bool:
    if _bwrap_disabled() or shutil.which("bwrap") is None:
        return False
    if _drops_privileges() and shutil.which("setpriv") is None:
        return False
    argv = ["bwrap", *_system_view(), "--proc", "/proc", "--dev", "/dev", "--unshare-net", "--unshare-pid",
            *_identity(), "true"]
    try:
        return subprocess.run(argv, capture_output=True, timeout=20).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def _system_view() -> list[str]:
    """bwrap arguments for the system directories (symlinks stay symlinks: ``/bin -> usr/bin`` on Debian)."""
    args: list[str] = []
    for d in SYSTEM_DIRS:
        if os.path.islink(d):
            args += ["--symlink", os.readlink(d), d]
        elif os.path.isdir(d):
            args += ["--ro-bind", d, d]
    args += ["--perms", "0755", "--dir", "/etc"]
    for name in ETC_FILES:
        p = f"/etc/{name}"
        if os.path.lexists(p):
            args += ["--ro-bind-try", p, p]
    return args


def _identity() -> list[str]:
    """bwrap arguments that make the command run as uid/gid 65534 without capabilities."""
    if _drops_privileges():
        # Mount as root (so folders under /root or a 0700 tmp folder can be bound), then setresuid inside:
        # the kernel clears every capability on the switch, and setpriv empties the bounding set as well.
        return ["--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID", "--cap-add", "CAP_SETPCAP", "setpriv",
                f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", "--bounding-set=-all",
                "--inh-caps=-all", "--"]
    return ["--unshare-user", "--uid", str(NOBODY), "--gid", str(NOBODY)]


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
        """A shell prefix that moves the process into the cgroups before exec'ing the command.

        It runs first, as the grader's user: the uid switch happens later, inside the sandbox.
        """
        writes = "; ".join(f"echo $$ > '{d}/cgroup.procs'" for d in self.dirs)
        return ["/bin/sh", "-c", f'{writes}; exec "$@"', "sandbox"]

    def oom_killed(self) -> bool:
        """The kernel killed a process of the run at the memory limit.

        ``oom_kill`` (in ``memory.events``, or v1's ``memory.oom_control``) counts kills; ``memory.failcnt``
        (hits of the limit, reclaimable page cache included) is only the fallback of kernels without it.
        """
        counted = False
        for d in self.dirs:
            for f in ("memory.events", "memory.oom_control"):
                p = d / f
                if p.exists():
                    for line in p.read_text().splitlines():
                        key, _, value = line.partition(" ")
                        if key == "oom_kill":
                            counted = True
                            if value.strip() not in ("", "0"):
                                return True
        if counted:
            return False
        for d in self.dirs:
            if (d / "memory.failcnt").exists() and (d / "memory.failcnt").read_text().strip() not in ("", "0"):
                return True
        return False

    def kill_all(self) -> None:
        """SIGKILL every process in the run's cgroups (a double-forked daemon included)."""
        for d in self.dirs:
            kill = d / "cgroup.kill"                # cgroup v2, Linux 5.14+: atomic, no fork race
            if kill.exists():
                try:
                    kill.write_text("1")
                    continue
                except OSError:
                    pass
            try:
                for pid in (d / "cgroup.procs").read_text().split():
                    try:
                        os.kill(int(pid), signal.SIGKILL)
                    except (ProcessLookupError, PermissionError):
                        pass
            except OSError:
                pass

    def empty(self) -> bool:
        try:
            return all(not (d / "cgroup.procs").read_text().split() for d in self.dirs)
        except OSError:
            return True

    def remove(self) -> None:
        for d in self.dirs:
            for _ in range(100):
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
    """Whether a sandboxed run's process count is capped: by a cgroup, or by ``RLIMIT_NPROC``.

    Root ignores ``RLIMIT_NPROC``; with bubblewrap the command runs as uid 65534 even when the grader is root.
    """
    has_bwrap, has_cgroups = Sandbox.probe()
    return has_cgroups or has_bwrap or os.geteuid() != 0


def _within(path: Path, folders) -> bool:
    return any(path == f or f in path.parents for f in folders)


def interpreter_paths() -> list[Path]:
    """The folders a run of this Python needs: ``sys.prefix`` and ``sys.base_prefix`` (and their real paths)."""
    paths: list[Path] = []
    for p in (sys.prefix, sys.exec_prefix, sys.base_prefix, sys.base_exec_prefix):
        for q in (Path(p), Path(p).resolve()):
            if q not in paths:
                paths.append(q)
    return paths


class Sandbox:
    """Launches commands, each confined to a minimal view and one writable folder.

    Parameters
    ----------
    hide : list of Path
        Folders the sandboxed code must not see (the gradebook, other submissions, the instructor
        sources). With bubblewrap nothing outside the minimal view is visible anyway; a hidden folder
        that lies inside a bound one (``readonly``, the Python installation) is covered by an empty
        tmpfs. The list may be appended to after construction.
    require_isolation : bool
        Raise if bubblewrap is unavailable instead of running with rlimits only.
    keep : list of Path
        Accepted for callers of the earlier whole-machine view (where it kept folders under ``/tmp``
        visible); the minimal view binds the Python installation itself, so it has no effect.
    """

    _probe: tuple[bool, bool] | None = None
    _warned = False

    def __init__(self, hide: list[Path] = (), require_isolation: bool = False, keep: list[Path] = ()):
        self.hide = [Path(h).resolve() for h in hide]
        self.keep = [Path(k).resolve() for k in keep]
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

    def _bwrap(self, workdir: Path, limits: Limits, inputs: list[Path], readonly: list[Path],
               hide: list[Path], fds: list[int]) -> list[str]:
        bw = ["bwrap", *_system_view()]
        for name, data in (("passwd", f"root:x:0:0::/:/usr/sbin/nologin\nsandbox:x:{NOBODY}:{NOBODY}::"
                                      f"{workdir}:/usr/sbin/nologin\n"),
                           ("group", f"root:x:0:\nsandbox:x:{NOBODY}:\n")):
            r, w = os.pipe()
            os.write(w, data.encode())
            os.close(w)
            fds.append(r)
            bw += ["--perms", "0644", "--ro-bind-data", str(r), f"/etc/{name}"]
        bw += ["--dev", "/dev", "--proc", "/proc",
               "--perms", "1777", "--size", str(limits.tmp_bytes), "--tmpfs", "/tmp",
               "--perms", "1777", "--size", str(limits.tmp_bytes), "--tmpfs", "/dev/shm"]
        bound = [Path(d) for d in SYSTEM_DIRS if os.path.isdir(d) and not os.path.islink(d)]
        binds = []
        for p in [*interpreter_paths(), *readonly]:
            if p.exists() and not _within(p, bound):
                binds += ["--ro-bind", str(p.resolve()), str(p)]
                bound.append(p)
        # bubblewrap would create the folders above a mount point with mode 0700, which uid 65534 cannot
        # enter: make them first, traversable.
        made: list[Path] = []
        for p in [*bound, workdir]:
            for a in reversed(p.parents):
                if a != Path("/") and a != Path("/tmp") and a not in made and not _within(a, bound):
                    bw += ["--perms", "0755", "--dir", str(a)]
                    made.append(a)
        bw += binds
        for h in hide:
            if h.exists() and _within(h, bound) and not _within(workdir, [h]):
                bw += ["--tmpfs", str(h)] if h.is_dir() else ["--ro-bind", "/dev/null", str(h)]
        bw += ["--perms", "0777", "--size", str(limits.disk_bytes), "--tmpfs", str(workdir)]
        for p in inputs:
            bw += ["--ro-bind", str(p), str(p)]
        bw += ["--bind", str(workdir / OUTPUT), str(workdir / OUTPUT), "--chdir", str(workdir),
               "--unshare-net", "--unshare-pid", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try",
               "--die-with-parent", "--new-session", *_identity()]
        return bw

    def start(self, argv: list[str], workdir: Path, limits: Limits = Limits(), env: dict | None = None,
              extra_hide: list[Path] = (), readonly: list[Path] = ()) -> Running:
        """Start ``argv`` in ``workdir``; return a handle to poll, wait for or kill.

        Parameters
        ----------
        argv : list of str
            The command; relative paths are relative to ``workdir``.
        workdir : Path
            A host folder holding the run's inputs (bound read-only; with bubblewrap its working
            directory is a tmpfs at the same path). Results go to ``workdir / OUTPUT`` (``"out"``,
            created here if missing, kept if not): the only host folder the run may write.
        limits : Limits
        env : dict, optional
            Added to a small fixed environment (``HOME`` is the working directory).
        extra_hide : list of Path
            Hidden for this run only, as ``hide``.
        readonly : list of Path
            Further folders this run sees read-only, at their own paths (an editable install's source).
        """
        workdir = Path(workdir).resolve()
        workdir.mkdir(parents=True, exist_ok=True)
        out = workdir / OUTPUT
        out.mkdir(exist_ok=True)
        for log in (".stdout", ".stderr"):
            (workdir / log).unlink(missing_ok=True)
        inputs = sorted(p for p in workdir.iterdir() if p.name not in (OUTPUT, ".stdout", ".stderr"))
        tag = uuid.uuid4().hex
        base_env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(workdir), "USER": "sandbox",
                    "LOGNAME": "sandbox", "LANG": "C.UTF-8", "MPLBACKEND": "Agg", "OMP_NUM_THREADS": "1",
                    "PYTHONDONTWRITEBYTECODE": "1", "PYTHONUNBUFFERED": "1",
                    "JUPYTER_RUNTIME_DIR": str(workdir / ".runtime"), "IPYTHONDIR": str(workdir / ".ipython"),
                    "MPLCONFIGDIR": str(workdir / ".mpl"), "TMPDIR": "/tmp", "AUTOGRADER_RUN": tag}
        rl = ["prlimit", f"--fsize={limits.file_bytes}", "--core=0"]
        if not self.has_cgroups:
            rl += [f"--as={limits.memory_bytes}", f"--nproc={limits.pids}"]
        fds: list[int] = []
        if self.has_bwrap:
            if _drops_privileges():
                os.chown(out, NOBODY, NOBODY)
            hide = [*self.hide, *(Path(p).resolve() for p in extra_hide)]
            full = self._bwrap(workdir, limits, inputs, [Path(p).absolute() for p in readonly], hide, fds)
            full += rl + ["--"] + list(argv)
        else:
            (workdir / ".tmp").mkdir(exist_ok=True)
            base_env["TMPDIR"] = str(workdir / ".tmp")
            full = rl + ["--"] + list(argv)
        base_env.update(env or {})
        cg = _Cgroups(limits) if self.has_cgroups else None
        if cg:
            full = cg.join_prefix() + full
        try:
            proc = subprocess.Popen(full, cwd=workdir, env=base_env, stdin=subprocess.DEVNULL,
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True,
                                    pass_fds=fds)
        except BaseException:
            if cg:
                cg.remove()
            raise
        finally:
            for fd in fds:
                os.close(fd)
        return Running(proc, cg, workdir, limits, bwrap=self.has_bwrap, tag=tag, inputs=inputs)

    def run(self, argv: list[str], workdir: Path, limits: Limits = Limits(), env: dict | None = None,
            extra_hide: list[Path] = (), readonly: list[Path] = ()) -> Outcome:
        """Run ``argv`` to completion (or until a limit) and report how it ended; see :meth:`start`."""
        return self.start(argv, workdir, limits, env, extra_hide, readonly).wait()


class _Drain(threading.Thread):
    """Copies a pipe to a file, keeping its first and last ``cap / 2`` bytes and counting the rest."""

    def __init__(self, pipe, path: Path, cap: int):
        super().__init__(daemon=True)
        self.fd, self.path, self.head, self.tail_cap = pipe.fileno(), path, cap // 2, cap - cap // 2
        self.pipe = pipe
        self.total = 0
        self.stop_at: float | None = None      # set once the run is over: drain a moment longer, then stop
        self.start()

    def run(self) -> None:
        tail: collections.deque[bytes] = collections.deque()
        tail_len, written = 0, 0
        with open(self.path, "wb") as f:
            while self.stop_at is None or time.monotonic() < self.stop_at:
                ready, _, _ = select.select([self.fd], [], [], 0.1)
                if not ready:
                    continue
                chunk = os.read(self.fd, 1 << 20)
                if not chunk:
                    break
                self.total += len(chunk)
                if written < self.head:
                    part = chunk[:self.head - written]
                    f.write(part)
                    written += len(part)
                    chunk = chunk[len(part):]
                if chunk:
                    tail.append(chunk)
                    tail_len += len(chunk)
                    while tail and tail_len - len(tail[0]) >= self.tail_cap:
                        tail_len -= len(tail.popleft())
            rest = b"".join(tail)[-self.tail_cap:]
            left_out = self.total - written - len(rest)
            if left_out > 0:
                f.write(f"\n[... {size_text(left_out)} of output left out ...]\n".encode())
            f.write(rest)
        self.pipe.close()


def _tagged_pids(tag: str) -> list[int]:
    """Processes whose environment carries the run's tag (those that escaped its process group too)."""
    needle = f"AUTOGRADER_RUN={tag}".encode()
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit() and int(entry) != os.getpid():
            try:
                with open(f"/proc/{entry}/environ", "rb") as f:
                    if needle in f.read():
                        found.append(int(entry))
            except OSError:
                pass
    return found


def _usage(path: Path, limit: int = MAX_ENTRIES) -> tuple[int, int]:
    """``(bytes on disk, entries)`` under ``path``, walking at most ``limit`` entries (symlinks not followed)."""
    total, count, stack = 0, 0, [path]
    while stack and count <= limit:
        try:
            with os.scandir(stack.pop()) as it:
                for e in it:
                    count += 1
                    try:
                        st = e.stat(follow_symlinks=False)
                    except OSError:
                        continue
                    total += max(st.st_blocks * 512, 0)
                    if e.is_dir(follow_symlinks=False):
                        stack.append(Path(e.path))
        except OSError:
            pass
    return total, count


class Running:
    """A sandboxed process in flight. :meth:`poll` also enforces the wall-clock limit and the disk quotas."""

    def __init__(self, proc, cgroups, workdir: Path, limits: Limits, bwrap: bool = False, tag: str = "",
                 inputs: list[Path] = ()):
        self.proc, self.cg, self.workdir, self.limits = proc, cgroups, workdir, limits
        self.bwrap, self.tag, self.inputs = bwrap, tag, set(inputs)
        self.out = workdir / OUTPUT
        self.t0 = time.monotonic()
        self.reason: str | None = None
        self.detail = ""
        self._next_disk = self.t0 + DISK_POLL_S
        self._base_usage = 0 if bwrap else _usage(workdir)[0]
        self._drains = (_Drain(proc.stdout, workdir / ".stdout", limits.log_bytes),
                        _Drain(proc.stderr, workdir / ".stderr", limits.log_bytes))

    @property
    def timed_out(self) -> bool:
        return self.reason == "time"

    def elapsed(self) -> float:
        return time.monotonic() - self.t0

    def poll(self) -> int | None:
        """The exit status, or None while it runs; kills it at its wall-clock limit or over a quota."""
        rc = self.proc.poll()
        if rc is None and self.reason is None:
            if self.elapsed() > self.limits.wall_s:
                self.kill("time", f"it ran past the {self.limits.wall_s:g} s wall-clock limit")
            elif time.monotonic() >= self._next_disk:
                self._next_disk = time.monotonic() + DISK_POLL_S
                self._check_disk()
        return rc

    def _check_disk(self) -> None:
        used, entries = _usage(self.out)
        if used > self.limits.output_bytes or entries > MAX_ENTRIES:
            self.kill("disk", f"it wrote more than the {size_text(self.limits.output_bytes)} its results may take")
            return
        if not self.bwrap:                      # no tmpfs: the folder itself is the quota
            used, entries = _usage(self.workdir)
            if used - self._base_usage > self.limits.disk_bytes or entries > MAX_ENTRIES:
                self.kill("disk", f"it wrote more than the {size_text(self.limits.disk_bytes)} disk quota")

    def kill(self, reason: str | None = "time", detail: str = "") -> None:
        """SIGKILL every process of the run; ``reason`` None: its work is done, it only failed to exit."""
        if self.reason is None and reason is not None:
            self.reason, self.detail = reason, detail or f"it was stopped ({reason})"
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        if self.cg:
            self.cg.kill_all()
        if not self.bwrap and self.tag:
            for pid in _tagged_pids(self.tag):
                try:
                    os.kill(pid, signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    pass

    def wait(self, poll_s: float = 0.05) -> Outcome:
        """Wait for the run, enforcing its limits; kill what it left running; clean up; report."""
        while self.poll() is None:
            time.sleep(poll_s)
        if self.reason is None:
            self._check_disk()                   # a run that wrote fast and left between two polls
        # The main process is gone; whatever it started goes too (bubblewrap's PID namespace already
        # took them; without it: process group, cgroup, tag).
        for _ in range(20):
            self.kill(None)
            if not (self.cg and not self.cg.empty()) and (self.bwrap or not _tagged_pids(self.tag)):
                break
            time.sleep(0.05)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.kill(None)
            self.proc.wait()
        for d in self._drains:
            d.stop_at = time.monotonic() + 1.0
        for d in self._drains:
            d.join(timeout=5)
        rc = self.proc.returncode
        if self.bwrap and rc is not None and 128 < rc <= 128 + 64:
            rc = -(rc - 128)                     # bubblewrap reports a signal death as 128 + signal
        oom = bool(self.cg and self.cg.oom_killed())
        if self.cg:
            self.cg.kill_all()
            self.cg.remove()
        if self.reason is None:
            if oom:
                self.reason = "memory"
                self.detail = f"it went over the {size_text(self.limits.memory_bytes)} memory limit"
            elif rc == -signal.SIGXFSZ:
                self.reason = "file size"
                self.detail = f"it wrote a file larger than {size_text(self.limits.file_bytes)}"
            elif rc is not None and rc < 0:
                self.reason = "killed"
                self.detail = f"it was killed by {signal.Signals(-rc).name}" + (
                    " (the system ran out of memory?)" if rc == -signal.SIGKILL else "")
        self._clean()
        return Outcome(rc, _tail(self.workdir / ".stdout"), _tail(self.workdir / ".stderr"),
                       self.timed_out, oom, self.elapsed(), self.reason, self.detail)

    def _clean(self) -> None:
        """Leave only the results: scratch files go (without bubblewrap), and everything after a disk kill."""
        if self.reason == "disk":
            shutil.rmtree(self.out, ignore_errors=True)
            self.out.mkdir(exist_ok=True)
        if not self.bwrap:
            for p in self.workdir.iterdir():
                if p not in self.inputs and p.name not in (OUTPUT, ".stdout", ".stderr"):
                    if p.is_dir() and not p.is_symlink():
                        shutil.rmtree(p, ignore_errors=True)
                    else:
                        p.unlink(missing_ok=True)


def _tail(path: Path, limit: int = 20000) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - limit))
            return f.read().decode("utf-8", "replace")
    except OSError:
        return ""
