"""JupyterLab for the browser tests: start one on loopback with a token, stop it and its kernels by PID."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SHOTS = REPO / "browser-screenshots"
COPIED = ("course", "assignments", "solutions", "nbgrader_config.py")
SETTINGS = {
    # A notebook the tests run must not be written back; the news request would go nowhere.
    "@jupyterlab/docmanager-extension/plugin.jupyterlab-settings": {"autosave": False},
    "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {"fetchNews": "false",
                                                                        "checkForUpdates": False},
    # Every cell in the DOM, so that what the tests read is what a scrolled-through page shows.
    "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {"windowingMode": "none"},
}


def chromium_path() -> str | None:
    """Debian's Chromium, or a ``chromium`` on PATH; None when there is none."""
    if os.access("/usr/bin/chromium", os.X_OK):
        return "/usr/bin/chromium"
    return shutil.which("chromium")


@dataclass
class Lab:
    """A running JupyterLab: its base URL, token, the folder it serves and its process."""

    url: str
    token: str
    root: Path
    proc: subprocess.Popen
    log: Path

    def api(self, path: str, method: str = "GET") -> object:
        req = urllib.request.Request(f"{self.url}{path}", method=method,
                                     headers={"Authorization": f"token {self.token}"})
        with urllib.request.urlopen(req, timeout=30) as resp:
            body = resp.read()
        return json.loads(body) if body else None

    def page_url(self, path: str) -> str:
        return f"{self.url}/lab/tree/{path}?token={self.token}&reset"

    def shutdown_kernels(self) -> threading.Thread:
        """Stop every kernel session, in the background (the server takes seconds per kernel)."""
        sessions = self.api("/api/sessions")

        def delete():
            for session in sessions:
                try:
                    self.api(f"/api/sessions/{session['id']}", method="DELETE")
                except OSError:
                    pass

        thread = threading.Thread(target=delete, daemon=True)
        thread.start()
        return thread

    def log_tail(self, n: int = 4000) -> str:
        return self.log.read_text(errors="replace")[-n:]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def stop(proc: subprocess.Popen) -> None:
    """SIGTERM the server (it shuts its kernels down), then SIGKILL it and any kernel left, by PID."""
    try:
        import psutil
        children = psutil.Process(proc.pid).children(recursive=True)
    except Exception:  # psutil missing or the server already gone
        children = []
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
    for child in children:
        try:
            if child.is_running():
                os.kill(child.pid, signal.SIGKILL)
        except (ProcessLookupError, Exception):
            pass


def start_lab(root: Path, home: Path, env_extra: dict[str, str] | None = None, timeout: float = 90.0) -> Lab:
    """Start ``jupyter lab`` serving ``root`` on a free loopback port; wait until it answers."""
    settings, workspaces = home / "settings", home / "workspaces"
    for name, values in SETTINGS.items():
        path = settings / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(values))
    workspaces.mkdir(parents=True, exist_ok=True)
    token, port = secrets.token_hex(16), _free_port()
    env = dict(os.environ, OMP_NUM_THREADS="1", JUPYTERLAB_SETTINGS_DIR=str(settings),
               JUPYTERLAB_WORKSPACES_DIR=str(workspaces), PYTHONUNBUFFERED="1", **(env_extra or {}))
    jupyter = Path(sys.executable).parent / "jupyter"
    cmd = [str(jupyter) if jupyter.exists() else "jupyter", "lab", "--no-browser", "--ip", "127.0.0.1",
           "--port", str(port), f"--ServerApp.token={token}", f"--ServerApp.root_dir={root}",
           "--LabApp.expose_app_in_browser=True", "--ServerApp.open_browser=False"]
    if os.geteuid() == 0:
        cmd.append("--allow-root")
    log = home / "server.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, cwd=root, env=env, stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL)
    lab = Lab(f"http://127.0.0.1:{port}", token, root, proc, log)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"jupyter lab exited with {proc.returncode}:\n{lab.log_tail()}")
        try:
            lab.api("/api/status")
            return lab
        except OSError:
            time.sleep(0.3)
    stop(proc)
    raise RuntimeError(f"jupyter lab did not answer within {timeout:.0f} s:\n{lab.log_tail()}")
