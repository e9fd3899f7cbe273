"""``python -m autograder grade``: grade a batch of submissions, in parallel, resumably.

For each student:

1. read every notebook against the instructor's source (:mod:`autograder.audit`), here;
2. grade each graded function in a fresh sandboxed process (:mod:`autograder.function_checks`) and
3. execute the whole notebook in a sandbox, for the feedback the student reads: steps 2 and 3 form
   one unit of plain data, run in parallel across this machine's cores or on a Dask cluster
   (:mod:`autograder.executors`);
4. write ``.results/<student>/<assignment>.json``, here.

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
import queue
import re
import shutil
import sys
import threading
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import nbformat
from secondorder.exercises import EXERCISES

from . import audit as audit_mod
from . import feedback as feedback_mod
from . import lms, secret
from .course import COURSE, REPO, assignments_in_course, nbgrader_config, prepare, sanitize
from .executors import ClusterError, UnitLost, make_executor, run_unit
from .replay import ReplayExecute
from .sandbox import Sandbox
from .submissions import Submission, SubmissionsError, extract, safe_id

# "awaiting": a written answer or task still to be graded by hand (score blank); "hand-graded": its score is the
# grader's from the Formgrader (also when it overrides an automatic score).
STATUSES = ("ok", "failed", "error", "timeout", "tampered", "missing", "delegated", "refused", "awaiting",
            "hand-graded")
# student_id is the name as received; grading_id the safe id of the gradebook and the grading folder.
CSV_FIELDS = ["student_id", "grading_id", "assignment", "grade_id", "score", "max_score", "status", "message"]
UNPLACED = ".unplaced.json"   # in .results/: what the last run found but could not place
ABSENT = ".absent.json"       # in .results/: students of the last run's roster with nothing handed in
NOTEBOOK_WALL_S = 300.0
CELL_TIMEOUT_S = 60
VERSION = "1"   # bump to invalidate cached results when grading rules change
NBGRADER_FILES = ("timestamp.txt", "submission_secret.txt")   # written by `nbgrader collect`
# nbgrader's gradebook makes SQLAlchemy warn about its own session handling on every autograde; it is no
# problem of the submission or of the grading, and printed among results it reads like one.
warnings.filterwarnings("ignore", message=r"Object of type <(Submitted|Grade|Comment)\w*> not in session")
PLANNERS = 4      # threads that read and audit submissions while the executor grades others


@dataclass
class _Plan:
    """One submission between the coordinator's audit and the executor's results."""

    sub: Submission
    record: dict
    unit: dict | None = None                                   # the work for the executor (plain data)
    done: dict = field(default_factory=dict)                   # notebook id -> finished entry (missing, unreadable)
    context: dict = field(default_factory=dict)                # notebook id -> (functions, graded, audit, notebook)
    run_status: dict = field(default_factory=dict)             # notebook id -> why it was not executed


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
                 notebook_wall_s: float = NOTEBOOK_WALL_S, hide: list[Path] = (), scheduler: str | None = None,
                 executor=None):
        self.out = Path(out).resolve()
        self.course = Path(course).resolve()
        self.execute = execute
        self.cell_timeout_s, self.notebook_wall_s = cell_timeout_s, notebook_wall_s
        self.jobs = jobs or max(1, os.cpu_count() or 1)
        self.force = force
        # Where the sandboxed work runs: this machine (None) or a Dask cluster address (``"local"``,
        # ``tcp://host:8786``, a scheduler file); or an executor object the caller manages.
        self.scheduler, self.executor = scheduler, executor
        self._db_lock = threading.Lock()
        self._release_cache: dict[str, dict] = {}
        self._key: bytes | None = None
        self.results = self.out / ".results"
        self.work = self.out / ".work"
        # Student code must see neither the gradebook, nor other submissions, nor the sources.
        self.sandbox = Sandbox(hide=[self.out, self.course, REPO / "course", REPO / "solutions",
                                     REPO / "autograder", REPO / ".git", *hide], keep=[REPO])

    @property
    def key(self) -> bytes:
        """The instructor's hidden-case key (:mod:`autograder.secret`), created on first use."""
        with self._db_lock:
            if self._key is None:
                self._key = secret.load_or_create_key(self.out)
        return self._key

    # -- one student ---------------------------------------------------------------------------

    def grade_submission(self, sub: Submission) -> dict:
        """Phase 1 for one submission, on this machine: audit, function checks, sandboxed execution."""
        plan = self._plan(sub)
        if plan.record.get("skipped") or plan.unit is None:
            return plan.record
        return self._finish(plan, run_unit(plan.unit, self.work, self.sandbox))

    def _plan(self, sub: Submission) -> _Plan:
        """Coordinator side of phase 1: resume check, audit, sanitize; the sandboxed work as a unit of plain data."""
        folder = next(iter(sub.notebooks.values())).parent if sub.notebooks else None
        extras = {n: folder / n for n in NBGRADER_FILES if folder is not None and (folder / n).is_file()
                  and not (folder / n).is_symlink() and (folder / n).stat().st_size <= 4096}
        key = _digest([*sub.notebooks.values(), *extras.values()],
                      _source_digest(self.course, sub.assignment, self.execute) + secret.fingerprint(self.key)
                      + json.dumps(sorted(sub.refused.items())))
        record_path = self.results / sub.student / f"{sub.assignment}.json"
        if not self.force:
            old = _read_record(record_path)
            if old is not None and old.get("key") == key:
                old["skipped"] = True
                return _Plan(sub, old)
        # The files as received are kept under .received/; nbgrader reads submitted/, where renamed
        # graded cells are made ordinary again (see audit.repair_for_nbgrader). nbgrader's timestamp.txt
        # and submission_secret.txt (from `nbgrader collect`) go along: late penalties and
        # `nbgrader release_feedback` read them.
        for where in ("submitted", ".received"):
            dest = self.out / where / sub.student / sub.assignment
            if dest.exists():
                shutil.rmtree(dest)
            dest.mkdir(parents=True)
            for nb_id, path in sub.notebooks.items():
                shutil.copyfile(path, dest / f"{nb_id}.ipynb")
            for name, path in extras.items():
                shutil.copyfile(path, dest / name)
        record = {"key": key, "student": sub.student, "original": sub.original or sub.student,
                  "assignment": sub.assignment, "notebooks": {}, "problems": sub.problems + [
                      r for nb_id, r in sorted(sub.refused.items()) if not (self.out / "source" / sub.assignment /
                                                                            f"{nb_id}.ipynb").exists()]}
        unit = {"student": sub.student, "assignment": sub.assignment, "checks": [], "runs": [],
                "cell_timeout_s": self.cell_timeout_s, "notebook_wall_s": self.notebook_wall_s}
        plan = _Plan(sub, record, unit)
        for source_path in sorted((self.out / "source" / sub.assignment).glob("*.ipynb")):
            source = nbformat.read(source_path, as_version=4)
            self._plan_notebook(plan, source_path.stem, source)
        if not unit["checks"] and not unit["runs"]:   # nothing to run in a sandbox: finish here
            plan.unit = None
            self._finish(plan, {"checks": {}, "runs": {}})
        return plan

    def _plan_notebook(self, plan: _Plan, nb_id: str, source) -> None:
        sub = plan.sub
        functions = audit_mod.graded_functions(source, set(EXERCISES))
        graded = [(c, audit_mod.nbgrader_meta(c)) for c in source.cells
                  if audit_mod.nbgrader_meta(c).get("grade") or audit_mod.nbgrader_meta(c).get("task")]

        def everything(status, message):
            plan.done[nb_id] = {
                "cells": {m["grade_id"]: {"score": 0.0, "max_score": float(m.get("points", 0)),
                                          "status": status, "message": message} for _, m in graded},
                "executed": None, "corrupt": status in ("error", "refused")}

        path = sub.notebooks.get(nb_id)
        if path is None and nb_id in sub.refused:
            return everything("refused", sub.refused[nb_id])
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
        for name in functions:
            if name in found.answers:
                plan.unit["checks"].append({"notebook": nb_id, "name": name, "answer": found.answers[name],
                                            "setup": audit_mod.setup_source(source, name),
                                            "draw": secret.draw_for(self.key, sub.student, name,
                                                                    found.answers[name])})
        try:
            with self._db_lock:   # nbgrader's OverwriteCells reads the gradebook
                nb = sanitize(nbformat.from_dict(json.loads(json.dumps(repaired))), self.out, sub.student,
                              sub.assignment, nb_id)
        except Exception as exc:  # nbgrader refused the notebook; grading goes on without outputs
            nb, why = None, f"not executed: nbgrader could not prepare it ({type(exc).__name__}: {exc})"
        # Answer cells nbgrader scores 0 by itself: unchanged since the release (their checksum holds).
        unanswered = set() if nb is None else _unchanged_answers(nb)
        plan.context[nb_id] = (functions, graded, found, submitted, unanswered)
        if nb is None or not self.execute:
            plan.run_status[nb_id] = why if nb is None else "not executed"
            return
        files = {f.name: f.read_bytes() for f in (self.out / "source" / sub.assignment).iterdir()
                 if f.is_file() and f.suffix != ".ipynb"}
        plan.unit["runs"].append({"notebook": nb_id, "ipynb": nbformat.writes(nb), "files": files})

    def _finish(self, plan: _Plan, result: dict) -> dict:
        """Coordinator side again: turn the unit's plain results into the record, and save it."""
        sub, record = plan.sub, plan.record
        for source_path in sorted((self.out / "source" / sub.assignment).glob("*.ipynb")):
            nb_id = source_path.stem
            if nb_id in plan.done:
                record["notebooks"][nb_id] = plan.done[nb_id]
                continue
            functions, graded, found, submitted, unanswered = plan.context[nb_id]
            checked = result["checks"].get(nb_id, {})
            verdicts = {name: checked.get(name) for name in functions}
            patch_note = (f"the notebook replaces library functions ({', '.join(sorted(set(found.patches))[:3])}); "
                          "this has no effect on grading") if found.patches else ""
            executed, run_status, ran_cells = None, plan.run_status.get(nb_id, "not executed"), {}
            ran = result["runs"].get(nb_id)
            if ran is not None:
                run_status = ran["status"]
                if ran["ipynb"] is not None:
                    out = self.work / sub.student / sub.assignment / f"run_{nb_id}" / "out.ipynb"
                    out.parent.mkdir(parents=True, exist_ok=True)
                    if not out.exists() or out.read_text() != ran["ipynb"]:
                        out.write_text(ran["ipynb"])
                    executed = str(out)
                    ran_cells = {audit_mod.nbgrader_meta(c).get("grade_id"): c
                                 for c in nbformat.reads(ran["ipynb"], as_version=4).cells}
            cells = {}
            for cell, meta in graded:
                gid, points = meta["grade_id"], float(meta.get("points", 0))
                if cell.cell_type == "code" and meta.get("grade") and not meta.get("solution"):
                    if gid.removeprefix("test_") in functions:      # a course exercise: its function checks
                        cells[gid] = self._test_cell_row(gid.removeprefix("test_"), points, verdicts, found,
                                                         patch_note, gid)
                    else:                                           # any other test cell: as nbgrader grades it
                        cells[gid] = _output_row(gid, points, ran_cells.get(gid), run_status,
                                                 found.notes.get(gid, []))
                else:
                    cells[gid] = self._manual_row(gid, points, submitted, found,
                                                  self._released_source(sub.assignment, nb_id, gid),
                                                  task=bool(meta.get("task")) and not meta.get("grade"),
                                                  unanswered=gid in unanswered)
            record["notebooks"][nb_id] = {"cells": cells, "executed": executed, "run_status": run_status,
                                          "corrupt": False}
        if result.get("host"):                         # where and how long the sandboxed work ran
            record["graded_on"], record["unit_seconds"] = result["host"], round(result.get("seconds", 0.0), 1)
        self._save(record)
        return record

    def _test_cell_row(self, name, points, verdicts, found, patch_note, gid) -> dict:
        notes = found.notes.get(gid, []) + found.notes.get(name, [])
        if name not in verdicts:
            return {"score": 0.0, "max_score": points, "status": "error",
                    "message": f"no graded function {name!r} is known for test cell {gid}"}
        verdict = verdicts[name]
        if verdict is None:
            return {"score": 0.0, "max_score": points, "status": "missing",
                    "message": f"no answer cell defining {name}() was found" + "".join(f"; {n}" for n in notes)}
        score = round(points * verdict["fraction"], 2)
        status = verdict["status"]
        message = verdict["summary"]
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

    def _released_source(self, assignment: str, nb_id: str, gid: str) -> str | None:
        """The source of cell ``gid`` as the release gave it to students (the unanswered stub)."""
        path = self.out / "release" / assignment / f"{nb_id}.ipynb"
        key = str(path)
        if key not in self._release_cache:
            try:
                nb = nbformat.read(path, as_version=4)
                self._release_cache[key] = {audit_mod.nbgrader_meta(c).get("grade_id"): c.source for c in nb.cells}
            except Exception:  # no release (an instructor-made course folder): only the plain stub is known
                self._release_cache[key] = {}
        return self._release_cache[key].get(gid)

    def _manual_row(self, gid, points, submitted, found, stub: str | None = None, task: bool = False,
                    unanswered: bool = False) -> dict:
        notes = found.notes.get(gid, [])
        if task:     # a task: the student answers in cells of their own below it; only a person can say
            return {"score": None, "max_score": points, "status": "tampered" if notes else "awaiting",
                    "message": "task: awaiting a hand grade in the Formgrader" + "".join(f"; {n}" for n in notes)}
        cell = audit_mod.answer_cells(submitted).get(gid)
        text = cell.source.strip() if cell is not None else ""
        if cell is None or unanswered or text in ("", "YOUR ANSWER HERE") \
                or (stub is not None and text == stub.strip()):
            return {"score": 0.0, "max_score": points, "status": "missing",
                    "message": "no answer: the cell is as released" + "".join(f"; {n}" for n in notes)}
        return {"score": None, "max_score": points, "status": "tampered" if notes else "awaiting",
                "message": "answer awaiting a hand grade in the Formgrader" + "".join(f"; {n}" for n in notes)}

    # -- the batch -----------------------------------------------------------------------------

    def grade(self, submissions: Path, assignment: str | None = None, roster: Path | None = None) -> list[dict]:
        """Grade everything under ``submissions`` (a folder or a zip); write grades.csv; return its rows.

        ``submissions`` may be laid out ``<student>/<assignment>/``, nbgrader's ``submitted/`` tree, or an LMS
        download as it comes (:mod:`autograder.lms`); ``roster`` (a CSV: id, name, e-mail, LMS id) maps the LMS'
        students to ids and puts their names into the gradebook.
        """
        submissions = Path(submissions)
        known = assignments_in_course(self.course)
        if assignment is not None and assignment not in known:
            raise SubmissionsError(f"unknown assignment {assignment!r}; the course has {sorted(known)}")
        try:
            class_list = lms.read_roster(roster) if roster is not None else None
        except lms.RosterError as exc:
            raise SubmissionsError(str(exc)) from None
        self.key  # noqa: B018 - the key is created (once) here, before any thread needs it
        damaged, originals = {}, {}
        if submissions.is_file():
            root, damaged, originals = extract(submissions, self.out / ".incoming")
        else:
            root = submissions.resolve()
            if root == self.out or self.out in root.parents:
                raise SubmissionsError(f"{submissions} lies inside the grading folder {self.out}, which the grader "
                                       "rewrites; grade into another --out (e.g. nbgrader's collected "
                                       "course/submitted with --out grading)")
            self.sandbox.hide.append(root)
        sources = lms.read_sources(self.course, known)
        arranged = lms.arrange(root, self.out / ".arranged", sources, class_list, damaged, originals)
        valid, unplaced = lms.collect_arranged(arranged, assignment, known, sources)
        if not valid and not unplaced:
            raise SubmissionsError(f"no submissions found under {submissions} (expected "
                                   "<student_id>/<assignment_id>/<notebook>.ipynb)")
        for s in valid:
            for p in s.problems:
                print(f"warning: {s.original or s.student}/{s.assignment}: {p}", file=sys.stderr)
        for u in unplaced:
            print(f"warning: not graded: {u.reason}", file=sys.stderr)
        self.results.mkdir(parents=True, exist_ok=True)
        (self.results / UNPLACED).write_text(json.dumps([u.__dict__ for u in unplaced], indent=1))
        # A student of the roster with no submission of an assignment graded here: a row that says so.
        graded = sorted({s.assignment for s in valid} | ({assignment} if assignment else set()))
        handed_in = {(s.student, s.assignment) for s in valid}
        absent = [{"student": safe_id(e.id), "original": e.id, "assignment": aid}
                  for e in (class_list.entries.values() if class_list is not None else ()) for aid in graded
                  if (safe_id(e.id), aid) not in handed_in]
        (self.results / ABSENT).write_text(json.dumps(absent, indent=1))
        if not valid:
            return self.write_csv()
        # The cluster first: an unreachable scheduler is reported before any work is done.
        executor = self.executor if self.executor is not None else make_executor(self.scheduler, self.jobs)
        try:
            api = prepare(self.out, sorted({s.assignment for s in valid}), self.course)
            records = self._run_phase1(valid, executor)
        finally:
            if self.executor is None:
                executor.close()
        if class_list is not None:
            self._enrol(api, class_list)
        present = self._in_gradebook()
        self.stats = {"graded": 0, "reused": 0, "recorded": 0, "rerecorded": 0, "refreshed": 0}
        for rec in sorted(records, key=lambda r: (r["student"], r["assignment"])):
            reused = bool(rec.get("skipped"))
            self.stats["reused" if reused else "graded"] += 1
            # A reused result is recorded again when an earlier run stopped before its gradebook entry and
            # feedback were complete (killed in either phase, or the gradebook was replaced).
            if reused and rec.get("recorded") == rec["key"] and (rec["student"], rec["assignment"]) in present \
                    and self._feedback_complete(rec):
                # Scores changed since the feedback was written (a hand grade, a comment): write it again.
                if rec.get("feedback_state") != self._gradebook_state(rec) and self._write_feedback(api, rec):
                    self._save(rec)
                    self.stats["refreshed"] += 1
                continue
            self._record_in_gradebook(api, rec)
            rec["recorded"] = rec["key"]
            self._save(rec)
            self.stats["rerecorded" if reused else "recorded"] += 1
        return self.write_csv()

    def _enrol(self, api, class_list) -> None:
        """Every student of the roster into the gradebook, with their name and e-mail (nbgrader export shows them;
        a student with no submission is listed with 0 there)."""
        with api.gradebook as gb:
            for entry in class_list.entries.values():
                gb.update_or_create_student(safe_id(entry.id), first_name=entry.first_name or None,
                                            last_name=entry.last_name or None, email=entry.email or None)

    def _save(self, record: dict) -> None:
        """Write a student's record atomically: a run killed mid-write leaves the old one or the new one."""
        path = self.results / record["student"] / f"{record['assignment']}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{threading.get_ident()}.tmp")
        tmp.write_text(json.dumps({k: v for k, v in record.items() if k != "skipped"}, indent=1))
        os.replace(tmp, path)

    def _in_gradebook(self) -> set[tuple[str, str]]:
        """``(student, assignment)`` of every submission the gradebook holds."""
        db = self.out / "gradebook.db"
        if not db.exists():
            return set()
        from nbgrader.api import Gradebook, SubmittedAssignment
        with Gradebook(f"sqlite:///{db}") as gb:
            return {(s.student.id, s.assignment.name) for s in gb.db.query(SubmittedAssignment).all()}

    def _feedback_complete(self, rec: dict) -> bool:
        """Every notebook nbgrader processed has its feedback page (corrupt ones have none by design)."""
        if rec.get("problems") and any("generate_feedback failed" in p for p in rec["problems"]):
            return True                                      # no feedback possible: said so in the record
        if any(nb.get("corrupt") for nb in rec["notebooks"].values()):
            return True                                      # recorded without nbgrader: no feedback page
        folder = self.out / "feedback" / rec["student"] / rec["assignment"]
        return all((folder / f"{nb_id}.html").exists() for nb_id in rec["notebooks"])

    def _run_phase1(self, subs: list[Submission], executor) -> list[dict]:
        """Plan each submission here, run its unit on ``executor``, finish it here as it comes back."""
        progress = Progress(len(subs), f"grading ({executor.describe()})")
        finished: queue.Queue = queue.Queue()
        slots = threading.BoundedSemaphore(2 * executor.slots)   # units in flight: bounded memory

        def plan_and_submit(s: Submission) -> None:
            try:
                plan = self._plan(s)
            except Exception as exc:  # the pipeline's own failure for one student: say so, go on
                finished.put((s, None, None, exc))
                return
            if plan.record.get("skipped") or plan.unit is None:
                finished.put((s, plan, None, None))
                return
            slots.acquire()

            def done(result, exc):
                slots.release()
                finished.put((s, plan, result, exc))

            try:
                executor.submit(plan.unit, done, workroot=self.work, sandbox=self.sandbox)
            except Exception as exc:  # the executor refused the unit (cluster gone): record it, go on
                done(None, exc)

        records = []
        with concurrent.futures.ThreadPoolExecutor(PLANNERS) as planners:
            for s in subs:
                planners.submit(plan_and_submit, s)
            for _ in subs:
                s, plan, result, exc = finished.get()
                try:
                    if exc is not None:
                        records.append(self._crashed(s, exc))
                    elif result is None:
                        records.append(plan.record)
                    else:
                        records.append(self._finish(plan, result))
                except Exception as exc2:  # noqa: BLE001 - finishing failed: still a row with a reason
                    records.append(self._crashed(s, exc2))
                progress.step(f"{s.student}/{s.assignment}")
        return records

    def _crashed(self, sub: Submission, exc: Exception) -> dict:
        if isinstance(exc, UnitLost | ClusterError):
            message = f"not graded: {exc}; run the same command again to grade it (graded students are kept)"
        else:
            message = (f"the grader itself failed on this submission ({type(exc).__name__}: {exc}); "
                       "rerun with --force")
        notebooks = {}
        for source_path in sorted((self.out / "source" / sub.assignment).glob("*.ipynb")):
            source = nbformat.read(source_path, as_version=4)
            notebooks[source_path.stem] = {"executed": None, "corrupt": True, "cells": {
                m["grade_id"]: {"score": 0.0, "max_score": float(m.get("points", 0)), "status": "error",
                                "message": message}
                for m in (audit_mod.nbgrader_meta(c) for c in source.cells) if m.get("grade")}}
        record = {"key": None, "student": sub.student, "original": sub.original or sub.student,
                  "assignment": sub.assignment, "notebooks": notebooks, "problems": sub.problems}
        self._save(record)
        return record

    def _record_in_gradebook(self, api, rec: dict) -> None:
        """Phase 2: nbgrader autograde (replaying the sandboxed run) and feedback, for one student."""
        self._configure(api)
        sid, aid = rec["student"], rec["assignment"]
        if any(nb.get("corrupt") for nb in rec["notebooks"].values()):
            self._record_without_nbgrader(api, rec)
            return
        result = api.autograde(aid, sid, force=True, create=True)
        if not result["success"]:
            rec.setdefault("problems", []).append("nbgrader autograde failed: " + _last_line(result))
            self._record_without_nbgrader(api, rec)
            return
        self._write_feedback(api, rec)

    def _configure(self, api) -> None:
        """nbgrader's autograde replays the sandboxed run; its feedback is the course's (autograder.feedback)."""
        config = nbgrader_config(self.out)
        config.ReplayExecute.results_dir = str(self.results)
        config.Autograde.autograde_preprocessors = _autograde_preprocessors()
        feedback_mod.configure(config)
        api.update_config(config)
        api.coursedir.update_config(config)

    def _write_feedback(self, api, rec: dict) -> bool:
        """nbgrader's generate_feedback for one submission; note the gradebook state it was written from."""
        sid, aid = rec["student"], rec["assignment"]
        if any(nb.get("corrupt") for nb in rec["notebooks"].values()):
            return False                                     # recorded without nbgrader: no feedback page
        state = self._gradebook_state(rec)
        self._configure(api)
        feedback = api.generate_feedback(aid, sid, force=True)
        if not feedback["success"]:
            rec.setdefault("problems", []).append("nbgrader generate_feedback failed: " + _last_line(feedback))
            print(f"warning: {sid}/{aid}: no feedback: {_last_line(feedback)}", file=sys.stderr)
            return False
        rec["feedback_state"] = state
        return True

    def _gradebook_state(self, rec: dict) -> str:
        """A digest of everything the feedback shows from the gradebook: every score, comment and penalty."""
        from nbgrader.api import Gradebook, MissingEntry
        db = self.out / "gradebook.db"
        if not db.exists():
            return ""
        h = hashlib.sha256()
        with Gradebook(f"sqlite:///{db}") as gb:
            try:
                submission = gb.find_submission(rec["assignment"], rec["student"])
            except MissingEntry:
                return ""
            for nb in sorted(submission.notebooks, key=lambda n: n.name):
                h.update(repr((nb.name, nb.late_submission_penalty)).encode())
                for g in sorted(nb.grades, key=lambda g: g.name):
                    h.update(repr((g.name, g.auto_score, g.manual_score, g.extra_credit,
                                   g.needs_manual_grade)).encode())
                for c in sorted(nb.comments, key=lambda c: c.name):
                    h.update(repr((c.name, c.auto_comment, c.manual_comment)).encode())
        return h.hexdigest()

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
            rec = _read_record(path)
            if rec is None:
                continue
            for nb_id, nb in sorted(rec["notebooks"].items()):
                for gid, row in nb["cells"].items():
                    score, status, message = row["score"], row["status"], row["message"]
                    by_hand = manual.get((rec["student"], rec["assignment"], nb_id, gid))
                    if by_hand is not None:         # the Formgrader's score stands, also over an automatic one
                        message = f"graded by hand: {by_hand:g} of {row['max_score']:g}" + (
                            "" if score is None else f" (the autograder gave {score:g}: {message})")
                        score, status = by_hand, "hand-graded"
                    rows.append({"student_id": rec.get("original", rec["student"]), "grading_id": rec["student"],
                                 "assignment": rec["assignment"], "grade_id": gid,
                                 "score": "" if score is None else f"{float(score):g}",
                                 "max_score": f"{row['max_score']:g}", "status": status,
                                 "message": message})
        try:
            unplaced = json.loads((self.results / UNPLACED).read_text())
        except (OSError, ValueError):
            unplaced = []
        try:
            absent = json.loads((self.results / ABSENT).read_text())
        except (OSError, ValueError):
            absent = []
        have = {(r["grading_id"], r["assignment"]) for r in rows}
        for a in absent:
            if (a["student"], a["assignment"]) not in have:
                rows.append({"student_id": a["original"], "grading_id": a["student"], "assignment": a["assignment"],
                             "grade_id": "", "score": "0", "max_score": "", "status": "missing",
                             "message": "on the roster, but no submission of this assignment was found"})
        for u in unplaced:
            parts = u["path"].split("/")
            rows.append({"student_id": u["student"], "grading_id": "", "assignment": parts[1] if len(parts) > 2 else "",
                         "grade_id": "", "score": "0", "max_score": "", "status": "refused",
                         "message": f"{u['path']}: {u['reason']}"})
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


