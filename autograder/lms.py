"""Turn what an LMS gives into ``<student_id>/<assignment_id>/<notebook>.ipynb`` for :mod:`.submissions`.

:func:`arrange` looks at the folder :func:`.submissions.extract` unpacked (or a folder given as it is) and
recognizes its layout by the names of the entries directly in it:

``"folders"``
    Already ``<student>/<assignment>/<notebook>.ipynb``, e.g. ``alice/02_bfgs/02_bfgs.ipynb``. This includes
    nbgrader's ``submitted/`` tree (``timestamp.txt`` beside the notebooks) and a course folder holding
    ``submitted/`` beside ``source/`` and ``autograded/``: the root then moves down to ``submitted/``. Nothing is
    copied.
``"canvas"``
    Canvas' "Download Submissions" zip, one flat folder of ``<name>_<user id>_<submission id>_<file>``, e.g.
    ``doejohn_123456_7890123_problem1.ipynb``; a late submission has ``LATE`` (or ``late``) after the name,
    ``doejohn_LATE_123456_7890124_problem2-1.ipynb``. Canvas renames a resubmitted file ``problem2-1.ipynb``,
    ``problem2-2.ipynb``, ...: the highest suffix is the latest.
``"moodle"``
    Moodle's "Download all submissions": one folder per student and plugin,
    ``John Doe_1234567_assignsubmission_file_/02_bfgs.ipynb`` (and ``..._assignsubmission_onlinetext_/``), or
    the same flat, ``John Doe_1234567_assignsubmission_file_02_bfgs.ipynb``.

An LMS layout is taken when at least half the entries are so named (the others become rows); a folder that
holds nothing but one folder of such entries is descended into. For ``"canvas"`` and ``"moodle"`` the files are
copied into a new folder laid out ``<student>/<assignment>/``:

* the student is the roster's id when :meth:`Roster.match` finds them (LMS id, then id, then name), otherwise
  the LMS name made safe (``doejohn``; ``John Doe`` -> ``John_Doe-<8 hex>``, see :func:`.submissions.safe_id`),
  with a note when a roster was given;
* a notebook goes to the instructor notebook it shares most graded cells (``grade_id``) with, whatever its file
  name (``homework.ipynb``, ``02_bfgs (1).ipynb``); its file name, without the LMS prefix and a ``-N`` or
  `` (N)`` suffix, only breaks a tie or places a notebook with no graded cell (or that is not valid JSON);
* the submission's other files go beside its notebooks, under their names as uploaded;
* of several files for one place, the latest resubmission is kept (highest suffix, then highest Canvas
  submission id) and the notes say which ones were not; a Canvas late mark becomes a note too;
* :attr:`Arranged.originals` keeps each student as the LMS named them (``smithjane``, the Moodle folder), for
  reports only: the grading id is the new folder's name (see :func:`collect_arranged`).

Nothing is dropped silently: a notebook that matches no instructor notebook, a file that does not follow the
LMS' naming, or a damaged zip entry that belongs to no assignment comes back as an :class:`.submissions.Unplaced`
row with a one-line reason; a damaged entry that can be placed is renamed to its new path, for
:func:`.submissions.collect_all` to refuse it there. :func:`collect_arranged` runs ``collect_all`` on the result.

:func:`read_roster` reads the class list, a CSV file: see its docstring for the columns.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
import shutil
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

from .submissions import Submission, SubmissionsError, Unplaced, _ignored, _printable, collect_all, safe_id

# Roster columns: the header, lower-cased, with runs of spaces, "_" and "-" read as one space -> the field.
ROSTER_COLUMNS = {
    "id": ("id", "student id", "studentid", "student number", "sis user id", "nbgrader id"),
    "name": ("name", "full name", "student name", "student"),
    "first_name": ("first name", "firstname", "given name", "given names"),
    "last_name": ("last name", "lastname", "surname", "family name"),
    "email": ("email", "email address", "e mail", "e mail address"),
    "lms": ("canvas id", "canvas user id", "moodle id", "moodle user id", "participant id", "lms id"),
}
CANVAS = re.compile(r"(?P<name>[a-z]+)_(?:(?P<late>LATE|late)_)?(?P<user>\d+)_(?P<submission>\d+)_(?P<file>.+)")
MOODLE = re.compile(r"(?P<name>.+?)_(?P<participant>\d+)_assignsubmission_(?P<plugin>[a-z]+)_(?P<rest>.*)")
_VERSION = re.compile(r"(?P<base>.+?)(?:-(?P<canvas>\d+)| \((?P<copy>\d+)\))")    # problem1-2, 02_bfgs (1)
LMS_NAMES = {"canvas": "Canvas", "moodle": "Moodle"}

Sources = dict[str, dict[str, set[str]]]      # assignment id -> notebook id -> graded and answer cells' grade_ids


class RosterError(ValueError):
    """The roster file cannot be used; the message names the file, and the line and column where it can."""


# -- the roster ------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class RosterEntry:
    """One student of the roster.

    Attributes
    ----------
    id : str
        The nbgrader student id.
    first_name, last_name, email : str
        As in the roster (``""`` when absent); a single name column is split at its comma (``Last, First``) or
        before its last word (``First Last``).
    lms_ids : tuple of str
        The student's ids in the LMS (Canvas user id, Moodle participant id), from every LMS id column.
    """

    id: str
    first_name: str = ""
    last_name: str = ""
    email: str = ""
    lms_ids: tuple[str, ...] = ()


@dataclass
class Roster:
    """The class list: nbgrader id -> :class:`RosterEntry`.

    Attributes
    ----------
    entries : dict[str, RosterEntry]
        In the roster's order.
    path : str
        The file it was read from, for messages.
    """

    entries: dict[str, RosterEntry] = field(default_factory=dict)
    path: str = ""

    def match(self, lms_id: str | None, name: str | None) -> RosterEntry | None:
        """The student an LMS names ``lms_id`` and ``name``, or None when the roster does not list them.

        Tried in this order: ``lms_id`` among the entries' LMS ids; ``lms_id``, then ``name``, as an nbgrader id;
        ``name`` as a full name, with case, accents, spaces and punctuation folded and either order of first
        and last name (``Jane Smith``, ``Smith, Jane`` and Canvas' ``smithjane`` all match Jane Smith). A name
        two entries share matches neither.
        """
        lms_id, name = (lms_id or "").strip(), (name or "").strip()
        if lms_id:
            for entry in self.entries.values():
                if lms_id in entry.lms_ids:
                    return entry
        for key in (lms_id, name):
            if key in self.entries:
                return self.entries[key]
        folded = _fold(name)
        hits = [e for e in self.entries.values() if folded and folded in _name_keys(e)]
        return hits[0] if len(hits) == 1 else None


def _fold(name: str) -> str:
    """``name`` for comparing: accents dropped (NFKD), case folded, only letters and digits kept."""
    decomposed = unicodedata.normalize("NFKD", name)
    return "".join(c for c in decomposed if not unicodedata.combining(c) and c.isalnum()).casefold()


def _name_keys(entry: RosterEntry) -> set[str]:
    """The folded full names of ``entry``, first name first and last name first."""
    keys = {_fold(entry.first_name + entry.last_name), _fold(entry.last_name + entry.first_name)}
    return keys - {""}


def _split_name(name: str) -> tuple[str, str]:
    """(first, last) of a full name: ``Smith, Jane`` and ``Jane Smith`` -> ``("Jane", "Smith")``."""
    if "," in name:
        last, first = name.split(",", 1)
        return first.strip(), last.strip()
    first, _, last = name.strip().rpartition(" ")
    return first.strip(), last.strip()


def _header_key(header: str) -> str:
    return re.sub(r"[\s_-]+", " ", header.strip().lower())


def read_roster(path: str | os.PathLike) -> Roster:
    """Read the class list, a CSV file with a header row (a UTF-8 BOM, as Excel writes, is fine).

    Columns, named in any case, with spaces, ``_`` or ``-`` alike (other columns are ignored):

    * ``id`` (required): the nbgrader student id; also ``Student ID``, ``SIS User ID``, ... (see
      :data:`ROSTER_COLUMNS`); the first of these spellings present is taken;
    * ``name`` (``Full name``), or ``first_name`` and ``last_name`` (``First name``, ``Surname``, ...);
    * ``email`` (``Email address``, ``E-mail``);
    * LMS ids, any of ``canvas_id``, ``moodle_id``, ``lms_id``, ``participant id``, ...: all are kept.

    The separator is ``,``, or ``;`` or a tab when the header has no comma.

    Raises
    ------
    RosterError
        The file cannot be read or is not UTF-8, has no header or no id column, or a row has an empty or
        repeated id, a repeated LMS id, or more fields than the header; the message names the file, the line
        and the column.
    """
    where = str(path)
    try:
        raw = Path(path).read_bytes()
    except OSError as exc:
        raise RosterError(f"{where}: the roster cannot be read ({exc.strerror or exc})") from None
    text = raw.decode("utf-8", "surrogateescape").removeprefix("\ufeff")
    first_line = text.split("\n", 1)[0]
    delimiter = "," if "," in first_line else ";" if ";" in first_line else "\t" if "\t" in first_line else ","
    rows = _numbered_rows(where, text, delimiter)
    if not rows:
        raise RosterError(f"{where}: the roster is empty (expected a header row with an id column)")
    for line, row in rows:
        for i, value in enumerate(row):
            if _not_utf8(value):
                column = _column_name(rows[0][1], i)
                raise RosterError(f"{where}, line {line}, column {column}: not UTF-8 text; save the roster as "
                                  "UTF-8 (\"CSV UTF-8\" in Excel)")
    columns = _columns(where, rows[0][1])
    roster = Roster(path=where)
    seen: dict[str, int] = {}
    seen_lms: dict[str, tuple[int, str]] = {}
    for line, row in rows[1:]:
        if not any(v.strip() for v in row):
            continue
        entry = _entry(where, line, rows[0][1], row, columns)
        if entry.id in seen:
            raise RosterError(f"{where}, line {line}, column {_column_name(rows[0][1], columns['id'][0])}: "
                              f"the id {entry.id!r} is already on line {seen[entry.id]}")
        seen[entry.id] = line
        for lms_id in entry.lms_ids:
            if lms_id in seen_lms:
                raise RosterError(f"{where}, line {line}: the LMS id {lms_id!r} is already on line "
                                  f"{seen_lms[lms_id][0]} (student {seen_lms[lms_id][1]!r})")
            seen_lms[lms_id] = (line, entry.id)
        roster.entries[entry.id] = entry
    return roster


def _numbered_rows(where: str, text: str, delimiter: str) -> list[tuple[int, list[str]]]:
    """(line number, fields) of each CSV row; the line is where the row ends (a quoted field may span lines)."""
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    rows = []
    try:
        for row in reader:
            rows.append((reader.line_num, row))
    except csv.Error as exc:
        raise RosterError(f"{where}, line {reader.line_num}: not readable as CSV ({exc})") from None
    return rows


def _not_utf8(value: str) -> bool:
    """Whether ``value`` holds bytes that were not UTF-8 (read as surrogate escapes)."""
    return any("\udc80" <= c <= "\udcff" for c in value)


def _column_name(header: list[str], index: int) -> str:
    name = _printable(header[index].strip()) if index < len(header) else ""
    return f"{index + 1} ({name!r})" if name else str(index + 1)


def _columns(where: str, header: list[str]) -> dict[str, list[int]]:
    """Field -> the indices of its columns in ``header``; an id column is required."""
    keys = [_header_key(h) for h in header]
    columns: dict[str, list[int]] = {}
    for fieldname, spellings in ROSTER_COLUMNS.items():
        found = [i for s in spellings for i, k in enumerate(keys) if k == s]
        if found:
            columns[fieldname] = found if fieldname == "lms" else found[:1]
    if "id" not in columns:
        raise RosterError(f"{where}, line 1 (the header): no id column; expected one named "
                          f"{', '.join(repr(s) for s in ROSTER_COLUMNS['id'])} (found "
                          f"{', '.join(repr(_printable(h)) for h in header)})")
    return columns


def _entry(where: str, line: int, header: list[str], row: list[str], columns: dict[str, list[int]]) -> RosterEntry:
    """The roster entry of one CSV row."""
    if len(row) > len(header):
        raise RosterError(f"{where}, line {line}: {len(row)} fields but the header has {len(header)}; a value "
                          "holding the separator (e.g. \"Smith, Jane\") must be in double quotes")

    def value(fieldname: str) -> str:
        index = columns.get(fieldname, [len(row)])[0]
        return row[index].strip() if index < len(row) else ""

    student = value("id")
    if not student:
        raise RosterError(f"{where}, line {line}, column {_column_name(header, columns['id'][0])}: empty id")
    first, last = value("first_name"), value("last_name")
    if not (first or last) and value("name"):
        first, last = _split_name(value("name"))
    lms_ids = tuple(row[i].strip() for i in columns.get("lms", []) if i < len(row) and row[i].strip())
    return RosterEntry(student, first, last, value("email"), lms_ids)


# -- the instructor's notebooks --------------------------------------------------------------------------------

def grade_ids(notebook: dict) -> set[str]:
    """The ``grade_id`` of each graded or answer cell (nbgrader ``grade`` or ``solution``) of a notebook."""
    ids = set()
    for cell in _cells(notebook):
        meta = _nbgrader(cell)
        if (meta.get("grade") or meta.get("solution")) and isinstance(meta.get("grade_id"), str):
            ids.add(meta["grade_id"])
    return ids


def read_sources(course: str | os.PathLike, assignments: set[str]) -> Sources:
    """:data:`Sources` for :func:`arrange` from the instructor's ``course/<assignment>/<notebook>.ipynb``."""
    sources: Sources = {}
    for aid in sorted(assignments):
        for path in sorted((Path(course) / aid).glob("*.ipynb")):
            sources.setdefault(aid, {})[path.stem] = grade_ids(json.loads(path.read_bytes()))
    return sources


def _cells(notebook) -> list[dict]:
    cells = notebook.get("cells") if isinstance(notebook, dict) else None
    return [c for c in cells if isinstance(c, dict)] if isinstance(cells, list) else []


def _nbgrader(cell: dict) -> dict:
    meta = cell.get("metadata")
    meta = meta.get("nbgrader") if isinstance(meta, dict) else None
    return meta if isinstance(meta, dict) else {}


def _submitted_ids(path: Path) -> tuple[set[str], str]:
    """Every ``grade_id`` in the notebook at ``path``, and ``""`` or why the file is not a readable notebook."""
    try:
        notebook = json.loads(path.read_bytes())
    except (OSError, ValueError) as exc:
        return set(), f"it is not a readable notebook ({type(exc).__name__}: {str(exc).splitlines()[0][:100]})"
    if not isinstance(notebook, dict) or not isinstance(notebook.get("cells"), list):
        return set(), "it is not a readable notebook (no list of cells)"
    return {m["grade_id"] for m in map(_nbgrader, _cells(notebook)) if isinstance(m.get("grade_id"), str)}, ""


# -- arranging -------------------------------------------------------------------------------------------------

@dataclass
class Arranged:
    """What :func:`arrange` made of a submissions folder.

    Attributes
    ----------
    root : Path
        The folder of ``<student>/<assignment>/`` folders to give :func:`.submissions.collect_all`.
    layout : str
        ``"folders"``, ``"canvas"`` or ``"moodle"``.
    damaged : dict[str, str]
        Path relative to ``root`` -> why that zip entry was not extracted (see :attr:`.submissions.Extracted`).
    originals : dict[str, str]
        For ``"folders"``: :attr:`.submissions.Extracted.originals`, relative to ``root``. For an LMS layout:
        student folder -> the student as the LMS named them (``smithjane``, ``Jane Smith_123_assignsubmission_file_``),
        for reports only (:func:`collect_arranged`).
    unplaced : list of Unplaced
        What could not be placed, each with its reason.
    notes : dict[tuple[str, str], list[str]]
        (student folder, assignment) -> what the grader should know (late, resubmissions, roster).
    """

    root: Path
    layout: str
    damaged: dict[str, str] = field(default_factory=dict)
    originals: dict[str, str] = field(default_factory=dict)
    unplaced: list[Unplaced] = field(default_factory=list)
    notes: dict[tuple[str, str], list[str]] = field(default_factory=dict)

    def note(self, student: str, assignment: str, text: str) -> None:
        notes = self.notes.setdefault((student, assignment), [])
        if text not in notes:
            notes.append(text)


def arrange(root: str | os.PathLike, dest: str | os.PathLike, sources: Sources, roster: Roster | None = None,
            damaged: dict[str, str] | None = None, originals: dict[str, str] | None = None) -> Arranged:
    """Recognize the layout of ``root`` and lay an LMS download out as ``<student>/<assignment>/``.

    Parameters
    ----------
    root : path
        A folder of submissions (:attr:`.submissions.Extracted.root`, or a folder given as it is).
    dest : path
        Where an LMS download is copied to, emptied first; neither inside ``root`` nor holding it. Untouched
        for the ``"folders"`` layout.
    sources : dict
        Assignment id -> notebook id -> the ``grade_id``\\s of its graded and answer cells (:func:`read_sources`).
    roster : Roster, optional
        Maps the LMS' students to nbgrader ids.
    damaged, originals : dict of str to str, optional
        :attr:`.submissions.Extracted.damaged` and ``originals`` when ``root`` came from a zip.

    Returns
    -------
    Arranged
        See the module docstring for each layout.

    Raises
    ------
    SubmissionsError
        Only, with one line: ``root`` is not a folder, ``dest`` lies inside it, or a copy failed.
    """
    root, dest = Path(root), Path(dest)
    try:
        return _arrange(root, dest, sources, roster, dict(damaged or {}), dict(originals or {}))
    except SubmissionsError:
        raise
    except Exception as exc:  # the promise to the caller: one readable line, never a traceback
        raise SubmissionsError(f"{root} could not be arranged ({type(exc).__name__}: "
                               f"{str(exc).splitlines()[0] if str(exc) else ''})") from None


def _arrange(root: Path, dest: Path, sources: Sources, roster: Roster | None,
             damaged: dict[str, str], originals: dict[str, str]) -> Arranged:
    if not root.is_dir():
        raise SubmissionsError(f"{root} is neither a folder nor a zip file")
    prefix = _prefix(root, sources, originals)
    originals = _below(originals, prefix)
    source = root / prefix if prefix else root
    layout = _layout(source, originals)
    inside = {k[len(prefix):]: v for k, v in damaged.items() if k.startswith(prefix)}
    outside = [Unplaced("", k, v) for k, v in sorted(damaged.items()) if not k.startswith(prefix)]
    arranged = Arranged(source, layout, inside, originals, outside)
    if layout == "folders":
        return arranged
    _check_dest(source, dest)
    files, strays = _lms_files(source, layout, inside, originals)
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    arranged.root, arranged.damaged, arranged.originals = dest, {}, {}
    arranged.unplaced += strays
    _place_all(arranged, source, files, sources, roster)
    arranged.unplaced.sort(key=lambda u: u.path)
    return arranged


def _listing(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if not _ignored(p.name))


def _prefix(root: Path, sources: Sources, originals: dict[str, str]) -> str:
    """The folder below ``root`` to read: ``submitted/`` of an nbgrader course, a wrapper around an LMS download."""
    if _layout(root, originals) != "folders":
        return ""
    if _is_nbgrader_course(root, sources):
        return "submitted/"
    entries = _listing(root)
    if len(entries) == 1 and entries[0].is_dir() and not entries[0].is_symlink():
        inner = entries[0].name + "/"
        if _layout(entries[0], _below(originals, inner)) != "folders":
            return inner
    return ""


def _below(originals: dict[str, str], prefix: str) -> dict[str, str]:
    """``originals`` (path on disk -> path as received) of the paths under the folder ``prefix``, relative to it."""
    if not prefix:
        return dict(originals)
    return {k[len(prefix):]: v.split("/", 1)[-1] for k, v in originals.items() if k.startswith(prefix)}


def _layout(folder: Path, originals: dict[str, str]) -> str:
    """``"canvas"`` or ``"moodle"`` when at least half the entries directly in ``folder`` are so named, else
    ``"folders"``."""
    names = [(originals.get(p.name) or _printable(p.name), p.is_file()) for p in _listing(folder)]
    canvas = sum(1 for n, is_file in names if is_file and CANVAS.fullmatch(n))
    moodle = sum(1 for n, _ in names if MOODLE.fullmatch(n))
    if max(canvas, moodle) * 2 < len(names) or not max(canvas, moodle):
        return "folders"
    return "moodle" if moodle >= canvas else "canvas"


def _is_nbgrader_course(root: Path, sources: Sources) -> bool:
    """Whether ``root`` holds nbgrader's ``submitted/<student>/<assignment>/`` (and is no student's folder)."""
    submitted = root / "submitted"
    if not submitted.is_dir() or submitted.is_symlink():
        return False
    return not any(p.is_dir() and p.name in sources for p in _listing(submitted))


def _check_dest(root: Path, dest: Path) -> None:
    r, d = root.resolve(), dest.resolve()
    if d == r or r in d.parents or d in r.parents:
        raise SubmissionsError(f"cannot arrange {root} into {dest}: one lies inside the other")


# -- reading an LMS download -----------------------------------------------------------------------------------

class _Student(NamedTuple):
    """A student as the LMS names them."""

    name: str         # smithjane, Jane Smith
    lms_id: str       # Canvas user id, Moodle participant id


class _File(NamedTuple):
    """One file (or damaged zip entry) of an LMS download."""

    rel: str            # path relative to the root, as on disk
    shown: str          # the same path as received
    student: _Student
    folder: str         # the student as received, for reports: smithjane, Jane Smith_123_assignsubmission_file_
    submission: str     # the files of one submission share it (Canvas submission id, Moodle participant)
    name: str           # path inside the submission, as uploaded
    late: bool
    damaged: str        # why the zip entry was not extracted, or ""


def _lms_files(root: Path, layout: str, damaged: dict[str, str],
               originals: dict[str, str]) -> tuple[list[_File], list[Unplaced]]:
    """Every file under ``root`` and every damaged entry, parsed by the LMS' naming; rows for the others."""
    found = dict.fromkeys(damaged, "")            # path -> "" or why it cannot be read
    for where, dirs, names in os.walk(root):
        here = Path(where)
        for d in sorted(dirs):
            if _ignored(d):
                dirs.remove(d)
            elif (here / d).is_symlink():
                found[(here / d).relative_to(root).as_posix()] = "is a symbolic link"
        for n in names:
            if not _ignored(n):
                found[(here / n).relative_to(root).as_posix()] = "is a symbolic link" if (here / n).is_symlink() else ""
    files, strays = [], []
    for rel in sorted(found):
        if any(_ignored(part) for part in rel.split("/")):
            continue
        shown = originals.get(rel) or _printable(rel)
        parsed = _parse(shown, layout)
        if found[rel] or parsed is None:
            why = found[rel] or f"does not follow {LMS_NAMES[layout]}'s naming ({_naming(layout)})"
            reason = damaged.get(rel) or f"{shown} {why}; not graded"
            strays.append(Unplaced(parsed.folder if parsed else "", shown, reason))
        else:
            files.append(parsed._replace(rel=rel, shown=shown, damaged=damaged.get(rel, "")))
    return files, strays


def _parse(shown: str, layout: str) -> _File | None:
    """A path as the LMS named it, split into student, submission and file name; None when not so named."""
    top, _, below = shown.partition("/")
    if layout == "canvas":
        m = CANVAS.fullmatch(top)
        if not m or below:
            return None
        return _File("", shown, _Student(m["name"], m["user"]), m["name"], m["submission"], m["file"],
                     bool(m["late"]), "")
    m = MOODLE.fullmatch(top)
    if not m or bool(m["rest"]) == bool(below):       # a folder's name ends in "_", a flat file's in its name
        return None
    folder = top[:len(top) - len(m["rest"])]
    return _File("", shown, _Student(m["name"], m["participant"]), folder, f"{m['name']}_{m['participant']}",
                 below or m["rest"], False, "")


def _naming(layout: str) -> str:
    if layout == "canvas":
        return "<name>_<user id>_<submission id>_<file>"
    return "<Full Name>_<participant id>_assignsubmission_file_/<file>"


def _split_version(stem: str) -> tuple[str, int]:
    """``problem1-2`` -> (``problem1``, 2); ``02_bfgs (1)`` -> (``02_bfgs``, 1); other names -> (name, 0)."""
    m = _VERSION.fullmatch(stem)
    if not m:
        return stem, 0
    return m["base"], int(m["canvas"] or m["copy"])


# -- placing files ---------------------------------------------------------------------------------------------

class _Candidate(NamedTuple):
    """A file that may go to one place; of several, the greatest ``order`` is the latest."""

    order: tuple
    file: _File


def _candidate(f: _File) -> _Candidate:
    _, version = _split_version(Path(f.name).stem)
    return _Candidate((version, int(f.submission) if f.submission.isdigit() else 0, f.shown), f)


def _place_all(arranged: Arranged, source: Path, files: list[_File], sources: Sources,
               roster: Roster | None) -> None:
    """Copy ``files`` from ``source`` into ``arranged.root`` as ``<student>/<assignment>/``; fill rows and notes."""
    ids, student_notes = _student_ids(arranged.layout, {f.student for f in files}, roster)
    places: dict[tuple[str, str, str], list[_Candidate]] = {}
    assignments: dict[tuple[str, str], set[str]] = {}       # (student, submission) -> its notebooks' assignments
    for f in files:
        if not f.name.endswith(".ipynb"):
            continue
        place = _notebook_place(source, f, ids[f.student], sources, arranged)
        if place is not None:
            assignments.setdefault((ids[f.student], f.submission), set()).add(place[0])
            places.setdefault((ids[f.student], place[0], place[1] + ".ipynb"), []).append(_candidate(f))
    for f in files:
        if not f.name.endswith(".ipynb"):
            for aid in _assignments_of(arranged, f, ids[f.student], assignments):
                places.setdefault((ids[f.student], aid, f.name), []).append(_candidate(f))
    for (student, aid, target), candidates in sorted(places.items()):
        _put(arranged, source, student, aid, target, sorted(candidates))
    for f in files:
        student = ids[f.student]
        for aid in sorted(assignments.get((student, f.submission), ())):
            arranged.originals.setdefault(student, f.folder)
            for text in student_notes[f.student]:
                arranged.note(student, aid, text)
            if f.late:
                arranged.note(student, aid, f"{LMS_NAMES[arranged.layout]} marks this submission late")


def _assignments_of(arranged: Arranged, f: _File, student: str,
                    assignments: dict[tuple[str, str], set[str]]) -> list[str]:
    """The assignments a file that is no notebook goes to: its submission's, else the student's only one.

    Empty, after adding the row saying why, when neither is known.
    """
    own = assignments.get((student, f.submission))
    if own:
        return sorted(own)
    theirs = set().union(*(a for (s, _), a in assignments.items() if s == student))
    if len(theirs) == 1:
        return sorted(theirs)
    why = (f"comes with no notebook of its own, and this student's notebooks are of {len(theirs)} assignments"
           if theirs else "comes with no notebook that says which assignment it belongs to")
    arranged.unplaced.append(Unplaced(f.folder, f.shown, f.damaged or f"{f.shown} {why}; not graded"))
    return []


def _notebook_place(source: Path, f: _File, student: str, sources: Sources,
                    arranged: Arranged) -> tuple[str, str] | None:
    """(assignment, notebook id) of a submitted notebook, or None after adding the row saying why not."""
    gids, unreadable = _submitted_ids(source / f.rel) if not f.damaged else (set(), "")
    stem = Path(f.name).stem
    names = {stem.casefold(), _split_version(stem)[0].casefold()}
    scores = {(aid, nb): len(gids & ids) for aid, nbs in sources.items() for nb, ids in nbs.items()}
    best = max(scores.values(), default=0)
    top = [k for k, s in scores.items() if s == best] if best else list(scores)
    named = [k for k in top if k[1].casefold() in names]
    if best and len(top) == 1:
        return top[0]
    if len(named) == 1:
        if unreadable:
            arranged.note(student, named[0][0], f"{f.shown}: {unreadable}; placed by its file name")
        return named[0]
    if f.damaged:
        reason = f"{f.damaged} (its file name matches no single assignment's notebook)"
    elif best:
        reason = (f"{f.shown} shares {best} graded cells with each of "
                  f"{', '.join(f'{a}/{n}' for a, n in sorted(top))} and its file name decides nothing; not graded")
    elif named:
        reason = f"{f.shown} has no graded cell and its file name matches notebooks of several assignments; not graded"
    elif unreadable:
        reason = f"{f.shown}: {unreadable}, and its file name matches no assignment's notebook; not graded"
    else:
        reason = (f"{f.shown} shares no graded cell with any assignment's notebook and its file name matches none; "
                  "not graded")
    arranged.unplaced.append(Unplaced(f.folder, f.shown, reason))
    return None


def _put(arranged: Arranged, source: Path, student: str, aid: str, target: str,
         candidates: list[_Candidate]) -> None:
    """Copy the latest of ``candidates`` to ``<student>/<aid>/<target>``; note the others."""
    kept = candidates[-1].file
    rel = f"{student}/{aid}/{target}"
    if len(candidates) > 1:
        older = ", ".join(c.file.shown for c in candidates[:-1])
        arranged.note(student, aid, f"{target}: kept {kept.shown}, the latest of {len(candidates)} versions; "
                                    f"not graded: {older}")
    if kept.damaged:
        arranged.damaged[rel] = kept.damaged
        return
    dst = arranged.root / rel
    try:
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source / kept.rel, dst)
    except OSError as exc:
        raise SubmissionsError(f"{kept.shown} could not be copied to {dst} ({exc.strerror or exc})") from None


