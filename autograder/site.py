"""``make site``: the course as a static web site, to read it without installing anything.

Pages, in this order: the course map (``course/README.md``, the index), the notation page, then each
student release (``assignments/<id>/<id>.ipynb``) executed as JupyterLab's Run All does, in a scratch
folder: cells tagged ``raises-exception`` (the visible checks of blank exercises) may raise, any other
error stops the build and names the cell. The demos run on the library's reference, as in a blank release.

For the site each executed notebook gets:

- its launch links (Binder in JupyterLab, Colab) and a download link of the release, under its title;
  the repository comes from ``[project.urls] Repository`` in ``pyproject.toml``;
- helper cells (``jupyter.source_hidden``) folded: myst-nb's ``hide-input``;
- widget outputs without the widget view (``application/vnd.jupyter.widget-view+json``): a page has no
  kernel, so a demo shows the static image (``image/png``) its bundle carries.

Jupyter Book 1 (Sphinx, sphinx-book-theme, myst-nb) then builds the HTML with execution off; Jupyter Book
2 fetches its theme from a server at build time, so it cannot build offline. MathJax 3 is the copy that
the ``django-static-mathjax`` package ships (plain files), served from the site itself: no page loads
anything from another host. ``python -m autograder.site [--out DIR]`` (``make site``) prints where the index is.
"""

from __future__ import annotations

import argparse
import copy
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import urlparse

import nbformat
import yaml

from .build import RELEASE, run_all
from .build import repository_url as _repository_url
from .course import COURSE, REPO, WIDGET_VIEW

SITE = REPO / "build" / "site"
TITLE = "Second-Order Methods"
# MathJax 3, the component Sphinx loads from its CDN by default, here from the site's _static/mathjax/.
MATHJAX = "mathjax/tex-mml-chtml.js"
# textmacros, as in JupyterLab: \text{(N\&W 6.6)} shows an ampersand, not "\&".
MATHJAX_CONFIG = {"loader": {"load": ["[tex]/textmacros"]}, "tex": {"packages": {"[+]": ["textmacros"]}}}
# The other entry points of MathJax's es5/ build: a page loads only tex-mml-chtml.js and what it asks for.
MATHJAX_UNUSED = ("tex-svg*.js", "tex-chtml*.js", "tex-mml-svg.js", "mml-*.js", "node-main.js", "latest.js")


def repository() -> str:
    """``OWNER/NAME`` of ``[project.urls] Repository`` in ``pyproject.toml``."""
    return urlparse(_repository_url()).path.strip("/").removesuffix(".git")


def launch_links(aid: str, repo: str | None = None) -> dict[str, str]:
    """Binder (JupyterLab) and Colab URLs of the release ``assignments/<aid>/<aid>.ipynb``."""
    repo = repo or repository()
    path = f"assignments/{aid}/{aid}.ipynb"
    return {"binder": f"https://mybinder.org/v2/gh/{repo}/HEAD?urlpath=lab/tree/{path}",
            "colab": f"https://colab.research.google.com/github/{repo}/blob/main/{path}"}


def released_sections(releases: Path = RELEASE) -> list[str]:
    return sorted(p.name for p in releases.iterdir() if (p / f"{p.name}.ipynb").is_file())


def execute_release(aid: str, releases: Path = RELEASE) -> nbformat.NotebookNode:
    """``<releases>/<aid>/<aid>.ipynb`` run as Run All does, in a scratch copy of its folder."""
    with tempfile.TemporaryDirectory(prefix=f"site-{aid}-") as tmp:
        work = Path(tmp)
        shutil.copytree(releases / aid, work, dirs_exist_ok=True)
        nb = nbformat.read(work / f"{aid}.ipynb", as_version=4)
        problems = run_all(nb, work)
    if problems:
        raise RuntimeError(f"{aid} does not run to the end: {'; '.join(problems)}")
    return nb


def _header(aid: str, links: Mapping[str, str]) -> str:
    return (f'<p class="launch-links">Run it: <a class="launch-binder" href="{links["binder"]}">Binder</a>'
            f' · <a class="launch-colab" href="{links["colab"]}">Colab</a>'
            f' · <a class="download-notebook" href="{aid}.ipynb" download>download the notebook (.ipynb)</a></p>')


def page_notebook(executed: nbformat.NotebookNode, aid: str, repo: str | None = None) -> nbformat.NotebookNode:
    """What the site shows of an executed release: launch links, helpers folded, static demo views."""
    nb = copy.deepcopy(executed)
    nb.metadata.pop("widgets", None)     # the widget state: with it the page would load the widget scripts
    header = _header(aid, launch_links(aid, repo))
    first = nb.cells[0]
    if first.cell_type == "markdown" and first.source.startswith("# "):
        title, _, rest = first.source.partition("\n")
        first.source = f"{title}\n\n{header}\n\n{rest.lstrip()}"
    else:
        nb.cells.insert(0, nbformat.v4.new_markdown_cell(header))
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        tags = cell.metadata.setdefault("tags", [])
        if cell.metadata.get("jupyter", {}).get("source_hidden") and "hide-input" not in tags:
            tags.append("hide-input")
        outputs = []
        for output in cell.outputs:
            data = output.get("data", {})
            if WIDGET_VIEW in data:
                data.pop(WIDGET_VIEW)
                data.pop("text/plain", None)     # the widget's repr ("VBox(...)"), not a result
                if not data:
                    continue
            outputs.append(output)
        cell.outputs = outputs
    return nb


