"""The corpus of hostile submissions and the status each must get.

Each entry turns a correct submission of a section (the release with every answer filled in) into a
hostile one. The self-test grades them all in one run, next to an honest submission, and checks
that each gets its documented status, that no one else's grade changes, and that no file outside
the grading folder changes. ``FUNCTION`` is the graded function the entry targets.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass

import nbformat
from nbformat.v4 import new_code_cell


@dataclass(frozen=True)
class Hostile:
    """One hostile submission: how it is made, and what the grade must say."""

    name: str
    what: str
    make: Callable[[nbformat.NotebookNode, str, str], nbformat.NotebookNode | bytes]
    status: str            # the status of the targeted test cell
    full_marks: bool       # whether the targeted test cell keeps its full score
    # Only the sandbox's isolation (bubblewrap) keeps this one from doing harm outside its folder: without
    # it the submission really writes there, so it is graded only where bubblewrap is available.
    needs_isolation: bool = False
    # Only a cap on the number of processes stops it (a cgroup, or RLIMIT_NPROC for a user other than root).
    needs_process_cap: bool = False


def _copy(nb):
    return nbformat.from_dict(json.loads(json.dumps(nb)))


def _cell(nb, grade_id):
    return next(c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade_id") == grade_id)


def _index(nb, grade_id):
    return next(i for i, c in enumerate(nb.cells) if c.metadata.get("nbgrader", {}).get("grade_id") == grade_id)


def _insert_after(nb, grade_id, source):
    nb = _copy(nb)
    nb.cells.insert(_index(nb, grade_id) + 1, new_code_cell(source))
    return nb


def _answer(nb, fn, source):
    nb = _copy(nb)
    _cell(nb, fn).source = source
    return nb


def _corrupt(nb, fn, answer):
    return json.dumps(nb)[: len(json.dumps(nb)) // 2].encode()


def _delete_test(nb, fn, answer):
    nb = _copy(nb)
    del nb.cells[_index(nb, f"test_{fn}")]
    return nb


def _rename_test(nb, fn, answer):
    nb = _copy(nb)
    _cell(nb, f"test_{fn}").metadata["nbgrader"]["grade_id"] = "test_renamed"
    return nb


def _retype_test(nb, fn, answer):
    nb = _copy(nb)
    i = _index(nb, f"test_{fn}")
    old = nb.cells[i]
    nb.cells[i] = nbformat.v4.new_markdown_cell(old.source, metadata=old.metadata)
    return nb


def _loop_inside(nb, fn, answer):
    head = answer.split(":", 1)[0]
    return _answer(nb, fn, head + ":\n    while True:\n        pass\n")


def _loop_after(nb, fn, answer):
    return _answer(nb, fn, answer + "\n\nwhile True:\n    pass\n")


def _exit_after(nb, fn, answer):
    return _insert_after(nb, fn, "import os\nos._exit(1)")


def _exit_inside(nb, fn, answer):
    return _answer(nb, fn, answer + "\n\nimport os\nos._exit(3)\n")


def _memory_bomb_after(nb, fn, answer):
    return _insert_after(nb, fn, "hog = []\nwhile True:\n    hog.append(bytearray(2**28))")


def _memory_bomb_inside(nb, fn, answer):
    head = answer.split(":", 1)[0]
    return _answer(nb, fn, head + ":\n    hog = []\n    while True:\n        hog.append(bytearray(2**28))\n")


def _fork_bomb(nb, fn, answer):
    return _insert_after(nb, fn, "import os\nfor _ in range(10000):\n    try:\n        os.fork()\n"
                                 "    except OSError:\n        break")


def wrong_answer(answer: str) -> str:
    """The answer with its first return value multiplied by 0 (the wrong answer behind ``patched_allclose``)."""
    return answer.replace("return", "return 0 *", 1)


def _patch_allclose(nb, fn, answer):
    nb = _answer(nb, fn, wrong_answer(answer))
    return _insert_after(nb, "setup", "import numpy\nimport torch\nnumpy.allclose = lambda *a, **k: True\n"
                                      "torch.allclose = lambda *a, **k: True\ntorch.equal = lambda *a, **k: True")


def _delegate(nb, fn, answer):
    head = answer.split(":", 1)[0]
    params = head[head.index("(") + 1: head.rindex(")")]
    names = ", ".join(p.split("=")[0].strip() for p in params.split(","))
    return _answer(nb, fn, f"import secondorder\n\n{head}:\n    return secondorder.{fn}({names})\n")


def _write_outside(nb, fn, answer):
    return _insert_after(nb, fn, "import pathlib, secondorder\n"
                                 "root = pathlib.Path(secondorder.__file__).resolve().parents[2]\n"
                                 "for p in [root / 'README.md', root / 'course' / 'pwned.txt', "
                                 "pathlib.Path('/tmp/../root/pwned')]:\n"
                                 "    try:\n        p.write_text('pwned')\n    except OSError as e:\n"
                                 "        print('blocked:', e)")


def _read_gradebook(nb, fn, answer):
    return _insert_after(nb, fn, "import glob\nfound = glob.glob('/**/gradebook.db', recursive=True)\n"
                                 "print(found)\nfor f in found:\n    open(f, 'wb').write(b'')")


def _stderr_noise(nb, fn, answer):
    return _answer(nb, fn, "import sys\nimport warnings\n" + answer.replace(
        ":\n", ":\n    warnings.warn('a harmless warning')\n    print('noise', file=sys.stderr)\n", 1))


THREAD = ("import threading\n\n\ndef _spin():\n    while True:\n        pass\n\n\n"
          "threading.Thread(target=_spin).start()\n\n")


def _thread_in_answer(nb, fn, answer):
    return _answer(nb, fn, THREAD + answer)


def _unkillable_answer(nb, fn, answer):
    # Ignores SIGTERM and SIGINT, disables os._exit (the grading process's own quick exit) and leaves a thread:
    # only the grader's SIGKILL ends it.
    return _answer(nb, fn, "import os\nimport signal\n\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
                           "signal.signal(signal.SIGINT, signal.SIG_IGN)\nos._exit = lambda *args: None\n"
                           + THREAD + answer)


def _daemon_in_answer(nb, fn, answer):
    return _answer(nb, fn, "import os\nimport signal\nimport time\n\nif os.fork() == 0:\n    os.setsid()\n"
                           "    if os.fork() == 0:\n        signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
                           "        while True:\n            time.sleep(0.2)\n    os._exit(0)\n\n" + answer)


# Looks everywhere it can for other students' work, the grading folder (gradebook, hidden-case key,
# results) and root-only files, and prints the start of each. Graded next to the honest student, it must
# find nothing of theirs; the self-test checks that no such content reaches any feedback or grades.csv.
SNOOP = """
import os
import sys

