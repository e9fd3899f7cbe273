"""Real-browser fixtures: one JupyterLab server and one headless Chromium for the whole session.

The server runs on loopback with a random token in a scratch copy of the course (so that nothing it
saves, and no gradebook it creates, lands in the repository), with its own settings (no autosave, no
news, every cell rendered) and its own workspace. It is stopped by PID at the end, also on failure,
together with any kernel it leaves behind. Chromium is Debian's (`apt-get install chromium`), driven
by Playwright; `playwright install` is never needed.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from .labserver import COPIED, REPO, SHOTS, chromium_path, start_lab, stop


def pytest_collection_modifyitems(config, items):
    """Browser tests run last: the rest of the suite never waits behind the server."""
    items.sort(key=lambda item: item.get_closest_marker("browser") is not None)


@pytest.fixture(scope="session")
def chromium() -> str:
    path = chromium_path()
    if path is None:
        pytest.skip("no Chromium (apt-get install chromium)")
    return path


@pytest.fixture(scope="session")
def browser(chromium):
    """One headless Chromium for the session."""
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (make env)")
    with sync_api.sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=chromium, args=["--no-sandbox", "--disable-gpu"])
        try:
            yield b
        finally:
            b.close()


@pytest.fixture(scope="session")
def lab(tmp_path_factory, chromium):
    """One JupyterLab server for the session, serving a scratch copy of the course; stopped by PID."""
    base = tmp_path_factory.mktemp("lab")
    root = base / "course-root"
    root.mkdir()
    for name in COPIED:
        src = REPO / name
        if src.is_dir():
            shutil.copytree(src, root / name, ignore=shutil.ignore_patterns(".ipynb_checkpoints"))
        elif src.exists():
            shutil.copy2(src, root / name)
    server = start_lab(root, base)
    try:
        yield server
    finally:
        stop(server.proc)


@pytest.fixture(scope="session")
def shots() -> Path:
    """The folder screenshots are written to (git-ignored), emptied once per session."""
    shutil.rmtree(SHOTS, ignore_errors=True)
    SHOTS.mkdir()
    return SHOTS


@pytest.fixture(scope="session")
def browser_context(browser, lab):
    """One browser context: JupyterLab's scripts are fetched once and cached for every page."""
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    try:
        yield context
    finally:
        context.close()
        for thread in _shutdowns:
            thread.join(timeout=30)


_shutdowns = []


@pytest.fixture
def page(browser_context, lab):
    """A fresh page; the kernels it started are shut down after the test (in the background)."""
    pg = browser_context.new_page()
    pg.set_default_timeout(60_000)
    try:
        yield pg
    finally:
        pg.close()
        try:
            _shutdowns.append(lab.shutdown_kernels())
        except OSError:
            pass
