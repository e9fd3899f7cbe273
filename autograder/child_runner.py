"""Runs ONE student's graded function on the case arguments, inside the sandbox.

Standalone on purpose: it is copied into the sandbox's folder and imports only torch. The real
``secondorder`` package is hidden from it; ``import secondorder`` yields a stub whose every attribute
raises ``DelegationError``, so an answer that calls the reference is caught rather than credited.
Nothing here decides a grade: it only writes what the function returned (``case_<i>.pt``), and the
grader compares those outputs in its own, untouched process.

Usage: python child_runner.py request.pt START
"""

import importlib.abc
import importlib.machinery
import sys
import time
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


def main(request_path: str, start: int) -> int:
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
    if start == 0:
        open("answer.started", "w").close()   # the answer cell's own time starts now
    try:
        exec(compile(request["answer"], "<answer cell>", "exec"), namespace)
    except BaseException as exc:  # noqa: BLE001 - report SystemExit and friends too
        torch.save({"error": f"{type(exc).__name__}: {exc}"}, "answer.pt")
        return 0
    fn = namespace.get(request["name"])
    if not callable(fn):
        torch.save({"error": f"MissingFunction: the answer cell does not define {request['name']}()"},
                   "answer.pt")
        return 0
    if start == 0:
        torch.save({"error": None}, "answer.pt")
    for i in range(start, len(request["cases"])):
        counters = []
        args = _decode(request["cases"][i], counters)
        open(f"case_{i}.started", "w").close()
        t0 = time.perf_counter()
        try:
            out = fn(*args)
            error = None
        except BaseException as exc:  # noqa: BLE001
            out, error = None, f"{type(exc).__name__}: {exc}"
        plain = _plain(out)
        if isinstance(out, torch.Tensor) and out.requires_grad and plain.is_floating_point():
            plain.requires_grad_(True)          # the grader checks results that must come back detached
        result = {"out": plain, "args_after": _plain([None if isinstance(a, _Counted) else a for a in args]),
                  "error": error, "seconds": time.perf_counter() - t0, "calls": [c.calls for c in counters]}
        torch.save(result, f"case_{i}.tmp")
        import os
        os.replace(f"case_{i}.tmp", f"case_{i}.pt")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], int(sys.argv[2])))
