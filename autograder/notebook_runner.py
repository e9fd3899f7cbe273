"""Executes one notebook top to bottom inside the sandbox, saving what ran even if the kernel dies.

Standalone: copied into the sandbox's folder. The executed notebook is saved after every cell (written
aside, then renamed, so a run killed at its limits leaves a whole notebook with what it did). A cell's
printed output is cut by the kernel itself at ``CELL_OUTPUT_BYTES``, all its outputs are kept up to
``RUNNER_CELL_BYTES`` and the notebook's up to ``NOTEBOOK_OUTPUT_BYTES``; past that they are dropped with
a note in the cell, so a cell that prints a gigabyte yields a readable
notebook and no gigabyte in the runner's memory. The runner ends with ``os._exit`` once the notebook is
saved: a kernel thread or process that outlives the run cannot hold it (the sandbox kills those).

Usage: python notebook_runner.py IN.ipynb OUT.ipynb CELL_TIMEOUT_S
"""

import os
import sys
import traceback

import nbclient
import nbformat

CELL_OUTPUT_BYTES = 2 * 2**20          # what the kernel lets through per cell, stdout and stderr each
RUNNER_CELL_BYTES = 3 * CELL_OUTPUT_BYTES   # what the runner keeps per cell (all outputs, figures included)
NOTEBOOK_OUTPUT_BYTES = 32 * 2**20


def _size(out) -> int:
    """Characters an output takes in the notebook (text, each data representation, a traceback)."""
    if out.get("output_type") == "stream":
        return len(out.get("text", ""))
    data = out.get("data") or {}
    shown = sum(len(v) if isinstance(v, str) else len(str(v)) for v in data.values())
    return shown + len(str(out.get("traceback", "")))


class CappedClient(nbclient.NotebookClient):
    """A notebook client that keeps at most ``RUNNER_CELL_BYTES`` of output per cell, and
    ``NOTEBOOK_OUTPUT_BYTES`` in all; a stream output over the room left is cut, anything else dropped."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.kept: dict[int, int] = {}
        self.dropped: dict[int, int] = {}
        self.notes: dict[int, dict] = {}

    def output(self, outs, msg, display_id, cell_index):
        out = super().output(outs, msg, display_id, cell_index)
        if out is None or not outs or outs[-1] is not out:
            return out
        # Measured on what the cell holds now: outputs it cleared (a progress display) count no more.
        n = _size(out)
        kept = sum(_size(o) for o in outs[:-1])
        others = sum(v for i, v in self.kept.items() if i != cell_index)
        room = min(RUNNER_CELL_BYTES - kept, NOTEBOOK_OUTPUT_BYTES - others - kept)
        if n <= room:
            self.kept[cell_index] = kept + n
            return out
        if out.get("output_type") == "stream" and room > 0:
            out["text"] = out["text"][:room]
            self.kept[cell_index] = kept + room
        else:
            outs.pop()
        self.dropped[cell_index] = self.dropped.get(cell_index, 0) + n - max(room, 0)
        note = self.notes.get(cell_index)
        if note is None or note not in outs:
            note = nbformat.v4.new_output("stream", name="stderr", text="")
            outs.append(note)
            self.notes[cell_index] = note
        where = "this cell's" if RUNNER_CELL_BYTES - kept <= NOTEBOOK_OUTPUT_BYTES - others - kept \
            else "the notebook's"
        note["text"] = (f"[autograder: output cut at {where} limit; {self.dropped[cell_index] / 2**20:.1f} MiB "
                        "left out]\n")
        return None


# Run by the kernel at start (an IPython startup file): stdout and stderr keep CELL_OUTPUT_BYTES per cell
# and drop the rest, so a cell printing a gigabyte does not pile it up in the kernel's and the runner's
# memory on its way here. Code can undo this; then the runner's own cap and the memory limit still hold.
KERNEL_CAP = r"""
import sys

def _autograder_cap_streams(limit):
    state = {"n": 0, "dropped": 0}

    class Capped:
        def __init__(self, stream):
            self._stream = stream

        def write(self, text):
            n = len(text)
            if state["n"] + n <= limit:
                state["n"] += n
                return self._stream.write(text)
            if not state["dropped"]:
                self._stream.write(text[:max(0, limit - state["n"])])
                self._stream.write(f"\n[autograder: output cut: this cell printed more than {limit // 2**20} MiB]\n")
                state["n"] = limit
            state["dropped"] += n
            return n

        def __getattr__(self, name):
            return getattr(self._stream, name)

    def reset(*args):
        state["n"] = state["dropped"] = 0

    sys.stdout, sys.stderr = Capped(sys.stdout), Capped(sys.stderr)
    get_ipython().events.register("pre_run_cell", reset)

_autograder_cap_streams(LIMIT)
del _autograder_cap_streams
"""


def _cap_kernel_output() -> None:
    """Install ``KERNEL_CAP`` in the run's own IPython folder (the sandbox sets ``IPYTHONDIR``; never ~)."""
    if not os.environ.get("IPYTHONDIR"):
        return
    startup = os.path.join(os.environ["IPYTHONDIR"], "profile_default", "startup")
    os.makedirs(startup, exist_ok=True)
    with open(os.path.join(startup, "00-autograder-output-cap.py"), "w") as f:
        f.write(KERNEL_CAP.replace("LIMIT", str(CELL_OUTPUT_BYTES)))


def _save(nb, dst: str) -> None:
    nbformat.write(nb, dst + ".tmp")
    os.replace(dst + ".tmp", dst)


def main(src: str, dst: str, cell_timeout: int) -> int:
    nb = nbformat.read(src, as_version=4)
    _cap_kernel_output()
    # The sandbox draws off screen (Agg) for everything else; the kernel draws inline, as in JupyterLab, so
    # the feedback keeps the student's own `plt.show()` figures.
    os.environ["MPLBACKEND"] = "module://matplotlib_inline.backend_inline"
    client = CappedClient(nb, timeout=cell_timeout, allow_errors=True, kernel_name="python3",
                          interrupt_on_timeout=True, record_timing=False, resources={"metadata": {"path": "."}},
                          shutdown_kernel="immediate")   # the work is saved: a kernel stuck on a thread is no
                                                         # reason to wait for a graceful exit
    # Save after every cell, so a run killed at its wall-clock or memory limit keeps what it did.
    client.on_cell_executed = lambda **kwargs: _save(nb, dst)
    status = "ok"
    try:
        client.execute()
    except nbclient.exceptions.DeadKernelError:
        status = "dead kernel"
    except Exception as exc:  # noqa: BLE001 - whatever happened, keep the cells that did run
        status = f"{type(exc).__name__}: {str(exc)[:500]}"
    nb.metadata["autograder_run"] = {"status": status}
    _save(nb, dst)
    return 0


if __name__ == "__main__":
    try:
        code = main(sys.argv[1], sys.argv[2], int(sys.argv[3]))
    except BaseException:  # noqa: BLE001
        traceback.print_exc()
        code = 1
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
