"""``python -m autograder grade``: grade a batch of submissions, in parallel, resumably.

For each student (in parallel across cores):

1. read every notebook against the instructor's source (:mod:`autograder.audit`);
2. grade each graded function in a fresh sandboxed process (:mod:`autograder.function_checks`);
3. execute the whole notebook in a sandbox, for the feedback the student reads;
4. write ``.results/<student>/<assignment>.json``.

Then, one student at a time, nbgrader's autograde (with :class:`autograder.replay.ReplayExecute`
in place of execution) records the scores in the gradebook, and nbgrader writes the HTML feedback
with the hidden tests removed. ``grades.csv`` has one row per student and graded cell, always with a
status and a reason.
"""

from __future__ import annotations

import concurrent.futures
import csv
import hashlib
import json
import os
import shutil
import sys
import threading
import warnings
from pathlib import Path

import nbformat
from secondorder.exercises import EXERCISES, get_exercise

from . import audit as audit_mod
from .course import COURSE, REPO, assignments_in_course, nbgrader_config, prepare, sanitize
from .function_checks import check_function
from .replay import ReplayExecute
from .sandbox import Limits, Sandbox
from .submissions import Submission, SubmissionsError, collect, safe_extract

STATUSES = ("ok", "failed", "error", "timeout", "tampered", "missing", "delegated")
CSV_FIELDS = ["student_id", "assignment", "grade_id", "score", "max_score", "status", "message"]
NOTEBOOK_WALL_S = 300.0
CELL_TIMEOUT_S = 60
VERSION = "1"   # bump to invalidate cached results when grading rules change


class Progress:
    """A one-line progress bar on stderr (plain lines when stderr is not a terminal)."""

    def __init__(self, total: int, label: str):
        self.total, self.done, self.label = total, 0, label
        self.lock = threading.Lock()
        self.tty = sys.stderr.isatty()

    def step(self, what: str) -> None:
        with self.lock:
            self.done += 1
            width = 30
            filled = int(width * self.done / max(self.total, 1))
            line = f"{self.label} [{'#' * filled}{'.' * (width - filled)}] {self.done}/{self.total} {what}"
            print(("\r" + line[:120].ljust(120)) if self.tty else line, end="" if self.tty else "\n",
                  file=sys.stderr, flush=True)
            if self.tty and self.done == self.total:
                print(file=sys.stderr)


def _digest(paths: list[Path], extra: str) -> str:
    h = hashlib.sha256(extra.encode())
    for p in sorted(paths):
        h.update(p.name.encode())
        h.update(p.read_bytes())
    return h.hexdigest()


def _source_digest(course: Path, assignment: str, execute: bool) -> str:
    files = sorted(p for p in (course / assignment).rglob("*")
                   if p.is_file() and ".ipynb_checkpoints" not in p.parts)
    return _digest(files, f"{VERSION}/{execute}")


