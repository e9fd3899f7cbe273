"""Live demos for the notebooks: controls, one figure redrawn in place, and a static view.

A demo is a matplotlib figure, an ``update(**values)`` function that changes the figure's artists in
place (``set_data``, ``set_text``, limits: no new figure, no new axes), and a dict of ipywidgets
controls whose names are ``update``'s keyword arguments::

    demo = Demo(fig, update, {"eta": widgets.FloatLogSlider(...), "name": widgets.Dropdown(...)},
                static=[{"eta": 0.1, "name": "quartic"}, {"eta": 1.0, "name": "quartic"}])
    demo.show()

Every control change calls ``update`` and re-renders this one figure into an ``ipywidgets.Image``
shown at its natural size (no rescaling). ``show`` puts two views in one output: the live widgets
for a frontend with a kernel, and a static image (``image/png``) for a reader without one — the
course site, a notebook viewer, a release before it is run. The static view is a column of small
multiples, one panel per setting in ``static``, each captioned with its control values, rendered at
:data:`STATIC_DPI`.

Every demo shown in a kernel is registered (:func:`demos`), so the benchmark and the test suite can
time its redraws (:meth:`Demo.latency`) in the notebook's own kernel. A notebook never asserts its
own speed: a student's laptop or Binder is slower than the machines that set the budgets.
"""

from __future__ import annotations

import base64
import io
import statistics
import time
import weakref
from collections.abc import Callable, Mapping, Sequence

LIVE_DPI = 80          # 12-inch figures are 960 px wide: the width of a notebook column at 100 % zoom
STATIC_DPI = 144       # the static view is read without a kernel, often zoomed: render it finer

_REGISTRY: list[weakref.ref] = []


def demos() -> list[Demo]:
    """The demos shown so far in this process that are still alive, in the order they were shown."""
    alive = [r() for r in _REGISTRY]
    return [d for d in alive if d is not None]


def _png(fig, dpi: float) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi)
    return buffer.getvalue()


def _label(control, value) -> str:
    """How a control shows ``value``: the option's label for a selection widget, else the number."""
    labels = getattr(control, "_options_labels", None)
    values = getattr(control, "_options_values", None)
    if labels is not None and values is not None:
        for label, option in zip(labels, values):
            if option == value:
                return str(label)
    if isinstance(value, float):
        return f"{value:.3g}"
    return str(value)


