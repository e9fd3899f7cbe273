"""Runs ONE student's graded function on the case arguments, inside the sandbox.

Standalone on purpose: it is copied into the sandbox's folder and imports only torch. The real
``secondorder`` package is hidden from it; ``import secondorder`` yields a stub whose every attribute
raises ``DelegationError``, so an answer that calls the reference is caught rather than credited.
Nothing here decides a grade: it only writes what the function returned (``case_<i>.pt``) into the
output folder, and the grader compares those outputs in its own, untouched process. Every result file
appears whole (written aside, then renamed), and once the last one is written the process ends at once
(``os._exit``): a thread or handler the answer left behind cannot keep it alive. The grader does not rely
on that; it stops the process itself when the results are in, or at the time limit.

Usage: python child_runner.py request.pt START OUT_DIR
"""

import contextlib
import importlib.abc
import importlib.machinery
import os
import sys
import time
import traceback
import types


class DelegationError(Exception):
    """Raised when a graded answer reaches for the course library."""


class _Stub(types.ModuleType):
    def __getattr__(self, attr):
        if attr.startswith("__"):
            raise AttributeError(attr)
        raise DelegationError(f"the answer uses {self.__name__}.{attr}; graded functions must be written "
                              "with torch and math only, not by calling the course library")


class _StubFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def find_spec(self, fullname, path=None, target=None):
        if fullname == "secondorder" or fullname.startswith("secondorder."):
            return importlib.machinery.ModuleSpec(fullname, self, is_package=True)
        return None

    def create_module(self, spec):
        module = _Stub(spec.name)
        module.__path__ = []
        return module

    def exec_module(self, module):
        pass


def _plain(value, depth=0):
    """Keep what torch.load(weights_only=True) accepts; describe anything else by its type."""
    import torch
    if depth > 4:
        return f"<unsupported nesting: {type(value).__name__}>"
    if value is None or isinstance(value, bool | int | float | str | torch.Tensor):
        return value.detach().clone() if isinstance(value, torch.Tensor) else value
    if isinstance(value, list | tuple):
        return type(value)(_plain(v, depth + 1) for v in value)
    if isinstance(value, dict):
        return {str(k): _plain(v, depth + 1) for k, v in value.items()}
    return {"__unsupported_type__": type(value).__name__, "repr": repr(value)[:200]}


class _Counted:
    """A test function passed to the student's code, counting its calls."""

    def __init__(self, fn):
        self.fn, self.calls = fn, 0

    def __call__(self, *args, **kwargs):
        self.calls += 1
        return self.fn(*args, **kwargs)


def _decode(value, counters):
    """Arguments arrive as plain data; ``{"__callable__": "lambda x: ...", "bound": {...}}`` becomes a counted
    function whose only names are ``math``, ``torch`` and the bound tensors (the sources are the exercises')."""
    import math

    import torch
    if isinstance(value, dict) and "__callable__" in value:
        names = {"math": math, "torch": torch, "__builtins__": {}, **value.get("bound", {})}
        fn = _Counted(eval(value["__callable__"], names))
        counters.append(fn)
        return fn
    if isinstance(value, list | tuple):
        return type(value)(_decode(v, counters) for v in value)
    return value


class _Capped:
    """A text stream that passes on its first ``limit`` characters and drops the rest, before encoding them:
    nobody reads this process's output but the grader's log, and a gigabyte string printed whole must not
    cost another gigabyte of memory on its way to a pipe."""

    def __init__(self, stream, limit: int = 2**20):
        self._stream, self._left, self._cut = stream, limit, False

    def write(self, text):
        n = len(text)
        if n <= self._left:
            self._left -= n
            return self._stream.write(text)
        if not self._cut:
            self._cut = True
            self._stream.write(text[:self._left] + "\n[output cut]\n")
            self._left = 0
        return n

    def __getattr__(self, name):
        return getattr(self._stream, name)


def _flop_counter():
    """PyTorch's count of the matrix products run inside it (cases that check cost)."""
    from torch.utils.flop_counter import FlopCounterMode
    return FlopCounterMode(display=False)


def _save(obj, path: str) -> None:
    """``torch.save`` to ``path`` through a temporary name: the grader never reads half a file."""
    import torch
    torch.save(obj, path + ".tmp")
    os.replace(path + ".tmp", path)


def _touch(path: str) -> None:
    open(path, "w").close()


def main(request_path: str, start: int, out: str) -> int:
    out = os.path.abspath(out)               # the answer may chdir; results still land in the output folder
    sys.stdout, sys.stderr = _Capped(sys.stdout), _Capped(sys.stderr)
    sys.meta_path.insert(0, _StubFinder())
    for name in [m for m in sys.modules if m == "secondorder" or m.startswith("secondorder.")]:
        del sys.modules[name]
    import torch

    request = torch.load(request_path, weights_only=True)
    namespace = {"__name__": "__main__"}
    for source in request["setup"]:
        try:
            exec(compile(source, "<setup cell>", "exec"), namespace)
        except Exception:  # setup cells are the instructor's; a failure there is not the student's
            pass
    answer_pt = os.path.join(out, "answer.pt")
    if start == 0:
        _touch(os.path.join(out, "answer.started"))   # the answer cell's own time starts now
    try:
        exec(compile(request["answer"], "<answer cell>", "exec"), namespace)
    except BaseException as exc:  # noqa: BLE001 - report SystemExit and friends too
        _save({"error": f"{type(exc).__name__}: {str(exc)[:2000]}"}, answer_pt)
        return 0
    fn = namespace.get(request["name"])
    if not callable(fn):
        _save({"error": f"MissingFunction: the answer cell does not define {request['name']}()"}, answer_pt)
        return 0
    if start == 0:
        _save({"error": None}, answer_pt)
    count_flops = request.get("count_flops") or [False] * len(request["cases"])
    for i in range(start, len(request["cases"])):
        counters = []
        args = _decode(request["cases"][i], counters)
        _touch(os.path.join(out, f"case_{i}.started"))
        counter = _flop_counter() if count_flops[i] else contextlib.nullcontext()
        t0 = time.perf_counter()
        try:
            with counter:
                value, error = fn(*args), None
        except BaseException as exc:  # noqa: BLE001
            value, error = None, f"{type(exc).__name__}: {str(exc)[:2000]}"
        seconds = time.perf_counter() - t0
        flops = int(counter.get_total_flops()) if count_flops[i] and error is None else None
        plain = _plain(value)
        if isinstance(value, torch.Tensor) and value.requires_grad and plain.is_floating_point():
            plain.requires_grad_(True)          # the grader checks results that must come back detached
        result = {"out": plain, "args_after": _plain([None if isinstance(a, _Counted) else a for a in args]),
                  "error": error, "seconds": seconds, "calls": [c.calls for c in counters],
                  "flops": flops}
        _save(result, os.path.join(out, f"case_{i}.pt"))
    return 0


def _end(code: int) -> None:
    """Flush what was printed and leave now, without waiting for threads or running exit handlers."""
    for stream in (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__):
        try:
            stream.flush()
        except Exception:  # noqa: BLE001 - the answer may have replaced or closed the streams
            pass
    os._exit(code)


if __name__ == "__main__":
    try:
        status = main(sys.argv[1], int(sys.argv[2]), sys.argv[3] if len(sys.argv) > 3 else ".")
    except BaseException:  # noqa: BLE001 - a broken request: say why, then leave like any other run
        traceback.print_exc(file=sys.__stderr__)
        status = 1
    _end(status)
