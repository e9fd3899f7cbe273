"""The course site (``make site``): every section's page, its figures, blank exercises, launch links, no CDN.

The ``site`` fixture (tests/conftest.py) builds it once per session from the section tests' Run All runs.
"""

import re
from pathlib import Path
from urllib.parse import urlparse

import pytest

from autograder.build import _sections
from autograder.site import launch_links, repository

pytestmark = pytest.mark.slow
SECTIONS = _sections(None)


def _page(site: Path, aid: str) -> str:
    return (site / aid / f"{aid}.html").read_text(encoding="utf-8")


def test_the_index_links_every_section_and_the_notation_page(site):
    index = (site / "index.html").read_text(encoding="utf-8")
    for aid in SECTIONS:
        assert f"{aid}/{aid}.html" in index, f"the index does not link {aid}"
    assert "notation.html" in index


@pytest.mark.parametrize("aid", SECTIONS)
def test_a_section_page_has_its_figures_blank_exercises_and_well_formed_launch_links(site, aid):
    html = _page(site, aid)
    images = re.findall(r'<img[^>]+src="([^"]+)"', html)
    pngs = [src for src in images if src.endswith(".png") or src.startswith("data:image/png")]
    assert pngs, f"{aid}: no figure on the page"
    for src in pngs:
        if not src.startswith("data:"):
            assert (site / aid / src).resolve().stat().st_size > 1000, f"{aid}: empty figure {src}"
    assert "### BEGIN SOLUTION" not in html and "Model answer" not in html, f"{aid}: a solution is on the page"
    assert "NotImplementedError" in html                 # the exercises are the blank release's
    assert "widget-view+json" not in html                # demos show their static view: no kernel here
    links = launch_links(aid)
    for name, url in links.items():
        assert url.replace("&", "&amp;") in html or url in html, f"{aid}: no {name} link"
        parsed = urlparse(url)
        assert parsed.scheme == "https" and repository() in parsed.path + parsed.query
        assert url.endswith(f"assignments/{aid}/{aid}.ipynb")
    assert (site / aid / f"{aid}.ipynb").is_file(), f"{aid}: the download link has no file"


def test_helper_code_is_folded(site):
    hidden = sum(_page(site, aid).count("tag_hide-input") for aid in SECTIONS)
    assert hidden >= len(SECTIONS), "helper cells are shown as plain input"


def test_no_page_loads_anything_from_another_host(site):
    for page in site.rglob("*.html"):
        html = page.read_text(encoding="utf-8")
        remote = re.findall(r'<(?:script|link|img)[^>]+(?:src|href)="(https?://[^"]+)"', html)
        assert not remote, f"{page.relative_to(site)} loads {remote[:3]}"
    assert list(site.rglob("tex-mml-chtml.js")), "MathJax is not shipped with the site"
