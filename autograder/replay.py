"""nbgrader preprocessor that puts the sandboxed run's results into nbgrader's autograde.

nbgrader's own ``Execute`` would run the submission in the grader's process. In its place,
:class:`ReplayExecute` copies in the outputs of the sandboxed execution and writes each graded test
cell's verdict as that cell's output: a short explanation and the score as an ``execute_result``,
which nbgrader reads as partial credit. Everything after it (``SaveAutoGrades`` and the gradebook)
is nbgrader's.
"""

from __future__ import annotations

import json
from pathlib import Path

import nbformat
from nbformat.v4 import new_output
from nbgrader.preprocessors import NbGraderPreprocessor
from traitlets import Unicode


class ReplayExecute(NbGraderPreprocessor):
    """Fill in outputs from ``<results_dir>/<student>/<assignment>.json`` and its executed notebook."""

    results_dir = Unicode("", help="Folder of per-student grading results").tag(config=True)

    def preprocess(self, nb, resources):
        info = resources["nbgrader"]
        path = Path(self.results_dir) / info["student"] / f"{info['assignment']}.json"
        record = json.loads(path.read_text())["notebooks"].get(info["notebook"], {})
        executed = record.get("executed")
        ran = nbformat.read(executed, as_version=4) if executed and Path(executed).exists() else None
        cells = record.get("cells", {})
        for i, cell in enumerate(nb.cells):
            copied = False
            if ran is not None and i < len(ran.cells) and ran.cells[i].cell_type == cell.cell_type \
                    and ran.cells[i].source == cell.source and cell.cell_type == "code":
                cell.outputs = ran.cells[i].get("outputs", [])
                cell.execution_count = ran.cells[i].get("execution_count")
                copied = True
            meta = cell.metadata.get("nbgrader", {})
            gid = meta.get("grade_id")
            if cell.cell_type == "code" and meta.get("grade") and not meta.get("solution") and gid in cells:
                row = cells[gid]
                if row.get("outputs") and copied:   # graded by its own outputs, as nbgrader grades: keep them
                    continue
                cell.outputs = [new_output("stream", name="stdout", text=row["message"] + "\n"),
                                new_output("execute_result", data={"text/plain": repr(float(row["score"]))},
                                           execution_count=cell.get("execution_count"))]
        return nb, resources