def _unchanged_answers(nb) -> set[str]:
    """grade_ids of the hand-graded answer cells of a sanitized notebook that nbgrader itself scores 0."""
    from nbgrader.utils import determine_grade, is_grade, is_solution
    found = set()
    for cell in nb.cells:
        if is_grade(cell) and is_solution(cell):
            try:
                if determine_grade(cell)[0] == 0:
                    found.add(cell.metadata["nbgrader"]["grade_id"])
            except Exception:  # noqa: BLE001 - odd metadata: the cell is graded by hand as usual
                pass
    return found


def _output_row(gid: str, points: float, cell, run_status: str, notes: list[str]) -> dict:
    """A test cell graded as nbgrader grades it: by the outputs of the cell in the sandboxed run.

    Full points when it ran without an error and printed nothing to stderr; 0 otherwise; partial credit when
    its result is a number (:func:`nbgrader.utils.determine_grade`). A cell the run never reached scores 0.
    """
    from nbgrader.utils import determine_grade

    extra = "".join(f"\n- note: {n}" for n in notes)
    if cell is None or (cell.get("execution_count") is None and not cell.get("outputs")):
        stopped = run_status if cell is None else f"the run stopped before it ({run_status})"
        timeout = "limit" in run_status or "time" in run_status
        return {"score": 0.0, "max_score": points, "status": "timeout" if timeout else "error",
                "message": f"{gid}: 0 points: the cell did not run; {stopped}" + extra, "outputs": False}
    score, _ = determine_grade(nbformat.from_dict({**cell, "metadata": {
        "nbgrader": {**cell.metadata.get("nbgrader", {}), "points": points}}}))
    score = round(float(score), 2)
    error = next((o for o in cell.get("outputs", []) if o.get("output_type") == "error"), None)
    stderr = next((o for o in cell.get("outputs", []) if o.get("output_type") == "stream"
                   and o.get("name") == "stderr"), None)
    if error is not None:
        timeout = error.get("ename") in ("CellTimeoutError", "KeyboardInterrupt") and "time" in run_status
        status = "timeout" if timeout else "failed"
        evalue = str(error.get("evalue", "")).strip().splitlines()
        message = f"{gid}: 0 points: {error.get('ename', 'error')}" + (f": {evalue[0][:300]}" if evalue else "")
        line = _failing_line(error.get("traceback", []))
        if line:
            message += f" at `{line[:200]}`"
    elif stderr is not None:
        status = "failed"
        first = (str(stderr.get("text", "")).strip().splitlines() or [""])[0][:300]
        message = (f"{gid}: 0 points: the cell wrote to stderr, which nbgrader counts as a failure ({first})")
    elif score < points:
        status = "failed"
        message = f"{gid}: partial credit {score:g} of {points:g} (the number the cell returned)"
    else:
        status = "ok"
        message = f"{gid}: passed (the cell ran without an error)"
    if notes and status in ("ok", "failed"):
        status = "tampered"
    return {"score": score, "max_score": points, "status": status, "message": message + extra, "outputs": True}


_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def _failing_line(traceback: list[str]) -> str:
    """The source line IPython marks with an arrow in the last frame of a traceback, without colours."""
    for frame in reversed(traceback):
        for text in _ANSI.sub("", str(frame)).splitlines():
            if text.lstrip().startswith("---->") or text.lstrip().startswith("->"):
                return re.sub(r"^\s*-+>\s*\d*\s*", "", text).strip()
    return ""


def _read_record(path: Path) -> dict | None:
    """A saved record, or None when there is none or it cannot be read (then the student is graded again)."""
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _last_line(result: dict) -> str:
    text = (result.get("error") or result.get("log") or "").strip().splitlines()
    return text[-1] if text else "no details"


def _autograde_preprocessors():
    from nbconvert.preprocessors import ClearMetadataPreprocessor
    from nbgrader.preprocessors import AssignLatePenalties, CheckCellMetadata, LimitOutput, SaveAutoGrades
    return [ReplayExecute, ClearMetadataPreprocessor, LimitOutput, SaveAutoGrades, AssignLatePenalties,
            CheckCellMetadata]
