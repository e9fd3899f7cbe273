"""The HTML feedback a student gets back: right when it is returned, readable with no network.

nbgrader's ``GenerateFeedback`` writes it, with the preprocessors of :func:`preprocessors` and
:class:`FeedbackExporter`:

- an answer still to be graded by hand says "awaiting a hand grade", never "0 / 2", and the notebook's total
  reads "graded so far" until every cell is graded (:class:`HandGradeStatus`);
- math is MathML made here from the TeX (:func:`to_mathml`), which browsers render natively: no MathJax from a
  CDN, no script at all, so it also reads offline and in an LMS preview that runs no scripts;
- a demo's output shows its static image, since the page has no kernel for the live widgets;
- long lines of text output wrap instead of running off the page.
"""

from __future__ import annotations

import copy
import html
import re
from pathlib import Path

from nbconvert.exporters import HTMLExporter
from nbgrader.preprocessors import NbGraderPreprocessor as Preprocessor  # enabled by default, unlike nbconvert's

from .course import WIDGET_VIEW

TEMPLATES = Path(__file__).with_name("templates")
TEMPLATE = "course_feedback"

# Code is never math: fenced blocks and inline code spans are set aside before math is looked for.
_CODE = re.compile(r"(```.*?```|~~~.*?~~~|`[^`\n]+`)", re.S)
_MATH = re.compile(r"(?<!\\)\$\$(.+?)\$\$|\\\[(.+?)\\\]|\\begin\{(equation|align|gather)(\*?)\}(.+?)\\end\{\3\4\}"
                   r"|(?<![\\$])\$(?!\s)((?:[^$\n]|\n(?!\s*\n))+?)(?<!\\)\$(?!\d)", re.S)


def to_mathml(tex: str, display: bool) -> str:
    """MathML for the TeX ``tex`` (latex2mathml); the TeX itself, marked as code, where it cannot be converted."""
    from latex2mathml.converter import convert
    # latex2mathml knows split, align and align* but not aligned, which lines up the same way; nor \arg; and it
    # keeps the backslash of an escaped character in text.
    tex = re.sub(r"\\(begin|end)\{aligned\}", r"\\\1{split}", tex.strip())
    tex = re.sub(r"\\arg(?![A-Za-z])", r"\\operatorname{arg}", tex)
    tex = re.sub(r"\\text\{([^{}]*)\}", lambda m: "\\text{" + re.sub(r"\\([&%$#_])", r"\1", m.group(1)) + "}", tex)
    try:
        return convert(tex, display="block" if display else "inline")
    except Exception:  # noqa: BLE001 - one expression the converter does not know stays readable as TeX
        return f"<code>{html.escape(tex)}</code>"


def _set_aside_math(text: str, table: dict[str, str]) -> str:
    """``text`` with each math expression replaced by a token the Markdown renderer leaves alone."""
    parts = _CODE.split(text)
    for i in range(0, len(parts), 2):                    # even parts are outside code
        def token(m: re.Match) -> str:
            if m.group(6) is not None:
                mathml = to_mathml(m.group(6), display=False)
            elif m.group(5) is not None:           # an environment: equation is plain math, the others stay
                env = m.group(3) + m.group(4)
                body = m.group(5) if m.group(3) == "equation" else f"\\begin{{{env}}}{m.group(5)}\\end{{{env}}}"
                mathml = to_mathml(body, display=True)
            else:
                mathml = to_mathml(m.group(1) if m.group(1) is not None else m.group(2), display=True)
            key = f"MATHTOKEN{len(table):05d}X"
            table[key] = mathml
            return key
        parts[i] = _MATH.sub(token, parts[i])
    return "".join(parts)


class FeedbackExporter(HTMLExporter):
    """nbconvert's HTML exporter with the notebook's math turned into MathML first (no MathJax needed)."""

    def from_notebook_node(self, nb, resources=None, **kw):
        nb = copy.deepcopy(nb)
        table: dict[str, str] = {}
        for cell in nb.cells:
            if cell.cell_type == "markdown":
                cell.source = _set_aside_math(cell.source, table)
            for output in cell.get("outputs", []):
                data = output.get("data", {})
                if "text/markdown" in data:
                    data["text/markdown"] = _set_aside_math(data["text/markdown"], table)
        body, resources = super().from_notebook_node(nb, resources, **kw)
        # Inside a tag (a heading's anchor id) a formula is left out; everywhere else it becomes MathML.
        body = re.sub(r"<[^<>]*MATHTOKEN[^<>]*>", lambda m: re.sub(r"MATHTOKEN\d{5}X", "", m.group(0)), body)
        for key, mathml in table.items():
            body = body.replace(key, mathml)
        return body, resources


class StaticDemos(Preprocessor):
    """A demo's output holds its live widgets and a static image: feedback HTML has no kernel, show the image."""

    def preprocess_cell(self, cell, resources, index):
        for output in cell.get("outputs", []):
            data = output.get("data", {})
            if WIDGET_VIEW in data and "image/png" in data:
                del data[WIDGET_VIEW]
        return cell, resources


class HandGradeStatus(Preprocessor):
    """Mark each graded cell that awaits a hand grade, and total what is graded so far (runs after GetGrades).

    Sets ``cell.metadata.nbgrader.awaiting`` and, in ``resources["nbgrader"]``, ``awaiting_points`` (the points
    still to be graded) and ``graded_max`` (the points of the cells graded so far).
    """

    def preprocess(self, nb, resources):
        from nbgrader.api import Gradebook
        info = resources["nbgrader"]
        awaiting, graded_max = 0.0, 0.0
        with Gradebook(info["db_url"]) as gb:
            notebook = gb.find_submission_notebook(info["notebook"], info["assignment"], info["student"])
            pending = {g.name: bool(g.needs_manual_grade) for g in notebook.grades}
            for g in notebook.grades:
                if pending[g.name]:
                    awaiting += float(g.max_score or 0)
                else:
                    graded_max += float(g.max_score or 0)
        for cell in nb.cells:
            meta = cell.get("metadata", {}).get("nbgrader")
            if meta and meta.get("grade_id") in pending:
                meta["awaiting"] = pending[meta["grade_id"]]
        info["awaiting_points"], info["graded_max"] = awaiting, graded_max
        return nb, resources


def preprocessors() -> list:
    """The feedback's preprocessors, in order: hidden tests out, grades in, hand-grade status, static demos."""
    from nbconvert.preprocessors import CSSHTMLHeaderPreprocessor
    from nbgrader.preprocessors import ClearHiddenTests, GetGrades
    return [ClearHiddenTests, GetGrades, HandGradeStatus, StaticDemos, CSSHTMLHeaderPreprocessor]


def configure(config) -> None:
    """Point nbgrader's ``GenerateFeedback`` at this module's exporter, template and preprocessors."""
    import nbgrader
    config.GenerateFeedback.preprocessors = preprocessors()
    config.GenerateFeedback.exporter_class = FeedbackExporter
    # Its own section: nbgrader's API sets HTMLExporter.template_name to its own "feedback" on every call.
    config.FeedbackExporter.template_name = TEMPLATE
    config.FeedbackExporter.extra_template_basedirs = [
        str(TEMPLATES), str(Path(nbgrader.__file__).parent / "server_extensions" / "formgrader" / "templates")]