def _student_ids(layout: str, students: set[_Student],
                 roster: Roster | None) -> tuple[dict[_Student, str], dict[_Student, list[str]]]:
    """The folder of each LMS student (the roster's id, else the LMS name made safe, distinct); and notes."""
    lms = LMS_NAMES[layout]
    wanted = {}
    notes: dict[_Student, list[str]] = {s: [] for s in students}
    for s in sorted(students):
        entry = roster.match(s.lms_id, s.name) if roster is not None else None
        wanted[s] = safe_id(entry.id if entry else s.name)
        if roster is not None and entry is None:
            notes[s].append(f"the roster does not list {s.name} ({lms} id {s.lms_id}); graded as {wanted[s]}")
    ids = {}
    for s, sid in wanted.items():
        sharing = sorted(o for o, other in wanted.items() if other == sid)
        ids[s] = sid if len(sharing) == 1 else safe_id(f"{sid}_{s.lms_id}")
        if len(sharing) > 1:
            who = ", ".join(f"{o.name} ({lms} id {o.lms_id})" for o in sharing)
            notes[s].append(f"{who} would all be {sid}; graded as {ids[s]}")
    return ids, notes


# -- collecting ------------------------------------------------------------------------------------------------

def _rename_by_content(sub: Submission, notebooks: dict[str, set[str]]) -> None:
    """In an assignment folder, a notebook not named as any of the assignment's (``02_bfgs (1).ipynb``) takes the
    name of the one missing notebook whose graded cells it shares most, when exactly one such pair is found."""
    missing = [nb for nb in notebooks if nb not in sub.notebooks and nb not in sub.refused]
    strays = [nb for nb in sub.notebooks if nb not in notebooks]
    for nb_id in strays:
        gids, _ = _submitted_ids(sub.notebooks[nb_id])
        scores = {target: len(gids & notebooks[target]) for target in missing}
        best = max(scores.values(), default=0)
        top = [t for t, n in scores.items() if n == best]
        if best and len(top) == 1:
            sub.notebooks[top[0]] = sub.notebooks.pop(nb_id)
            sub.problems.append(f"{nb_id}.ipynb is graded as {top[0]}.ipynb: it holds that notebook's graded cells")
            missing.remove(top[0])


