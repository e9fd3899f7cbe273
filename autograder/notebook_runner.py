"""Executes one notebook top to bottom inside the sandbox, saving what ran even if the kernel dies.

Standalone: copied into the sandbox's folder. Usage:
python notebook_runner.py IN.ipynb OUT.ipynb CELL_TIMEOUT_S
"""

import sys

import nbclient
import nbformat


def main(src: str, dst: str, cell_timeout: int) -> int:
    nb = nbformat.read(src, as_version=4)
    client = nbclient.NotebookClient(nb, timeout=cell_timeout, allow_errors=True, kernel_name="python3",
                                     interrupt_on_timeout=True, record_timing=False,
                                     resources={"metadata": {"path": "."}})
    # Save after every cell, so a run killed at its wall-clock or memory limit keeps what it did.
    client.on_cell_executed = lambda **kwargs: nbformat.write(nb, dst)
    status = "ok"
    try:
        client.execute()
    except nbclient.exceptions.DeadKernelError:
        status = "dead kernel"
    except Exception as exc:  # noqa: BLE001 - whatever happened, keep the cells that did run
        status = f"{type(exc).__name__}: {exc}"
    nb.metadata["autograder_run"] = {"status": status}
    nbformat.write(nb, dst)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2], int(sys.argv[3])))
