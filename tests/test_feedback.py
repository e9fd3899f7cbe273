"""The feedback a student gets back shows each demo's static view, not an empty widget placeholder."""

import nbformat

from autograder.course import WIDGET_VIEW
from autograder.grade import _feedback_preprocessors


def test_feedback_shows_the_static_view_of_a_demo_and_leaves_other_outputs_alone():
    static_demos = next(p for p in _feedback_preprocessors() if p.__name__ == "StaticDemos")()
    demo = nbformat.v4.new_output("display_data", data={WIDGET_VIEW: {"model_id": "x"}, "image/png": "iVBOR",
                                                        "text/plain": "Demo"})
    widget_only = nbformat.v4.new_output("display_data", data={WIDGET_VIEW: {"model_id": "y"}, "text/plain": "w"})
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("demo.show()", outputs=[demo, widget_only])])
    nb, _ = static_demos.preprocess(nb, {})
    first, second = nb.cells[0].outputs
    assert WIDGET_VIEW not in first.data and first.data["image/png"] == "iVBOR"
    assert WIDGET_VIEW in second.data                 # nothing to show in its place: left as it was
