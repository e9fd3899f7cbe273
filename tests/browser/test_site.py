"""The course site in Chromium: math typeset by the site's own MathJax, figures loaded, launch links there."""

import functools
import http.server
import threading

import pytest

from autograder.build import _sections

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def served(site):
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(site))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_the_index_and_two_sections_render_with_math_figures_and_launch_links(browser, served, shots):
    context = browser.new_context(viewport={"width": 1400, "height": 1000}, offline=False)
    page = context.new_page()
    remote = []
    page.on("request", lambda r: remote.append(r.url) if not r.url.startswith(served) and
            not r.url.startswith("data:") else None)
    page.goto(f"{served}/index.html")
    assert "Second-Order Methods" in page.title()
    sections = _sections(None)
    for aid in (sections[0], sections[-1]):
        page.goto(f"{served}/{aid}/{aid}.html")
        page.wait_for_function("() => document.querySelectorAll('mjx-container').length > 20", timeout=60_000)
        page.screenshot(path=str(shots / f"site-{aid}.png"))
        text = page.inner_text("main")
        assert "$$" not in text and "\\frac" not in text, f"{aid}: raw TeX left on the page"
        sizes = page.evaluate("() => Array.from(document.querySelectorAll('main img')).map(i => i.naturalWidth)")
        assert sizes and all(w > 0 for w in sizes), f"{aid}: figures not loaded: {sizes}"
        for cls in ("launch-binder", "launch-colab", "download-notebook"):
            assert page.locator(f"a.{cls}").count() >= 1, f"{aid}: no {cls} link"
    context.close()
    assert not remote, f"the site asked another host for {remote[:3]}"
