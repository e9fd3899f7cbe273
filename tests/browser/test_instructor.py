"""The instructor round in a real browser: grade, hand-grade in the Formgrader, grade again, read the feedback.

nbgrader's documentation example (``ps1``, shipped in the nbgrader package) is graded by ``python -m autograder
grade``; the instructor's JupyterLab (``deploy/jupyter/instructor``, as ``make lab-instructor`` starts it, in the
grading folder) opens the Formgrader, where a written answer gets a score and a comment typed into the page;
the same grade command again rewrites that student's feedback, which Chromium then shows with the new score,
the comment, rendered math and no request to another host.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import nbgrader
import pytest

from .labserver import REPO, start_lab, stop

pytestmark = pytest.mark.browser
EXAMPLE = Path(nbgrader.__file__).parent / "docs" / "source" / "user_guide"


@pytest.mark.skipif(not (EXAMPLE / "source" / "ps1").is_dir(), reason="nbgrader ships no example course")
def test_a_hand_grade_typed_in_the_formgrader_reaches_the_returned_feedback(browser, tmp_path, shots):
    sys.path[:0] = [str(REPO)]
    from nbgrader.api import Gradebook

    from autograder.grade import Grader

    course = tmp_path / "course"
    shutil.copytree(EXAMPLE / "source" / "ps1", course / "ps1")
    out = tmp_path / "grading"
    Grader(out, course=course, jobs=2).grade(EXAMPLE / "submitted")
    with Gradebook(f"sqlite:///{out / 'gradebook.db'}") as gb:
        notebook_id = gb.find_submission_notebook("problem1", "ps1", "bitdiddle").id

    lab = start_lab(out, tmp_path / "home",
                    env_extra={"JUPYTER_CONFIG_PATH": str(REPO / "deploy" / "jupyter" / "instructor")})
    try:
        # Logged in for every request the Formgrader's page makes, as a person's login cookie would be.
        context = browser.new_context(viewport={"width": 1300, "height": 1000},
                                      extra_http_headers={"Authorization": f"token {lab.token}"})
        page = context.new_page()
        with page.expect_response(lambda r: "/formgrader/api/grades?" in r.url, timeout=60_000) as grades:
            page.goto(f"{lab.url}/formgrader/submissions/{notebook_id}/")
        assert grades.value.ok and grades.value.text().lstrip().startswith("["), grades.value.text()[:300]
        score = page.locator("input.score#sum_of_squares_equation")
        score.wait_for(timeout=60_000)
        with page.expect_response(lambda r: "/formgrader/api/grade/" in r.url and r.request.method == "PUT"):
            score.fill("1")
            score.press("Tab")                   # the Formgrader saves a score on change
        comment = page.locator("textarea#sum_of_squares_equation-comment")
        with page.expect_response(lambda r: "/formgrader/api/comment/" in r.url and r.request.method == "PUT"):
            comment.fill("Right formula; say where it comes from.")
            comment.press("Tab")
        page.screenshot(path=str(shots / "instructor-formgrader-hand-grade.png"))
        context.close()
    finally:
        stop(lab.proc)

    grader = Grader(out, course=course, jobs=2)
    rows = grader.grade(EXAMPLE / "submitted")
    assert grader.stats["refreshed"] == 1 and grader.stats["graded"] == 0
    row = next(r for r in rows if (r["grading_id"], r["grade_id"]) == ("bitdiddle", "sum_of_squares_equation"))
    assert (row["score"], row["status"]) == ("1", "hand-graded")

    context = browser.new_context(viewport={"width": 1100, "height": 1000})
    page = context.new_page()
    outside = []
    page.route("**/*", lambda route: (outside.append(route.request.url), route.abort())
               if not route.request.url.startswith(("file:", "data:")) else route.continue_())
    page.goto((out / "feedback" / "bitdiddle" / "ps1" / "problem1.html").as_uri())
    text = page.inner_text("body")
    page.screenshot(path=str(shots / "instructor-feedback-after-hand-grade.png"), full_page=True)
    math_height = page.evaluate("() => Math.max(...[...document.querySelectorAll('math')]"
                                ".map(m => m.getBoundingClientRect().height))")
    context.close()
    assert "Right formula; say where it comes from." in text
    assert "Score so far: 2.5 / 6" in text and "awaiting a hand grade" in text   # the task and part-b remain
    assert math_height > 8                     # MathML laid out by the browser itself, no script
    assert outside == []
