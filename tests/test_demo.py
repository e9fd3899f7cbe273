"""secondorder.demo: one figure updated in place, its static view, its timing; and what a failing check shows."""

import base64
import io
from unittest import mock

import ipywidgets as widgets
import matplotlib

matplotlib.use("Agg")
import matplotlib.image as mpimg  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from secondorder.demo import LIVE_DPI, STATIC_DPI, Demo, demos, latency_report  # noqa: E402
from secondorder.exercises import CheckFailed, check  # noqa: E402
from secondorder.exercises.base import Case, CaseResult, Verdict  # noqa: E402


def _demo(**kwargs):
    fig, ax = plt.subplots(figsize=(6, 2))
    plt.close(fig)
    x = np.linspace(0, 1, 50)
    (line,) = ax.plot(x, x)
    calls = []

    def update(a, kind):
        calls.append((a, kind))
        line.set_ydata(a * x if kind == "linear" else a * x**2)

    controls = {"a": widgets.FloatLogSlider(value=1.0, base=10, min=-1, max=1, description="a"),
                "kind": widgets.Dropdown(options=[("straight", "linear"), ("bent", "square")], description="kind")}
    return Demo(fig, update, controls, **kwargs), line, calls


def _size(png: bytes) -> tuple[int, int]:
    h, w = mpimg.imread(io.BytesIO(png), format="png").shape[:2]
    return w, h


def test_render_updates_the_one_figure_in_place_at_the_live_resolution():
    demo, line, calls = _demo()
    before = plt.get_fignums()
    png = demo.render(a=2.0)
    assert plt.get_fignums() == before                               # no new figure per redraw
    assert calls[-1] == (2.0, "linear")                              # missing keywords: the controls' values
    assert np.allclose(line.get_ydata(), 2.0 * line.get_xdata())
    assert _size(png) == (6 * LIVE_DPI, 2 * LIVE_DPI)


def test_static_view_is_one_captioned_panel_per_setting_at_the_static_resolution():
    demo, line, calls = _demo(static=[{"a": 0.5}, {"a": 3.0, "kind": "square"}, {"kind": "square"}])
    png = demo.static_view()
    w, h = _size(png)
    assert w == 6 * STATIC_DPI
    assert h == 3 * 2 * STATIC_DPI + 3 * round(0.32 * STATIC_DPI)   # three panels, each with its caption strip
    assert calls[:3] == [(0.5, "linear"), (3.0, "square"), (1.0, "square")]
    assert calls[-1] == (1.0, "linear")                              # left as the controls say
    assert demo.caption({"a": 3.0, "kind": "square"}) == "a = 3,   kind = bent"   # option labels, not values


def test_sweep_takes_each_control_to_both_ends_and_skips_what_check_refuses():
    demo, _, _ = _demo(static=[{"a": 0.5}], check=lambda a, kind: "no" if kind == "square" and a > 5 else None)
    settings = demo.sweep()
    assert settings[0] == {"a": 0.5, "kind": "linear"}
    assert {"a": 0.1, "kind": "linear"} in settings and {"a": 10.0, "kind": "linear"} in settings  # 10**min, 10**max
    assert {"a": 1.0, "kind": "square"} in settings
    times = demo.latency(settings, repeats=1)
    assert len(times) == len(settings) and all(t > 0 for t in times)


def test_show_puts_the_live_widgets_and_the_static_view_in_one_output_and_registers_the_demo():
    demo, _, _ = _demo(name="toy", check=lambda a, kind: "refused" if a > 5 else None)
    with mock.patch("IPython.display.display") as display:
        demo.show()
    (bundle,), kwargs = display.call_args
    assert kwargs == {"raw": True}
    assert "application/vnd.jupyter.widget-view+json" in bundle
    assert _size(base64.b64decode(bundle["image/png"]))[0] == 6 * STATIC_DPI
    assert demo in demos()
    assert demo.image.value and demo.image.layout.width == f"{6 * LIVE_DPI}px"   # shown 1:1, not rescaled
    first = demo.image.value
    demo.controls["a"].value = 10.0                                  # refused: the message, the figure stays
    assert demo.message.value == "refused" and demo.image.value == first
    demo.controls["a"].value = 0.5
    assert demo.message.value == "" and demo.image.value != first
    report = {r["demo"]: r for r in latency_report()}
    assert report["toy"]["settings"] >= 4 and report["toy"]["median_ms"] > 0


