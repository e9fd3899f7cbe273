"""The feedback a student gets back: each demo's static view, not an empty widget placeholder; math as MathML."""

import glob
import re

import nbformat
import pytest
from traitlets.config import Config

from autograder.course import REPO, WIDGET_VIEW
from autograder.feedback import FeedbackExporter, StaticDemos, _set_aside_math, configure, preprocessors


def test_feedback_shows_the_static_view_of_a_demo_and_leaves_other_outputs_alone():
    assert StaticDemos in preprocessors() and StaticDemos().enabled   # nbconvert's default is off
    static_demos = StaticDemos()
    demo = nbformat.v4.new_output("display_data", data={WIDGET_VIEW: {"model_id": "x"}, "image/png": "iVBOR",
                                                        "text/plain": "Demo"})
    widget_only = nbformat.v4.new_output("display_data", data={WIDGET_VIEW: {"model_id": "y"}, "text/plain": "w"})
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("demo.show()", outputs=[demo, widget_only])])
    nb, _ = static_demos.preprocess(nb, {})
    first, second = nb.cells[0].outputs
    assert WIDGET_VIEW not in first.data and first.data["image/png"] == "iVBOR"
    assert WIDGET_VIEW in second.data                 # nothing to show in its place: left as it was


def test_math_becomes_mathml_and_code_stays_code():
    table = {}
    text = _set_aside_math("The update $H_{k+1} y_k = s_k$ costs `$O(n^2)$` and\n$$\\rho_k = 1/y_k^T s_k$$ "
                           "for \\$5 or \\begin{align} a &= b \\\\ c &= d \\end{align}", table)
    assert "`$O(n^2)$`" in text and "\\$5" in text                     # code spans and escaped dollars untouched
    assert len(table) == 3 and not re.search(r"\$[^$]*\$", text.replace("`$O(n^2)$`", ""))
    inline, display, aligned = table.values()
    assert inline.startswith("<math") and 'display="inline"' in inline and "<msub>" in inline
    assert 'display="block"' in display and 'display="block"' in aligned and "<mtable" in aligned


@pytest.mark.parametrize("path", sorted(glob.glob(str(REPO / "assignments" / "*" / "*.ipynb"))),
                         ids=lambda p: p.split("/")[-2])
def test_every_formula_of_the_course_renders_without_a_script(path):
    """Each release through the feedback exporter: every formula is MathML, none is left as TeX, no script."""
    nb = nbformat.read(path, as_version=4)
    nb.cells = [c for c in nb.cells if c.cell_type == "markdown"]
    config = Config()
    configure(config)
    config.FeedbackExporter.template_name = "classic"   # the exporter alone (the course template needs grades)
    body, _ = FeedbackExporter(config=config).from_notebook_node(nb)
    formulas = sum(len(re.findall(r"(?<!\\)\$\$?", c.source)) for c in nb.cells) // 2
    assert body.count("<math") >= 0.9 * formulas > 0
    assert "MATHTOKEN" not in body and "<code>\\" not in body     # every formula converted
    # No TeX left over: no dollar-delimited span outside code, no unknown command shown as a symbol.
    text = re.sub(r"<code>.*?</code>|<pre>.*?</pre>", "", body.split("<body")[1], flags=re.S)
    assert not re.findall(r"(?<!\\)\$[^$<]{1,80}\$", text)
    assert not re.findall(r"<m[io]>\\[A-Za-z]+</m[io]>", body)
    assert not re.findall(r"<[^<>]*<math", body)                    # never inside a tag (a heading's anchor)
    assert "cdnjs" not in body.split("<body")[1]
