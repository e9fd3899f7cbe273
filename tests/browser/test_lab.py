"""The course in a real browser: JupyterLab + Chromium, as a student and an instructor use it.

For every section: open the blank student release, Run All, wait for the kernel to go idle, and
require that every code cell ran, the only errors being the visible checks of the unwritten
exercises (cells tagged ``raises-exception``, each showing its short diagnosis); then move one control
of the section's demo (a slider where there is one) and require the figure to change within the
latency budget. (The worked solutions run top to bottom in tests/test_sections.py.)
nbgrader's Validate passes on a solution and fails on a blank release; the Formgrader lists the
course's assignments; with the Binder set-up (postBuild) the instructor's tools are gone.

Screenshots for review go to ``browser-screenshots/`` (git-ignored), with ``timings.json``.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
from pathlib import Path

import pytest
from test_repo import postbuild_commands

from autograder.build import _sections

from .labserver import REPO, start_lab, stop

pytestmark = pytest.mark.browser

# Sections whose release is built: a section still being written is skipped until it is.
SECTIONS = [aid for aid in _sections(None) if (REPO / "assignments" / aid / f"{aid}.ipynb").exists()]
LATENCY_BUDGET_S = 2.0      # a demo redraws in < 200 ms of kernel CPU; the rest is the browser round trip
RUN_ALL_TIMEOUT_S = 240.0   # per notebook, generous for two busy cores (the execution test owns the budget)
VALIDATE_TIMEOUT_MS = 240_000
TIMINGS: dict[str, dict] = {}
ANSI = re.compile(r"\x1b\[[0-9;]*m")

# Kernel status and per-cell state, read from the notebook model of the current tab.
NOTEBOOK_STATE = """() => {
  const w = window.jupyterapp.shell.currentWidget;
  if (!w || !w.content || !w.sessionContext) return null;
  const kernel = w.sessionContext.session && w.sessionContext.session.kernel;
  const code = w.content.widgets.map((c, i) => [i, c]).filter(([i, c]) => c.model.type === 'code');
  const errors = [];
  for (const [i, c] of code) {
    const tags = (c.model.getMetadata ? c.model.getMetadata('tags') : c.model.metadata.get('tags')) || [];
    for (const o of c.model.outputs.toJSON()) {
      if (o.output_type === 'error') errors.push({cell: i, ename: o.ename, evalue: o.evalue,
                                                 expected: tags.includes('raises-exception'),
                                                 traceback: o.traceback.join('\\n')});
    }
  }
  return {kernel: kernel ? kernel.status : 'none', cells: code.length,
          running: code.filter(([i, c]) => c.model.executionState === 'running').length,
          unexecuted: code.filter(([i, c]) => c.model.executionCount === null).map(([i, c]) => i),
          errors: errors};
}"""


def _record(key: str, **values) -> None:
    TIMINGS.setdefault(key, {}).update(values)
    out = REPO / "browser-screenshots" / "timings.json"
    if out.parent.exists():
        out.write_text(json.dumps(TIMINGS, indent=1))


def open_notebook(page, lab, path: str, wait_for_kernel: bool = True) -> None:
    """Open a notebook in a fresh workspace and wait until its kernel is idle."""
    page.goto(lab.page_url(path))
    page.wait_for_selector(".jp-NotebookPanel .jp-Cell", timeout=60_000)
    if not wait_for_kernel:
        return
    page.wait_for_function("() => { const s = window.jupyterapp && window.jupyterapp.shell.currentWidget"
                           " && window.jupyterapp.shell.currentWidget.sessionContext;"
                           " return s && s.session && s.session.kernel && s.session.kernel.status === 'idle'; }",
                           timeout=90_000)


def run_all(page, timeout: float = RUN_ALL_TIMEOUT_S) -> dict:
    """Run > Run All Cells from the menu bar; return the notebook state once the kernel stays idle."""
    page.locator(".lm-MenuBar-itemLabel", has_text=re.compile(r"^Run$")).click()
    page.locator("li.lm-Menu-item[data-command='runmenu:run-all']").click()
    deadline = time.monotonic() + timeout
    quiet = 0
    state = None
    while time.monotonic() < deadline:
        state = page.evaluate(NOTEBOOK_STATE)
        if state is None:
            raise AssertionError("the notebook tab is gone")
        done = state["kernel"] == "idle" and state["running"] == 0
        started = state["errors"] or len(state["unexecuted"]) < state["cells"]
        quiet = quiet + 1 if done and started else 0
        if quiet >= 3:                       # idle for three polls in a row: the queue is empty
            return state
        page.wait_for_timeout(500)
    raise AssertionError(f"the notebook did not finish within {timeout:.0f} s: {state}")


def _describe_errors(state: dict) -> str:
    return "\n".join(f"cell {e['cell']}: {e['ename']}: {e['evalue']}\n{ANSI.sub('', e['traceback'])[-1500:]}"
                     for e in state["errors"])


CONTROLS = (("slider", ".widget-slider .noUi-handle"), ("dropdown", ".widget-dropdown select"),
            ("toggle", ".widget-toggle-buttons"))


def _demo_controls(page):
    """The first output area that holds both a figure and a control, with its controls, sliders first."""
    areas = page.locator(".jp-OutputArea-output:has(.widget-image), .jp-OutputArea-output:has(.widget-output img)")
    for i in range(areas.count()):
        area = areas.nth(i)
        controls = [(kind, area.locator(selector).nth(j)) for kind, selector in CONTROLS
                    for j in range(area.locator(selector).count())]
        if controls:
            return area, controls
    return None, []


def _image_sources(area) -> str:
    return area.evaluate("el => Array.from(el.querySelectorAll('img')).map(i => i.src).join(' ')")


def move_control(kind: str, control) -> str:
    """Move the control one step, as a person would; return what it now shows."""
    if kind == "slider":
        at_max = control.evaluate("h => h.getAttribute('aria-valuenow') === h.getAttribute('aria-valuemax')")
        control.focus()
        control.press("ArrowLeft" if at_max else "ArrowRight")
        return control.get_attribute("aria-valuetext") or control.get_attribute("aria-valuenow") or ""
    if kind == "dropdown":
        options = control.evaluate("s => Array.from(s.options).map(o => o.value)")
        current = control.input_value()
        choice = next(o for o in options if o != current)
        control.select_option(choice)
        return choice
    button = control.locator("button:not(.mod-active)").first
    label = button.inner_text()
    button.click()
    return label


def drive_demo(page, area, controls) -> tuple[str, str, str, float]:
    """Move the controls in turn until one changes the figure; return it, its label, value and the latency.

    A control may legitimately leave the figure alone (a parameter of another problem than the one
    shown), so each is given twice the budget to act before the next one is tried.
    """
    tried = []
    for kind, control in controls:
        label = control.evaluate("el => { const w = el.closest('.widget-inline-hbox, .widget-box, .lm-Widget');"
                                 " const l = w && w.querySelector('.widget-label');"
                                 " return l ? l.innerText : ''; }")
        before = _image_sources(area)
        t0 = time.perf_counter()
        shown = move_control(kind, control)
        try:
            page.wait_for_function("([el, old]) => Array.from(el.querySelectorAll('img')).map(i => i.src).join(' ')"
                                   " !== old", arg=[area.element_handle(), before],
                                   timeout=2 * LATENCY_BUDGET_S * 1000)
        except Exception:  # playwright's TimeoutError: this control did not redraw; try the next one
            tried.append(f"{kind} {label!r} to {shown!r}")
            continue
        return kind, label, shown, time.perf_counter() - t0
    raise AssertionError(f"no control changed the figure: {tried}")


@pytest.mark.parametrize("aid", SECTIONS)
def test_release_runs_to_the_end_and_its_demo_reacts(page, lab, shots, aid):
    t0 = time.perf_counter()
    open_notebook(page, lab, f"assignments/{aid}/{aid}.ipynb")
    opened = time.perf_counter() - t0
    t0 = time.perf_counter()
    state = run_all(page)
    ran = time.perf_counter() - t0
    page.screenshot(path=str(shots / f"{aid}-after-run-all.png"))
    checks = [e for e in state["errors"] if e["expected"]]
    _record(aid, open_s=round(opened, 1), run_all_s=round(ran, 1), code_cells=state["cells"],
            failing_checks=len(checks))
    unexpected = {**state, "errors": [e for e in state["errors"] if not e["expected"]]}
    assert not unexpected["errors"], f"{aid}: error output in the browser\n{_describe_errors(unexpected)}"
    assert not state["unexecuted"], f"{aid}: Run All stopped; cells that did not run: {state['unexecuted']}"
    assert checks, f"{aid}: no visible check failed on the blank release"
    for e in checks:                       # the diagnosis alone, no traceback through the library
        text = ANSI.sub("", e["traceback"])
        assert "not written yet" in text and "Traceback" not in text and "File " not in text, text

    area, controls = _demo_controls(page)
    assert area is not None, f"{aid}: no demo (a figure with a slider, dropdown or toggle) in the notebook"
    area.scroll_into_view_if_needed()
    area.screenshot(path=str(shots / f"{aid}-demo-before.png"))
    kind, label, shown, latency = drive_demo(page, area, controls)
    area.screenshot(path=str(shots / f"{aid}-demo-after.png"))
    _record(aid, control=f"{kind} {label}", moved_to=shown, latency_s=round(latency, 3))
    assert latency <= LATENCY_BUDGET_S, (
        f"{aid}: the figure changed {latency:.2f} s after the {kind} {label!r} moved (budget {LATENCY_BUDGET_S} s)")


def _validate(page, lab, path: str) -> str:
    open_notebook(page, lab, path)
    page.get_by_role("button", name="Validate").click()
    dialog = page.locator(".jp-Dialog")
    dialog.wait_for(timeout=VALIDATE_TIMEOUT_MS)
    page.wait_for_timeout(300)
    return dialog.inner_text()


@pytest.fixture(scope="module")
def validated_section():
    """Validate runs the whole notebook on the server: one section shows it, the quickest one.

    That is the section whose solution ran fastest in the browser in this session (those tests run
    first), else the first section.
    """
    if not SECTIONS:
        pytest.skip("no section has a built solution")
    ran = {aid: TIMINGS[aid]["run_all_s"] for aid in SECTIONS if "run_all_s" in TIMINGS.get(aid, {})}
    return min(ran, key=ran.get) if ran else SECTIONS[0]


def test_validate_passes_on_a_solution(page, lab, shots, validated_section):
    aid = validated_section
    t0 = time.perf_counter()
    text = _validate(page, lab, f"solutions/{aid}/{aid}.ipynb")
    _record("validate", solution=aid, solution_s=round(time.perf_counter() - t0, 1))
    page.screenshot(path=str(shots / "validate-solution.png"))
    assert "Success! Your notebook passes all the tests." in text, text[:2000]


def test_validate_fails_on_a_blank_release(page, lab, shots, validated_section):
    aid = validated_section
    t0 = time.perf_counter()
    text = _validate(page, lab, f"assignments/{aid}/{aid}.ipynb")
    _record("validate", release=aid, release_s=round(time.perf_counter() - t0, 1))
    page.screenshot(path=str(shots / "validate-blank-release.png"))
    assert "The following cell failed" in text, text[:2000]
    assert "not written yet (NotImplementedError)" in text, text[:2000]     # the check names the cause
    assert "Traceback" not in text, text[:2000]                             # ... and leads with it
    assert "Your answer to Question 1" in text, text[:2000]                 # an unanswered question names itself


def test_formgrader_lists_the_course_assignments(page, lab, shots):
    # The sections of the copy the server serves (course/ may have grown since the session began).
    sections = sorted(p.parent.name for p in (lab.root / "course").glob("*/*.ipynb") if p.stem == p.parent.name)
    assert sections, "the course has no section"
    page.goto(f"{lab.url}/formgrader?token={lab.token}")
    table = page.locator("#main-table")
    for aid in sections:
        table.get_by_text(aid, exact=True).first.wait_for(timeout=60_000)
    page.screenshot(path=str(shots / "formgrader.png"))
    rows = table.inner_text()
    missing = [aid for aid in sections if aid not in rows]
    assert not missing, f"the Formgrader does not list {missing}"


def test_binder_students_see_no_instructor_tools(browser, lab, tmp_path, shots):
    """postBuild's lab-plugin lines, applied to a scratch user config: Validate stays, the rest is gone."""
    commands = [c for c in postbuild_commands() if c[:3] == ["jupyter", "labextension", "disable"]]
    assert commands, "postBuild disables no JupyterLab plugin"
    releases = sorted(p.parent.name for p in (lab.root / "assignments").glob("*/*.ipynb") if p.stem == p.parent.name)
    if not releases:
        pytest.skip("no section has a built release")
    aid = releases[0]
    config = tmp_path / "jupyter-config"
    config.mkdir()
    env = {"JUPYTER_CONFIG_DIR": str(config)}
    jupyter = Path(lab.proc.args[0])
    for cmd in commands:
        cmd = [str(jupyter)] + cmd[1:]
        proc = subprocess.run(cmd, env={**os.environ, **env}, capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr
    student = start_lab(lab.root, tmp_path / "student", env_extra=env)
    try:
        context = browser.new_context(viewport={"width": 1400, "height": 1000})
        page = context.new_page()
        open_notebook(page, student, f"assignments/{aid}/{aid}.ipynb", wait_for_kernel=False)
        plugins = page.evaluate("""() => Object.fromEntries(
            ['menu', 'formgrader', 'create-assignment', 'assignment-list', 'course-list', 'validate-assignment']
            .map(p => [p, window.jupyterapp.hasPlugin('@jupyter/nbgrader:' + p)]))""")
        page.get_by_role("button", name="Validate").wait_for(timeout=30_000)
        menus = page.locator(".lm-MenuBar-itemLabel").all_inner_texts()
        page.screenshot(path=str(shots / "binder-student-view.png"))
        context.close()
    finally:
        stop(student.proc)
    assert plugins.pop("validate-assignment"), "Validate is missing for students"
    assert not any(plugins.values()), f"instructor plugins still loaded for students: {plugins}"
    assert "Nbgrader" not in menus, f"students still have the Nbgrader menu: {menus}"