class Demo:
    """One live figure and its controls.

    Parameters
    ----------
    figure : matplotlib.figure.Figure
        Drawn once; ``update`` changes its artists. Close it with ``plt.close(fig)`` after creating it
        so that the inline backend does not show it a second time.
    update : callable
        ``update(**values)`` with one keyword per control, changing the figure in place.
    controls : dict
        ``{keyword: ipywidgets control}``; each control's ``value`` is passed under its keyword.
    rows : list of lists of keywords, optional
        Layout of the controls, one row per list (default: one control per row).
    check : callable, optional
        ``check(**values)`` returns a message when the combination cannot be drawn (the figure then
        keeps its last state and the message is shown above it), or None.
    static : list of dicts, optional
        Settings for the static view, one panel each; keywords left out take the controls' current
        values. Default: one panel at the current values.
    caption : callable, optional
        ``caption(values) -> str`` for a static panel (default: each control's description and value).
    name : str, optional
        How the demo is called in latency reports (default: the first control's description).
    """

    def __init__(self, figure, update: Callable[..., object], controls: Mapping[str, object], *,
                 rows: Sequence[Sequence[str]] | None = None, check: Callable[..., str | None] | None = None,
                 static: Sequence[Mapping[str, object]] = (), caption: Callable[[dict], str] | None = None,
                 name: str | None = None, dpi: float = LIVE_DPI):
        if not callable(update):
            raise TypeError(f"update must be callable, got {type(update).__name__}")
        if not controls:
            raise ValueError("controls must hold at least one control")
        self.figure, self.update, self.controls = figure, update, dict(controls)
        self.rows = [list(r) for r in rows] if rows is not None else [[k] for k in self.controls]
        unknown = sorted({k for r in self.rows for k in r} - set(self.controls))
        if unknown:
            raise ValueError(f"rows name controls that do not exist: {unknown}; controls: {sorted(self.controls)}")
        self.check, self.dpi = check, dpi
        self.static = [dict(s) for s in static]
        for s in self.static:
            unknown = sorted(set(s) - set(self.controls))
            if unknown:
                raise ValueError(f"a static setting names controls that do not exist: {unknown}")
        self._caption = caption
        first = next(iter(self.controls.values()))
        self.name = name or getattr(first, "description", "") or "demo"
        self.image = self.message = None

    # -- drawing ----------------------------------------------------------------------------------

    def values(self) -> dict:
        """The controls' current values, by keyword."""
        return {k: c.value for k, c in self.controls.items()}

    def render(self, **values) -> bytes:
        """Draw the figure for ``values`` (missing keywords: current values) and return it as PNG bytes."""
        values = {**self.values(), **values}
        self.update(**values)
        return _png(self.figure, self.dpi)

    def caption(self, values: Mapping[str, object]) -> str:
        """The caption of a static panel: each control's description and value (or ``caption``'s text)."""
        if self._caption is not None:
            return self._caption(dict(values))
        return ",   ".join(f"{getattr(c, 'description', k) or k} = {_label(c, values[k])}"
                           for k, c in self.controls.items())

    def static_view(self, dpi: float = STATIC_DPI) -> bytes:
        """Small multiples of the ``static`` settings, one captioned panel per setting, as one PNG."""
        import matplotlib.image as mpimg
        from matplotlib.figure import Figure

        settings = [{**self.values(), **s} for s in self.static] or [self.values()]
        tiles = []
        for values in settings:
            self.update(**values)
            tiles.append(mpimg.imread(io.BytesIO(_png(self.figure, dpi)), format="png"))
        caption_px = int(round(0.32 * dpi))
        width = max(t.shape[1] for t in tiles)
        height = sum(t.shape[0] for t in tiles) + caption_px * len(tiles)
        sheet = Figure(figsize=(width / dpi, height / dpi), dpi=dpi, facecolor="white")
        top = height
        for values, tile in zip(settings, tiles):
            top -= caption_px
            sheet.text(8 / width, (top + caption_px / 2) / height, self.caption(values), ha="left",
                       va="center", fontsize=9, color="0.15")
            top -= tile.shape[0]
            sheet.figimage(tile, xo=0, yo=top, origin="upper")
        self.update(**self.values())            # leave the figure as the controls say
        return _png(sheet, dpi)

    # -- the widgets ------------------------------------------------------------------------------

    def _on_change(self, **values) -> None:
        # Writes the new figure into the image widget (nothing is printed, so it also runs headless).
        message = self.check(**values) if self.check is not None else None
        self.message.value = message or ""
        if message:
            return
        self.image.value = self.render(**values)

    def widget(self):
        """The controls and the figure as one ipywidgets box (built once)."""
        import ipywidgets as widgets

        if self.image is None:
            width_px = int(round(self.figure.get_figwidth() * self.dpi))
            self.image = widgets.Image(format="png", layout=widgets.Layout(width=f"{width_px}px",
                                                                           max_width="100%"))
            self.message = widgets.Label()
            errors_shown_here = widgets.interactive_output(self._on_change, self.controls)
            rows = [widgets.HBox([self.controls[k] for k in row]) if len(row) > 1 else self.controls[row[0]]
                    for row in self.rows]
            self._box = widgets.VBox([*rows, self.message, self.image, errors_shown_here])
        return self._box

    def show(self) -> None:
        """Display the live demo, with its static view in the same output for readers without a kernel."""
        from IPython.display import display

        static = base64.b64encode(self.static_view()).decode("ascii")
        box = self.widget()
        bundle = dict(box._repr_mimebundle_())
        bundle["image/png"] = static
        bundle["text/plain"] = f"Demo: {self.name} (run the cell in a live kernel to move the controls)"
        display(bundle, raw=True)
        _REGISTRY.append(weakref.ref(self))

    # -- timing -----------------------------------------------------------------------------------

    def sweep(self) -> list[dict]:
        """Settings to time: the static ones, then each control moved to each end of its range."""
        settings = [{**self.values(), **s} for s in self.static] or [self.values()]
        for key, control in self.controls.items():
            options = getattr(control, "_options_values", None)
            ends = (options[0], options[-1]) if options else (getattr(control, "min", None),
                                                                getattr(control, "max", None))
            for end in ends:
                if end is None:
                    continue
                if hasattr(control, "base") and not options:    # a log slider's min and max are exponents
                    end = control.base ** end
                values = {**self.values(), key: end}
                if self.check is None or not self.check(**values):
                    settings.append(values)
        return settings

    def latency(self, settings: Sequence[Mapping[str, object]] | None = None, repeats: int = 3) -> list[float]:
        """Wall-clock seconds of one redraw (update and PNG) per setting, the best of ``repeats`` each.

        This is the server-side part of what a person waits for after moving a control; the browser
        adds its round trip. The figure is left as the controls say.
        """
        import gc

        times = []
        for values in settings if settings is not None else self.sweep():
            best = float("inf")
            for _ in range(max(1, int(repeats))):
                gc.collect()                    # between two control changes the collector has time to run
                t0 = time.perf_counter()
                self.render(**values)
                best = min(best, time.perf_counter() - t0)
            times.append(best)
        self.update(**self.values())
        return times


def latency_report() -> list[dict]:
    """``[{"demo", "settings", "median_ms", "max_ms"}]`` for every registered demo (see :func:`demos`)."""
    rows = []
    for demo in demos():
        times = demo.latency()
        rows.append({"demo": demo.name, "settings": len(times),
                     "median_ms": round(1e3 * statistics.median(times), 1), "max_ms": round(1e3 * max(times), 1)})
    return rows


__all__ = ["LIVE_DPI", "STATIC_DPI", "Demo", "demos", "latency_report"]