_found = []
_skip = {"/proc", "/sys", "/dev", "/usr", sys.prefix, sys.base_prefix}   # the system and Python: no secrets
_seen = 0
for _top, _dirs, _files in os.walk("/"):
    _dirs[:] = [d for d in _dirs if os.path.join(_top, d) not in _skip]
    for _name in _files:
        _seen += 1
        _path = os.path.join(_top, _name)
        if _name.endswith((".ipynb", ".db", ".csv", ".key", ".zip", ".txt", ".json")) or "secret" in _name \\
                or _top.startswith(("/root", "/home")):
            try:
                with open(_path, "rb") as _f:
                    _found.append((_path, _f.read(300)))
            except OSError:
                pass
    if _seen > 200000:
        break
for _path, _head in _found[:300]:
    print(_path, _head)
"""


def _read_secrets(nb, fn, answer):
    return _answer(nb, fn, answer + "\n\n" + SNOOP)


def _fill_disk(nb, fn, answer):
    # Several files (one is capped at Limits.file_bytes), gigabytes in all; then the one host folder.
    return _insert_after(nb, fn, "written = 0\nfor folder in ('.', 'out'):\n    for i in range(40):\n"
                                 "        try:\n            with open(f'{folder}/fill_{i}.bin', 'wb') as f:\n"
                                 "                for _ in range(128):\n"
                                 "                    f.write(b'\\0' * 2**20)\n"
                                 "                    written += 2**20\n"
                                 "        except OSError as e:\n            print(folder, written, e)\n"
                                 "            break")


def _huge_print(nb, fn, answer):
    return _answer(nb, fn, answer + "\n\nfor _ in range(1024):\n    print('x' * (2**20 - 1))\n")


CORPUS = [
    Hostile("corrupted_json", "the file is cut in half", _corrupt, "error", False),
    Hostile("deleted_test_cell", "the test cell was deleted", _delete_test, "tampered", True),
    Hostile("renamed_test_cell", "the test cell's grade_id was changed", _rename_test, "tampered", True),
    Hostile("retyped_test_cell", "the test cell was turned into markdown", _retype_test, "tampered", True),
    Hostile("loop_inside_answer", "the graded function never returns", _loop_inside, "timeout", False),
    Hostile("loop_after_answer", "a correct function, then `while True` in the same cell", _loop_after,
            "timeout", False),
    Hostile("exit_after_answer", "os._exit in a later cell kills the kernel", _exit_after, "ok", True),
    Hostile("exit_in_answer_cell", "os._exit inside the answer cell", _exit_inside, "error", False),
    Hostile("memory_bomb_after", "a later cell allocates without bound", _memory_bomb_after, "ok", True),
    Hostile("memory_bomb_in_function", "the graded function allocates without bound", _memory_bomb_inside,
            "error", False),
    Hostile("fork_bomb", "a later cell forks without bound", _fork_bomb, "ok", True, needs_process_cap=True),
    Hostile("patched_allclose", "a wrong answer plus numpy/torch comparisons patched to always agree",
            _patch_allclose, "tampered", False),
    Hostile("delegation", "the answer calls the course library's reference", _delegate, "delegated", False),
    Hostile("write_outside", "a cell writes to the repository and outside its folder", _write_outside,
            "ok", True, needs_isolation=True),
    Hostile("stderr_noise", "a correct answer that writes warnings to stderr", _stderr_noise, "ok", True),
    Hostile("read_gradebook", "a cell searches for the gradebook and overwrites it", _read_gradebook,
            "ok", True, needs_isolation=True),
    # The grading process stops the answer's process once its results are written; the notebook run's
    # kernel is killed at the end of the run. Full marks: the function is right.
    Hostile("thread_in_answer", "a non-daemon endless thread started in the answer cell, above a correct "
            "function", _thread_in_answer, "ok", True),
    Hostile("unkillable_answer", "the answer cell ignores SIGTERM and SIGINT, disables os._exit and leaves an "
            "endless thread, above a correct function", _unkillable_answer, "ok", True),
    # Killed with the run: by bubblewrap's PID namespace, the run's cgroup, or (neither) the run's tag.
    Hostile("daemon_in_answer", "the answer cell double-forks a setsid daemon that ignores SIGTERM and never "
            "exits, above a correct function", _daemon_in_answer, "ok", True),
    # Only bubblewrap's minimal view and the unprivileged uid keep the files out of reach.
    Hostile("read_secrets", "a correct answer cell that then searches the whole file system for other "
            "submissions, the grading folder and root-only files and prints what it finds", _read_secrets,
            "ok", True, needs_isolation=True),
    # The working folder's quota (tmpfs, or the polled folder) and the output folder's cap stop it; the
    # notebook run may lose its outputs, the function check is not touched.
    Hostile("fill_disk", "a later cell writes gigabytes into its folder and its output folder", _fill_disk,
            "ok", True),
    Hostile("huge_print", "a correct answer cell that then prints 1 GiB", _huge_print, "ok", True),
]