@pytest.mark.parametrize("kwargs, match", [
    ({"update": 3}, "update must be callable"),
    ({"controls": {}}, "controls"),
    ({"rows": [["a", "b"]]}, "rows name controls that do not exist: \\['b'\\]"),
    ({"static": [{"speed": 1}]}, "static setting names controls that do not exist: \\['speed'\\]"),
])
def test_bad_arguments_are_refused_by_name(kwargs, match):
    fig = plt.figure()
    plt.close(fig)
    args = {"update": lambda a: None, "controls": {"a": widgets.FloatSlider()}, **kwargs}
    with pytest.raises((TypeError, ValueError), match=match):
        Demo(fig, args.pop("update"), args.pop("controls"), **args)


# -- what a student reads when a check fails ----------------------------------------------------------

def _swapped_bfgs(H, s, y):
    rho = 1 / torch.dot(y, s)
    eye = torch.eye(len(s), dtype=H.dtype)
    return (eye - rho * torch.outer(y, s)) @ H @ (eye - rho * torch.outer(s, y)) + rho * torch.outer(y, y)


def test_a_failing_check_shows_each_diagnosis_once_wrapped_and_without_a_traceback():
    with pytest.raises(CheckFailed) as info:
        check(_swapped_bfgs, name="bfgs_inverse_update")
    message = str(info.value)
    assert message.startswith("bfgs_inverse_update: ") and "checks passed" in message   # the autograder's line
    assert message.count("s and y look swapped") == 1                                   # said once, not per case
    assert "(3 cases)" in message
    lines = info.value._render_traceback_()
    assert lines[0].startswith("\x1b[1;31m✗ bfgs_inverse_update: ") and "visible checks passed" in lines[0]
    assert all(len(line) <= CheckFailed.WIDTH for line in lines[1:])
    assert not any("Traceback" in line or "File " in line for line in lines)


def test_an_unwritten_function_gets_one_line_saying_what_to_do():
    def sr1_update(B, s, y, r=1e-8):
        raise NotImplementedError()

    with pytest.raises(CheckFailed) as info:
        check(sr1_update)
    text = "\n".join(info.value.diagnosis())
    assert "not written yet" in text and "raise NotImplementedError()" in text
    assert text.count("not written yet") == 1


def test_a_passing_check_prints_one_line(capsys):
    from secondorder import sr1_update

    def mine(B, s, y, r=1e-8):
        return sr1_update(B, s, y, r)

    assert check(mine, name="sr1_update") is None
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1 and out[0].startswith("✓ sr1_update: all ")


def test_failures_that_differ_only_in_their_numbers_are_one_line_with_a_count():
    cases = [Case(f"c{i}", group, lambda: ()) for i, group in enumerate(["secant", "secant", "scale", "skip"])]
    v = Verdict("f", [CaseResult(cases[0], False, "off by 1.5e+03 — likely cause: swapped", "failed"),
                      CaseResult(cases[1], False, "off by 2.25e-01 — likely cause: swapped", "failed"),
                      CaseResult(cases[2], False, "off by 7 — likely cause: swapped", "failed"),
                      CaseResult(cases[3], True)])
    assert v.summary().splitlines() == ["f: 1/4 checks passed",
                                        "- [secant, scale] (3 cases) off by 1.5e+03 — likely cause: swapped"]
    v.results[3] = CaseResult(cases[3], False, "not skipped — likely cause: swapped", "failed")
    assert v.summary().splitlines() == ["f: 0/4 checks passed", "- [secant, scale] (3 cases) off by 1.5e+03",
                                        "- [skip] not skipped", "likely cause (all of them): swapped"]