def collect_arranged(arranged: Arranged, assignment: str | None, known_assignments: set[str],
                     sources: Sources | None = None) -> tuple[list[Submission], list[Unplaced]]:
    """:func:`.submissions.collect_all` of an :class:`Arranged` folder, with its rows, notes and LMS names.

    In the folders layout, with ``sources``, a notebook named as none of its assignment's is graded as the missing
    one whose graded cells it holds (:func:`_rename_by_content`). For an LMS layout each submission's ``original``
    becomes the student as the LMS named them and its notes join its ``problems``; the grading id stays the folder's
    name (the roster's id). The rows of ``arranged`` come first, then collect_all's, sorted by path.
    """
    if arranged.layout == "folders":
        subs, rows = collect_all(arranged.root, assignment, known_assignments, arranged.damaged, arranged.originals)
        for sub in subs:
            _rename_by_content(sub, (sources or {}).get(sub.assignment, {}))
        return subs, sorted(arranged.unplaced + rows, key=lambda u: u.path)
    subs, rows = collect_all(arranged.root, assignment, known_assignments, arranged.damaged)
    for sub in subs:
        sub.original = arranged.originals.get(sub.student, sub.original)
        sub.problems += arranged.notes.get((sub.student, sub.assignment), [])
    return subs, sorted(arranged.unplaced + rows, key=lambda u: u.path)