def _config(repo: str) -> dict:
    return {
        "title": TITLE,
        "only_build_toc_files": True,
        "execute": {"execute_notebooks": "off"},
        "repository": {"url": f"https://github.com/{repo}", "branch": "main"},
        "html": {"use_repository_button": True, "use_edit_page_button": False, "use_issues_button": False},
        "launch_buttons": {"binderhub_url": "", "colab_url": "", "thebe": False},
        "sphinx": {"config": {
            "mathjax_path": MATHJAX,
            "mathjax3_config": MATHJAX_CONFIG,
            # Not "_static": Jupyter Book would add every .js file of a folder of that name to each page.
            "html_static_path": ["_mathjax"],
            "html_copy_source": False,
            "html_show_sourcelink": False,
            "html_theme_options": {"use_download_button": False},
            # An error output (a visible check that failed) is not a traceback Pygments can lex.
            "suppress_warnings": ["misc.highlighting_failure"],
        }},
    }


def _mathjax_files() -> Path:
    import mathjax  # django-static-mathjax: MathJax's own release files

    return Path(mathjax.__file__).parent / "static" / "mathjax" / "es5"


def write_sources(src: Path, pages: Mapping[str, nbformat.NotebookNode], repo: str) -> None:
    """The Jupyter Book source folder: config, table of contents, the two course pages, the notebooks."""
    shutil.copyfile(COURSE / "README.md", src / "index.md")     # its links ("01_x/01_x.ipynb") stay valid
    shutil.copyfile(COURSE / "notation.md", src / "notation.md")
    for aid, nb in pages.items():
        (src / aid).mkdir()
        nbformat.write(nb, src / aid / f"{aid}.ipynb")
    shutil.copytree(_mathjax_files(), src / "_mathjax" / "mathjax",     # served as _static/mathjax/
                    ignore=shutil.ignore_patterns(*MATHJAX_UNUSED))
    (src / "_config.yml").write_text(yaml.safe_dump(_config(repo), sort_keys=False))
    toc = {"format": "jb-book", "root": "index",
           "chapters": [{"file": "notation"}] + [{"file": f"{aid}/{aid}"} for aid in pages]}
    (src / "_toc.yml").write_text(yaml.safe_dump(toc, sort_keys=False))


def build_site(out: Path = SITE, releases: Path = RELEASE,
               executed: Mapping[str, nbformat.NotebookNode] | None = None) -> Path:
    """Build the site into ``out`` (replaced); return its ``index.html``.

    ``executed`` maps section ids to releases already run (the test suite passes its own runs);
    the others are executed here, one after the other.
    """
    repo = repository()
    pages = {}
    for aid in released_sections(releases):
        if executed is not None and aid in executed:
            nb = executed[aid]
        else:
            print(f"executing {aid} ...", flush=True)
            nb = execute_release(aid, releases)
        pages[aid] = page_notebook(nb, aid, repo)
    with tempfile.TemporaryDirectory(prefix="site-") as tmp:
        src = Path(tmp) / "book"
        src.mkdir()
        write_sources(src, pages, repo)
        print("building the HTML ...", flush=True)
        jb = Path(sys.executable).with_name("jupyter-book")
        done = subprocess.run([str(jb), "build", "--quiet", "--keep-going", "-W", str(src)],
                              capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"jupyter-book build failed:\n{done.stdout}\n{done.stderr}")
        if out.exists():
            shutil.rmtree(out)
        out.parent.mkdir(parents=True, exist_ok=True)
        shutil.copytree(src / "_build" / "html", out)
    for aid in pages:       # the download link: the release as students get it, not the executed copy
        shutil.copyfile(releases / aid / f"{aid}.ipynb", out / aid / f"{aid}.ipynb")
    return out / "index.html"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m autograder.site", description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=SITE, help=f"output folder (default: {SITE.relative_to(REPO)})")
    parser.add_argument("--releases", type=Path, default=RELEASE,
                        help="folder of student releases <id>/<id>.ipynb (default: assignments)")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    try:
        index = build_site(args.out.resolve(), args.releases.resolve())
    except RuntimeError as exc:
        print(exc, file=sys.stderr)
        return 1
    print(f"site built in {time.perf_counter() - start:.0f} s: {index}")
    print(f"read it at http://127.0.0.1:8000/ after: python -m http.server -d {args.out} -b 127.0.0.1 8000")
    return 0


if __name__ == "__main__":
    sys.exit(main())
