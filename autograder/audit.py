"""Read a submitted notebook against its source: answers, setup code, and signs of tampering."""

from __future__ import annotations

import ast
import re
import threading
from dataclasses import dataclass, field

import nbformat

PATCHED_MODULES = {"np", "numpy", "torch", "builtins", "math", "secondorder", "so", "testing", "nbgrader"}


# CPython 3.11 converts parse trees to ``ast`` objects with interpreter-wide recursion bookkeeping: two threads
# parsing at once can fail with "SystemError: AST constructor recursion depth mismatch". The grader audits
# several submissions in threads, so every parse goes through this lock.
_AST_LOCK = threading.Lock()


def _parse(code: str) -> ast.Module:
    """``ast.parse`` under :data:`_AST_LOCK` (raises SyntaxError as ``ast.parse`` does)."""
    with _AST_LOCK:
        return ast.parse(code)


def nbgrader_meta(cell) -> dict:
    return cell.get("metadata", {}).get("nbgrader", {}) or {}


@dataclass
class Audit:
    """What the grader learned from reading a submitted notebook (no code was run)."""

    answers: dict[str, str] = field(default_factory=dict)     # graded function -> answer cell source
    notes: dict[str, list[str]] = field(default_factory=dict)  # grade_id -> tampering notes
    patches: list[str] = field(default_factory=list)           # monkeypatching found in student code

    def note(self, grade_id: str, text: str) -> None:
        self.notes.setdefault(grade_id, []).append(text)


def graded_functions(source: nbformat.NotebookNode, known: set[str]) -> list[str]:
    """Names of the graded functions: answer cells whose grade_id names an exercise."""
    names = []
    for cell in source.cells:
        meta = nbgrader_meta(cell)
        if cell.cell_type == "code" and meta.get("solution") and not meta.get("grade") \
                and meta.get("grade_id") in known:
            names.append(meta["grade_id"])
    return names


def setup_source(source: nbformat.NotebookNode, before_grade_id: str) -> list[str]:
    """The imports (and default-dtype settings) of the instructor's cells above an answer cell."""
    keep = []
    for cell in source.cells:
        meta = nbgrader_meta(cell)
        if meta.get("grade_id") == before_grade_id:
            break
        if cell.cell_type != "code" or meta.get("solution") or meta.get("grade"):
            continue
        try:
            tree = _parse(cell.source)
        except SyntaxError:
            continue
        for node in tree.body:
            if isinstance(node, ast.Import | ast.ImportFrom):
                keep.append(ast.unparse(node))
            elif isinstance(node, ast.Expr) and isinstance(node.value, ast.Call) and \
                    ast.unparse(node.value.func) in ("torch.set_default_dtype", "torch.manual_seed"):
                keep.append(ast.unparse(node))
    return keep


def _monkeypatches(code: str) -> list[str]:
    """Assignments that replace attributes of library modules, e.g. ``np.allclose = ...``."""
    try:
        tree = _parse(code)
    except SyntaxError:
        return []
    found = []
    for node in ast.walk(tree):
        targets = []
        if isinstance(node, ast.Assign):
            targets = node.targets
        elif isinstance(node, ast.AugAssign | ast.AnnAssign):
            targets = [node.target]
        for t in targets:
            if isinstance(t, ast.Attribute):
                root = t
                while isinstance(root, ast.Attribute):
                    root = root.value
                if isinstance(root, ast.Name) and root.id in PATCHED_MODULES:
                    found.append(ast.unparse(t))
        if isinstance(node, ast.Call) and ast.unparse(node.func) == "setattr" and node.args and \
                isinstance(node.args[0], ast.Name) and node.args[0].id in PATCHED_MODULES:
            found.append(ast.unparse(node))
    return found


def answer_cells(submitted: nbformat.NotebookNode) -> dict:
    """``{grade_id: cell}`` with the LAST cell of each grade_id, the one nbgrader grades.

    nbgrader's ``DeduplicateIds`` walks the notebook backwards and strips the metadata of every earlier
    copy; the function checks, the notebook run and the gradebook follow that one rule.
    """
    by_id = {}
    for cell in submitted.cells:
        gid = nbgrader_meta(cell).get("grade_id")
        if gid:
            by_id[gid] = cell
    return by_id


def audit(source: nbformat.NotebookNode, submitted: nbformat.NotebookNode, functions: list[str]) -> Audit:
    """Compare ``submitted`` with ``source``: find each answer, and note deleted or altered graded cells."""
    result = Audit()
    by_id = answer_cells(submitted)
    counts: dict[str, int] = {}
    for cell in submitted.cells:
        gid = nbgrader_meta(cell).get("grade_id")
        if gid:
            counts[gid] = counts.get(gid, 0) + 1
    for gid, n in counts.items():
        if n > 1:
            result.note(gid, f"the notebook holds {n} cells with grade_id {gid}; the last one is the answer in "
                             "force and was graded (nbgrader's rule: it ignores the earlier copies)")
    for cell in source.cells:
        meta = nbgrader_meta(cell)
        gid = meta.get("grade_id")
        if not gid or not (meta.get("grade") or meta.get("solution") or meta.get("locked")):
            continue
        theirs = by_id.get(gid)
        if theirs is None:
            if meta.get("grade") and not meta.get("solution"):
                result.note(gid, f"the test cell {gid} was deleted (restored from the source for grading)")
            continue
        if theirs.cell_type != cell.cell_type:
            result.note(gid, f"cell {gid} was changed from {cell.cell_type} to {theirs.cell_type}")
        if meta.get("locked") and not meta.get("solution") and meta.get("grade") and \
                _strip_hidden(theirs.source) != _strip_hidden(cell.source):
            result.note(gid, f"the test cell {gid} was edited (restored from the source for grading)")
    for name in functions:
        cell = by_id.get(name)
        if cell is not None and cell.cell_type == "code":
            result.answers[name] = cell.source
            continue
        # Metadata lost (cell copied, type changed back, ...): look for the definition itself.
        pattern = re.compile(rf"^\s*def\s+{re.escape(name)}\s*\(", re.M)
        for c in submitted.cells:
            if c.cell_type == "code" and pattern.search(c.source):
                result.answers[name] = c.source
                result.note(name, f"the answer cell of {name} lost its nbgrader metadata; graded the cell "
                                  f"that defines {name}()")
                break
    for cell in submitted.cells:
        meta = nbgrader_meta(cell)
        if cell.cell_type == "code" and not (meta.get("locked") and not meta.get("solution")):
            result.patches += _monkeypatches(cell.source)
    return result


def _strip_hidden(src: str) -> str:
    """The visible part of a test cell (the release has no hidden section)."""
    out, hidden = [], False
    for line in src.splitlines():
        if "### BEGIN HIDDEN TESTS" in line:
            hidden = True
        elif "### END HIDDEN TESTS" in line:
            hidden = False
        elif not hidden:
            out.append(line.rstrip())
    return "\n".join(out).strip()


def repair_for_nbgrader(submitted: nbformat.NotebookNode, source: nbformat.NotebookNode) -> int:
    """Strip nbgrader metadata whose grade_id the source does not know (renamed cells); return how many.

    nbgrader stops on such cells; without the metadata they are ordinary cells, and nbgrader puts the
    source's own cell back in place of the missing one.
    """
    known = {nbgrader_meta(c).get("grade_id") for c in source.cells} - {None}
    stripped = 0
    for cell in submitted.cells:
        meta = nbgrader_meta(cell)
        if meta and meta.get("grade_id") not in known:
            cell.metadata.pop("nbgrader", None)
            stripped += 1
    return stripped