class Grader:
    """Grades submissions into the nbgrader course folder ``out``."""

    def __init__(self, out: Path, jobs: int | None = None, force: bool = False, course: Path = COURSE,
                 execute: bool = True, cell_timeout_s: int = CELL_TIMEOUT_S,
                 notebook_wall_s: float = NOTEBOOK_WALL_S, hide: list[Path] = ()):
        self.out = Path(out).resolve()
        self.course = Path(course).resolve()
        self.execute = execute
        self.cell_timeout_s, self.notebook_wall_s = cell_timeout_s, notebook_wall_s
        self.jobs = jobs or max(1, os.cpu_count() or 1)
        self.force = force
        self.results = self.out / ".results"
        self.work = self.out / ".work"
        # Student code must see neither the gradebook, nor other submissions, nor the sources.
        self.sandbox = Sandbox(hide=[self.out, self.course, REPO / "course", REPO / "solutions",
                                     REPO / "autograder", REPO / ".git", *hide], keep=[REPO])

    # -- one student ---------------------------------------------------------------------------

    def grade_submission(self, sub: Submission) -> dict:
        """Phase 1 for one submission: audit, function checks, sandboxed execution; returns the record."""
        key = _digest(list(sub.notebooks.values()), _source_digest(self.course, sub.assignment, self.execute))
        record_path = self.results / sub.student / f"{sub.assignment}.json"
        if not self.force and record_path.exists():
            old = json.loads(record_path.read_text())
            if old.get("key") == key:
                old["skipped"] = True
                return old
        # The files as received are kept under .received/; nbgrader reads submitted/, where renamed
        # graded cells are made ordinary again (see audit.repair_for_nbgrader).
        for folder in ("submitted", ".received"):
            dest = self.out / folder / sub.student / sub.assignment
            if dest.exists():
                shutil.rmtree(dest)
            dest.mkdir(parents=True)
            for nb_id, path in sub.notebooks.items():
                shutil.copyfile(path, dest / f"{nb_id}.ipynb")
        record = {"key": key, "student": sub.student, "assignment": sub.assignment, "notebooks": {},
                  "problems": sub.problems}
        for source_path in sorted((self.out / "source" / sub.assignment).glob("*.ipynb")):
            nb_id = source_path.stem
            source = nbformat.read(source_path, as_version=4)
            record["notebooks"][nb_id] = self._grade_notebook(sub, nb_id, source)
        record_path.parent.mkdir(parents=True, exist_ok=True)
        record_path.write_text(json.dumps(record, indent=1))
        return record

    def _grade_notebook(self, sub: Submission, nb_id: str, source) -> dict:
        functions = audit_mod.graded_functions(source, set(EXERCISES))
        graded = [(c, audit_mod.nbgrader_meta(c)) for c in source.cells if audit_mod.nbgrader_meta(c).get("grade")]
        cells = {}

        def everything(status, message):
            return {"cells": {m["grade_id"]: {"score": 0.0, "max_score": float(m.get("points", 0)),
                                              "status": status, "message": message} for _, m in graded},
                    "executed": None, "corrupt": status == "error"}

        path = sub.notebooks.get(nb_id)
        if path is None:
            return everything("missing", f"{nb_id}.ipynb was not submitted")
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")              # cells without ids are common and harmless
                submitted = nbformat.read(path, as_version=4)
                nbformat.validate(submitted)
        except Exception as exc:  # any unreadable file is reported, never graded as a silent zero
            return everything("error", f"the notebook could not be read ({type(exc).__name__}: "
                                       f"{str(exc).splitlines()[0][:200]}); it was not graded — ask the "
                                       "student for an intact copy")
        found = audit_mod.audit(source, submitted, functions)
        repaired = nbformat.from_dict(json.loads(json.dumps(submitted)))
        if audit_mod.repair_for_nbgrader(repaired, source):
            nbformat.write(repaired, self.out / "submitted" / sub.student / sub.assignment / f"{nb_id}.ipynb")
        verdicts = {}
        for name in functions:
            if name not in found.answers:
                verdicts[name] = None
                continue
            verdicts[name] = check_function(
                get_exercise(name), found.answers[name], audit_mod.setup_source(source, name),
                self.work / sub.student / sub.assignment / f"check_{name}", self.sandbox,
                extra_hide=[REPO / "lib"])
        patch_note = (f"the notebook replaces library functions ({', '.join(sorted(set(found.patches))[:3])}); "
                      "this has no effect on grading") if found.patches else ""
        for cell, meta in graded:
            gid, points = meta["grade_id"], float(meta.get("points", 0))
            if cell.cell_type == "code" and not meta.get("solution"):
                name = gid.removeprefix("test_")
                cells[gid] = self._test_cell_row(name, points, verdicts, found, patch_note, gid)
            else:
                cells[gid] = self._manual_row(gid, points, submitted, found)
        executed, run_status = self._execute(sub, nb_id, repaired) if self.execute else (None, "not executed")
        return {"cells": cells, "executed": executed, "run_status": run_status, "corrupt": False}

    def _test_cell_row(self, name, points, verdicts, found, patch_note, gid) -> dict:
        notes = found.notes.get(gid, []) + found.notes.get(name, [])
        if name not in verdicts:
            return {"score": 0.0, "max_score": points, "status": "error",
                    "message": f"no graded function {name!r} is known for test cell {gid}"}
        verdict = verdicts[name]
        if verdict is None:
            return {"score": 0.0, "max_score": points, "status": "missing",
                    "message": f"no answer cell defining {name}() was found" + "".join(f"; {n}" for n in notes)}
        score = round(points * verdict.fraction, 2)
        status = verdict.status
        message = verdict.summary()
        extra = notes + ([patch_note] if patch_note else [])
        if extra:
            message += "\n" + "\n".join(f"- note: {n}" for n in extra)
            if status in ("ok", "failed"):
                status = "tampered"
        if status == "delegated":
            score = 0.0
            message = (f"{name}: 0 points — the answer calls the course library's own {name} instead of "
                       "implementing it.\n" + message)
        return {"score": score, "max_score": points, "status": status, "message": message}

    def _manual_row(self, gid, points, submitted, found) -> dict:
        cell = next((c for c in submitted.cells if audit_mod.nbgrader_meta(c).get("grade_id") == gid), None)
        notes = found.notes.get(gid, [])
        if cell is None or cell.source.strip() in ("", "YOUR ANSWER HERE"):
            return {"score": 0.0, "max_score": points, "status": "missing",
                    "message": "no written answer" + "".join(f"; {n}" for n in notes)}
        return {"score": None, "max_score": points, "status": "tampered" if notes else "ok",
                "message": "written answer: to be graded by hand in the Formgrader"
                           + "".join(f"; {n}" for n in notes)}

    def _execute(self, sub: Submission, nb_id: str, submitted) -> tuple[str | None, str]:
        """Run the sanitized notebook in the sandbox; return the executed file (or None) and a status."""
        work = self.work / sub.student / sub.assignment / f"run_{nb_id}"
        if work.exists():
            shutil.rmtree(work)
        work.mkdir(parents=True)
        try:
            nb = sanitize(nbformat.from_dict(json.loads(json.dumps(submitted))), self.out, sub.student,
                          sub.assignment, nb_id)
        except Exception as exc:  # nbgrader refused the notebook; grading goes on without outputs
            return None, f"not executed: nbgrader could not prepare it ({type(exc).__name__}: {exc})"
        for f in (self.out / "source" / sub.assignment).iterdir():
            if f.is_file() and f.suffix != ".ipynb":
                shutil.copy(f, work / f.name)
        nbformat.write(nb, work / "in.ipynb")
        shutil.copy(Path(__file__).with_name("notebook_runner.py"), work / "notebook_runner.py")
        outcome = self.sandbox.run([sys.executable, "notebook_runner.py", "in.ipynb", "out.ipynb",
                                    str(self.cell_timeout_s)], work, Limits(wall_s=self.notebook_wall_s))
        out = work / "out.ipynb"
        if not out.exists():
            return None, "not executed: " + ("time limit" if outcome.timed_out else outcome.stderr[-300:])
        try:
            ran = nbformat.read(out, as_version=4)
        except Exception:  # the sandboxed process wrote something that is not a notebook
            return None, "not executed: the run produced an unreadable notebook"
        status = ran.metadata.get("autograder_run", {}).get("status", "stopped early")
        if outcome.timed_out:
            status = f"stopped at the {self.notebook_wall_s:.0f} s limit"
        elif outcome.oom:
            status = "stopped: memory limit"
        return str(out), str(status)

    # -- the batch -----------------------------------------------------------------------------

    def grade(self, submissions: Path, assignment: str | None = None) -> list[dict]:
        """Grade everything under ``submissions`` (a folder or a zip); write grades.csv; return its rows."""
        submissions = Path(submissions)
        known = assignments_in_course(self.course)
        if assignment is not None and assignment not in known:
            raise SubmissionsError(f"unknown assignment {assignment!r}; the course has {sorted(known)}")
        if submissions.is_file():
            root = safe_extract(submissions, self.out / ".incoming")
        else:
            root = submissions.resolve()
            self.sandbox.hide.append(root)
        subs = collect(root, assignment, known)
        if not subs:
            raise SubmissionsError(f"no submissions found under {submissions} (expected "
                                   "<student_id>/<assignment_id>/<notebook>.ipynb)")
        valid = [s for s in subs if not any("skipped" in p and "student id" in p for p in s.problems)]
        for s in subs:
            for p in s.problems:
                print(f"warning: {s.student}/{s.assignment}: {p}", file=sys.stderr)
        api = prepare(self.out, sorted({s.assignment for s in valid}), self.course)
        progress = Progress(len(valid), "grading")
        records = []
        with concurrent.futures.ThreadPoolExecutor(self.jobs) as pool:
            futures = {pool.submit(self.grade_submission, s): s for s in valid}
            for fut in concurrent.futures.as_completed(futures):
                s = futures[fut]
                try:
                    records.append(fut.result())
                except Exception as exc:  # the pipeline's own failure for one student: say so, go on
                    records.append(self._crashed(s, exc))
                progress.step(f"{s.student}/{s.assignment}")
        for rec in sorted(records, key=lambda r: (r["student"], r["assignment"])):
            if not rec.get("skipped"):
                self._record_in_gradebook(api, rec)
        return self.write_csv()

    def _crashed(self, sub: Submission, exc: Exception) -> dict:
        message = f"the grader itself failed on this submission ({type(exc).__name__}: {exc}); rerun with --force"
        notebooks = {}
        for source_path in sorted((self.out / "source" / sub.assignment).glob("*.ipynb")):
            source = nbformat.read(source_path, as_version=4)
            notebooks[source_path.stem] = {"executed": None, "corrupt": True, "cells": {
                m["grade_id"]: {"score": 0.0, "max_score": float(m.get("points", 0)), "status": "error",
                                "message": message}
                for m in (audit_mod.nbgrader_meta(c) for c in source.cells) if m.get("grade")}}
        record = {"key": None, "student": sub.student, "assignment": sub.assignment, "notebooks": notebooks,
                  "problems": sub.problems}
        path = self.results / sub.student / f"{sub.assignment}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(record, indent=1))
        return record

    def _record_in_gradebook(self, api, rec: dict) -> None:
        """Phase 2: nbgrader autograde (replaying the sandboxed run) and feedback, for one student."""
        config = nbgrader_config(self.out)
        config.ReplayExecute.results_dir = str(self.results)
        config.Autograde.autograde_preprocessors = _autograde_preprocessors()
        config.GenerateFeedback.preprocessors = _feedback_preprocessors()
        api.update_config(config)
        api.coursedir.update_config(config)
        sid, aid = rec["student"], rec["assignment"]
        if any(nb.get("corrupt") for nb in rec["notebooks"].values()):
            self._record_without_nbgrader(api, rec)
            return
        result = api.autograde(aid, sid, force=True, create=True)
        if not result["success"]:
            rec.setdefault("problems", []).append("nbgrader autograde failed: " + _last_line(result))
            self._record_without_nbgrader(api, rec)
            return
        feedback = api.generate_feedback(aid, sid, force=True)
        if not feedback["success"]:
            rec.setdefault("problems", []).append("nbgrader generate_feedback failed: " + _last_line(feedback))
            print(f"warning: {sid}/{aid}: no feedback: {_last_line(feedback)}", file=sys.stderr)

    def _record_without_nbgrader(self, api, rec: dict) -> None:
        """Record a submission nbgrader could not process: the grader's scores, the reasons as comments."""
        from nbgrader.api import MissingEntry

        sid, aid = rec["student"], rec["assignment"]
        with api.gradebook as gb:
            try:
                gb.find_student(sid)
            except MissingEntry:
                gb.add_student(sid)
            try:
                gb.remove_submission(aid, sid)
            except MissingEntry:
                pass
            gb.add_submission(aid, sid)
            for nb_id, nb in rec["notebooks"].items():
                for gid, row in nb["cells"].items():
                    try:
                        grade = gb.find_grade(gid, nb_id, aid, sid)
                    except MissingEntry:
                        continue
                    grade.auto_score = None if row["score"] is None else float(row["score"])
                    grade.needs_manual_grade = row["score"] is None
                    try:                                 # nbgrader keeps comments on answer cells only
                        gb.find_comment(gid, nb_id, aid, sid).auto_comment = row["message"]
                    except MissingEntry:
                        pass
            gb.db.commit()

    def write_csv(self) -> list[dict]:
        """Write ``grades.csv`` from every result recorded so far (manual scores from the gradebook)."""
        manual = self._manual_scores()
        rows = []
        for path in sorted(self.results.glob("*/*.json")):
            rec = json.loads(path.read_text())
            for nb_id, nb in sorted(rec["notebooks"].items()):
                for gid, row in nb["cells"].items():
                    score = row["score"]
                    if score is None:
                        score = manual.get((rec["student"], rec["assignment"], nb_id, gid))
                    rows.append({"student_id": rec["student"], "assignment": rec["assignment"], "grade_id": gid,
                                 "score": "" if score is None else f"{float(score):g}",
                                 "max_score": f"{row['max_score']:g}", "status": row["status"],
                                 "message": row["message"]})
        with open(self.out / "grades.csv", "w", newline="") as f:
            writer = csv.DictWriter(f, CSV_FIELDS)
            writer.writeheader()
            writer.writerows(rows)
        return rows

    def _manual_scores(self) -> dict:
        db = self.out / "gradebook.db"
        if not db.exists():
            return {}
        from nbgrader.api import Gradebook
        scores = {}
        with Gradebook(f"sqlite:///{db}") as gb:
            for grade in gb.db.query(__import__("nbgrader.api", fromlist=["Grade"]).Grade).all():
                if grade.manual_score is not None:
                    nb = grade.notebook
                    scores[(nb.assignment.student.id, nb.assignment.assignment.name, nb.name,
                            grade.name)] = grade.manual_score
        return scores


def _last_line(result: dict) -> str:
    text = (result.get("error") or result.get("log") or "").strip().splitlines()
    return text[-1] if text else "no details"


def _autograde_preprocessors():
    from nbconvert.preprocessors import ClearMetadataPreprocessor
    from nbgrader.preprocessors import AssignLatePenalties, CheckCellMetadata, LimitOutput, SaveAutoGrades
    return [ReplayExecute, ClearMetadataPreprocessor, LimitOutput, SaveAutoGrades, AssignLatePenalties,
            CheckCellMetadata]


def _feedback_preprocessors():
    from nbconvert.preprocessors import CSSHTMLHeaderPreprocessor
    from nbgrader.preprocessors import ClearHiddenTests, GetGrades
    return [ClearHiddenTests, GetGrades, CSSHTMLHeaderPreprocessor]
