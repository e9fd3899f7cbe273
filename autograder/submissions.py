"""Find submissions in a folder or an LMS zip laid out ``<student_id>/<assignment_id>/<notebook>.ipynb``.

No student folder is dropped. Each becomes a :class:`Submission` under a safe id (:func:`safe_id`) that keeps the
name as received in ``original``; a notebook that cannot be graded is listed in ``refused`` with a one-line reason;
whatever looks like a submission but belongs to no (student, assignment) comes back as an :class:`Unplaced` row.
A zip is unpacked entry by entry (:func:`extract`): a damaged, forged or oversized entry is skipped and reported,
the other entries are kept; only a zip that cannot be used at all stops the run, with a :class:`SubmissionsError`.
"""

from __future__ import annotations

import bz2
import hashlib
import lzma
import os
import re
import shutil
import struct
import unicodedata
import zipfile
import zlib
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

ID = re.compile(r"[A-Za-z0-9_@+-][A-Za-z0-9_.@+-]{0,63}")   # a folder name and an nbgrader student id, as is
MAX_ZIP_BYTES = 2 * 2**30            # all entries of a zip together, as declared and as unpacked
MAX_ZIP_ENTRIES = 100_000
MAX_NOTEBOOK_BYTES = 50 * 2**20
MAX_ENTRY_BYTES = 256 * 2**20        # any other file in a zip
MAX_RATIO = 500                      # unpacked / compressed size past RATIO_FLOOR: a zip bomb, not a notebook
RATIO_FLOOR = 8 * 2**20
NAME_MAX = 255                       # bytes in one path component on common file systems
_CHUNK = 2**20
_METHODS = {zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA}
_METHOD_NAMES = {6: "implode", 9: "deflate64", 93: "zstandard", 95: "xz", 98: "ppmd", 99: "AES encryption"}
_TRUNCATED = "the zip ends inside it (truncated)"


class SubmissionsError(Exception):
    """The submissions cannot be read at all (the pipeline stops with this one-line message)."""


@dataclass
class Submission:
    """One student's files for one assignment.

    Attributes
    ----------
    student : str
        Safe id (see :func:`safe_id`): the folder name under ``submitted/`` and the nbgrader student id.
    assignment : str
        Assignment id, one of the course's.
    notebooks : dict[str, Path]
        Notebook id (file name without ``.ipynb``) -> the file to grade.
    problems : list[str]
        Other things about this submission that were skipped, and why (e.g. a damaged data file in the zip).
    original : str
        The student folder's name exactly as received (bytes that are not UTF-8 shown as ``\\xNN``), for reports.
    refused : dict[str, str]
        Notebook id -> one-line reason it is not graded; such notebooks are absent from ``notebooks``.
    """

    student: str
    assignment: str
    notebooks: dict[str, Path] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    original: str = ""
    refused: dict[str, str] = field(default_factory=dict)


@dataclass
class Unplaced:
    """Something under the submissions root that looks like a submission but belongs to no (student, assignment).

    Attributes
    ----------
    student : str
        The student folder's name as received, or ``""`` when it lies outside any student folder.
    path : str
        Its path relative to the root, as received.
    reason : str
        One line saying why it was not graded.
    """

    student: str
    path: str
    reason: str


class Extracted(NamedTuple):
    """What :func:`extract` unpacked: the root to collect from and what it had to leave out or rename.

    Attributes
    ----------
    root : Path
        The folder holding the student folders (below any single wrapper folder an LMS adds).
    damaged : dict[str, str]
        Entry path relative to ``root``, as written on disk -> one-line reason it was not extracted.
    originals : dict[str, str]
        Path relative to ``root`` as written on disk -> the path as named in the zip, for every path with a
        component that had to be renamed to be written (over :data:`NAME_MAX` bytes).
    """

    root: Path
    damaged: dict[str, str]
    originals: dict[str, str]


class _Damaged(Exception):
    """One zip entry cannot be extracted: ``args`` are the reason and the advice to the grader."""


# -- safe ids --------------------------------------------------------------------------------------------------

def safe_id(name: str | bytes, digits: int = 8) -> str:
    """A folder name and nbgrader student id for the folder name ``name``; unchanged when already safe.

    A safe id has only ASCII letters, digits and ``_.@+-``, at most 64 characters, and does not start with ``.``.
    Any other name is folded to ASCII (NFKD, accents dropped), other characters become ``_``, and ``-`` plus the
    first ``digits`` hex digits of the SHA-256 of the original bytes are appended, so that two different names
    never share an id: ``étudiant`` -> ``etudiant-<8 hex>``, ``学生`` -> ``_-<8 hex>``.

    Parameters
    ----------
    name : str or bytes
        The name as received; a ``str`` from the file system may hold surrogate escapes for bytes that are not
        UTF-8, and is hashed as those bytes.
    digits : int
        Hex digits of the hash; :func:`collect_all` raises it only if two names of one batch still clash.
    """
    raw = name if isinstance(name, bytes) else name.encode("utf-8", "surrogateescape")
    text = raw.decode("utf-8", "replace")
    if ID.fullmatch(text) and text.encode() == raw:
        return text
    folded = "".join(c for c in unicodedata.normalize("NFKD", text) if not unicodedata.combining(c))
    stem = re.sub(r"[^A-Za-z0-9_.@+-]+", "_", folded).lstrip(".")[:64 - 1 - digits] or "_"
    return f"{stem}-{hashlib.sha256(raw).hexdigest()[:digits]}"


def _printable(name: str) -> str:
    """``name`` with bytes that are not UTF-8 (surrogate escapes from the file system) shown as ``\\xNN``."""
    return name.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def _ids(raws: dict[str, bytes]) -> dict[str, str]:
    """Safe ids for a batch of folder names (key -> original bytes), distinct even if two names clash.

    A name that is already safe keeps its id; a mapped name that meets another id gets a longer hash.
    """
    ids = {key: safe_id(raw) for key, raw in raws.items()}
    for digits in (16, 32):
        taken = Counter(ids.values())
        clashing = [k for k, i in ids.items() if taken[i] > 1 and i.encode() != raws[k]]
        for key in clashing:
            ids[key] = safe_id(raws[key], digits)
    return ids


def _size(n: int) -> str:
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= scale:
            return f"{n / scale:.1f}".removesuffix(".0") + f" {unit}"
    return f"{n} bytes"


def _too_big(name: str, size: int, limit: int) -> str:
    return f"{name} is {_size(size)}, over the {_size(limit)} limit; not graded"


# -- zips ------------------------------------------------------------------------------------------------------

def safe_extract(archive: Path, dest: Path) -> Path:
    """Unpack ``archive`` into ``dest`` and return the root to collect from; see :func:`extract`.

    Entries that could not be extracted are left out silently here; use :func:`extract` to report them.
    """
    return extract(archive, dest).root


def extract(archive: Path, dest: Path) -> Extracted:
    """Unpack the zip ``archive`` into ``dest`` (emptied first), entry by entry, with streaming size caps.

    The whole zip is refused, with a :class:`SubmissionsError`, when it is not a readable zip, is encrypted,
    names a path outside ``dest`` (absolute, ``..``, a NUL byte), holds a symbolic link, has more than
    :data:`MAX_ZIP_ENTRIES` entries or declares more than :data:`MAX_ZIP_BYTES` in all. One entry is skipped and
    reported in ``damaged`` when it is over its size cap, unpacks to more or fewer bytes than its header declares,
    looks like a zip bomb, fails its CRC-32, is truncated or corrupt, uses an unsupported compression method, or
    shares its name with another entry. Nothing but :class:`SubmissionsError` escapes.

    Names are taken as UTF-8 when flagged so or when they decode as UTF-8, as cp437 otherwise (the zip standard);
    a component too long for the file system is written under its :func:`safe_id` and its original kept in
    ``originals``. ``__MACOSX`` resource forks are not extracted.
    """
    archive, dest = Path(archive), Path(dest)
    try:
        return _extract(archive, dest)
    except SubmissionsError:
        raise
    except Exception as exc:  # the promise to the caller: one readable line, never a traceback
        raise SubmissionsError(f"{archive} could not be unpacked ({type(exc).__name__}: "
                               f"{str(exc).splitlines()[0] if str(exc) else ''})") from None


def _extract(archive: Path, dest: Path) -> Extracted:
    try:
        zf = zipfile.ZipFile(archive)
    except (zipfile.BadZipFile, OSError, EOFError, ValueError, NotImplementedError) as exc:
        raise SubmissionsError(f"{archive} is not a readable zip file ({exc}); it may be truncated or damaged — "
                               "ask for a new export") from None
    with zf, open(archive, "rb") as fp:
        plan = _plan(archive, zf.infolist())
        prefix = _wrapper(plan)
        if dest.exists():
            shutil.rmtree(dest)
        dest.mkdir(parents=True)
        copies = Counter(tuple(e.disk) for e in plan if not e.is_dir)
        damaged, originals = {}, {}
        for info, orig, disk, is_dir in plan:
            inside = disk[:len(prefix)] == prefix
            rel, rel_orig = disk[len(prefix):], orig[len(prefix):]
            for i in range(1, len(rel) + 1 if inside else 0):
                if rel[:i] != rel_orig[:i]:
                    originals["/".join(rel[:i])] = "/".join(rel_orig[:i])
            target = dest.joinpath(*disk)
            if is_dir:
                try:
                    target.mkdir(parents=True, exist_ok=True)
                except OSError:
                    pass            # a file of that name was extracted: the entries below it report themselves
                continue
            if copies[tuple(disk)] > 1:
                reason = (f"{orig[-1]} could not be extracted from the zip: the zip holds {copies[tuple(disk)]} "
                          "entries of this name; ask for a new copy")
            else:
                reason = _extract_entry(fp, info, orig[-1], target)
            if reason and inside and rel:
                damaged["/".join(rel)] = reason
    return Extracted(dest.joinpath(*prefix), damaged, originals)


class _Entry(NamedTuple):
    """One zip entry: its path components as named (``orig``) and as they will be written (``disk``)."""

    info: zipfile.ZipInfo
    orig: list[str]
    disk: list[str]
    is_dir: bool


def _plan(archive: Path, infos: list[zipfile.ZipInfo]) -> list[_Entry]:
    """The entries to extract, with the names they will be written under; refuses a zip that cannot be used."""
    if len(infos) > MAX_ZIP_ENTRIES:
        raise SubmissionsError(f"{archive} has {len(infos)} entries, over the {MAX_ZIP_ENTRIES} limit")
    plan, total = [], 0
    for info in infos:
        name = _entry_name(info)
        path = name.replace("\\", "/")                # some Windows tools write backslashes
        parts = [p for p in path.split("/") if p not in ("", ".")]
        if "\x00" in name or name.startswith(("/", "\\")) or re.match(r"[A-Za-z]:", name) or ".." in parts:
            raise SubmissionsError(f"{archive}: refusing the unsafe path {name[:200]!r}")
        if not parts or "__MACOSX" in parts:
            continue
        if (info.external_attr >> 16) & 0o170000 == 0o120000:
            raise SubmissionsError(f"{archive}: refusing the symbolic link {name[:200]!r}")
        if info.flag_bits & 0x1:
            raise SubmissionsError(f"{archive} is encrypted (password-protected); ask for an export without one")
        total += info.file_size
        disk = [p if len(p.encode()) <= NAME_MAX else safe_id(p) for p in parts]
        plan.append(_Entry(info, parts, disk, path.endswith("/")))
    if total > MAX_ZIP_BYTES:
        raise SubmissionsError(f"{archive} unpacks to {_size(total)}, over the {_size(MAX_ZIP_BYTES)} limit")
    return plan


def _entry_name(info: zipfile.ZipInfo) -> str:
    """The entry's name: UTF-8 when flagged or when its bytes decode so (many tools omit the flag), else cp437."""
    if info.flag_bits & 0x800:
        return info.orig_filename
    try:
        return info.orig_filename.encode("cp437").decode("utf-8")
    except UnicodeError:
        return info.orig_filename


def _wrapper(plan: list[_Entry]) -> list[str]:
    """Path of the single folder(s) an LMS wraps everything in: descend while most notebooks lie 4 or more deep.

    Most, not all: one stray notebook beside the student folders must not hide the wrapper (it becomes a row
    saying where it lies)."""
    prefix: list[str] = []
    while True:
        inside = [(e.disk[len(prefix):], e.is_dir) for e in plan if e.disk[:len(prefix)] == prefix]
        inside = [(r, is_dir) for r, is_dir in inside if r and not _ignored(r[0])]
        depths = [len(r) for r, is_dir in inside if not is_dir and r[-1].endswith(".ipynb")]
        if len({r[0] for r, _ in inside}) != 1 or not all(len(r) > 1 or d for r, d in inside) \
                or not depths or sorted(depths)[len(depths) // 2] < 4:
            return prefix
        prefix.append(inside[0][0][0])


def _extract_entry(fp, info: zipfile.ZipInfo, name: str, target: Path) -> str | None:
    """Write one entry to ``target``; the reason it was skipped, or None when it was written intact."""
    notebook = name.endswith(".ipynb")
    declared, packed = info.file_size, info.compress_size
    if notebook and declared > MAX_NOTEBOOK_BYTES:
        return _too_big(name, declared, MAX_NOTEBOOK_BYTES)
    if declared > MAX_ENTRY_BYTES:
        return f"{name} is {_size(declared)}, over the {_size(MAX_ENTRY_BYTES)} limit for a file in a zip; skipped"

    def failed(why: str, advice: str = "ask for a new copy") -> str:
        return f"{name} could not be extracted from the zip: {why}; {advice}"

    # Unpacking stops at the declared size, so bounding the declared ratio bounds the real one.
    if declared > RATIO_FLOOR and declared > MAX_RATIO * packed:
        return failed(f"it unpacks to more than {MAX_RATIO} times its compressed size (a zip bomb)", "not graded")
    if info.compress_type not in _METHODS:
        method = _METHOD_NAMES.get(info.compress_type, "unknown")
        return failed(f"it uses compression method {info.compress_type} ({method}), which cannot be unpacked here",
                      "ask for a zip made with ordinary (deflate) compression")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        out = open(target, "wb")
    except OSError as exc:
        return failed(f"it cannot be written here ({exc.strerror})", "ask for a copy under another name")
    written, crc = 0, 0
    try:
        with out:
            for data in _unpacked(fp, info):
                written += len(data)
                if written > declared:
                    raise _Damaged(f"its header declares {declared} bytes but it unpacks to more "
                                   "(a damaged or forged header)")
                crc = zlib.crc32(data, crc)
                out.write(data)
        if written < declared:
            raise _Damaged(f"its header declares {declared} bytes but it holds {written} (a damaged or forged header)")
        if crc != info.CRC:
            raise _Damaged("bad CRC-32 (the file is damaged)")
    except _Damaged as exc:
        target.unlink(missing_ok=True)
        return failed(*exc.args)
    return None


class _Packed:
    """The compressed bytes of one entry, never read past the size the central directory gives them."""

    def __init__(self, fp, size: int):
        self.fp, self.left = fp, size

    def read(self, n: int) -> bytes:
        if self.left <= 0:
            return b""
        data = self.fp.read(min(n, self.left))
        if not data:
            raise _Damaged(_TRUNCATED)
        self.left -= len(data)
        return data


def _unpacked(fp, info: zipfile.ZipInfo) -> Iterator[bytes]:
    """The entry's bytes, at most :data:`_CHUNK` at a time, however far they would expand."""
    try:
        fp.seek(info.header_offset)
        head = fp.read(30)
        if len(head) < 30 or head[:4] != b"PK\x03\x04":
            raise _Damaged("its local header is missing or damaged")
        fp.seek(sum(struct.unpack("<HH", head[26:30])), os.SEEK_CUR)      # file name and extra field
        packed = _Packed(fp, info.compress_size)
        if info.compress_type == zipfile.ZIP_STORED:
            while data := packed.read(_CHUNK):
                yield data
        elif info.compress_type == zipfile.ZIP_DEFLATED:
            d = zlib.decompressobj(-15)
            while not d.eof:
                data = d.unconsumed_tail or packed.read(_CHUNK)
                out = d.decompress(data, _CHUNK)
                if not data and not out:
                    raise _Damaged(_TRUNCATED)
                yield out
        else:
            d = bz2.BZ2Decompressor() if info.compress_type == zipfile.ZIP_BZIP2 else _lzma(packed, info.file_size)
            while not d.eof:
                data = packed.read(_CHUNK) if d.needs_input else b""
                if d.needs_input and not data:
                    # LZMA data may end without an end marker (general purpose bit 1 unset): sizes and CRC decide.
                    if isinstance(d, bz2.BZ2Decompressor) or info.flag_bits & 0x2:
                        raise _Damaged(_TRUNCATED)
                    return
                yield d.decompress(data, _CHUNK)
    except (zlib.error, lzma.LZMAError, OSError, EOFError, ValueError):
        raise _Damaged("its compressed data is corrupt (the file is damaged)") from None


def _lzma(packed: _Packed, declared: int) -> lzma.LZMADecompressor:
    """A decoder for zip's LZMA: a 4-byte version and size header, 5 property bytes, then raw LZMA1.

    The dictionary is allocated up front, so it is bounded by the declared size: no match of an entry that
    honours its size reaches further back (4 KiB is liblzma's minimum).
    """
    head = packed.read(4)
    props = packed.read(5) if len(head) == 4 and head[2:4] == b"\x05\x00" else b""
    if len(props) != 5:
        raise _Damaged("its LZMA header is damaged")
    lc, lp, pb = props[0] % 9, props[0] // 9 % 5, props[0] // 45
    dict_size = min(struct.unpack("<I", props[1:])[0], max(declared, 4096))
    return lzma.LZMADecompressor(lzma.FORMAT_RAW, filters=[
        {"id": lzma.FILTER_LZMA1, "lc": lc, "lp": lp, "pb": pb, "dict_size": dict_size}])


# -- collecting ------------------------------------------------------------------------------------------------

def _ignored(name: str) -> bool:
    """Entries made by tools, not students: hidden files, ``.ipynb_checkpoints``, macOS ``__MACOSX``."""
    return name.startswith(".") or name == "__MACOSX"


def _listing(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if not _ignored(p.name))


def collect(root: Path, assignment: str | None, known_assignments: set[str]) -> list[Submission]:
    """Submissions under ``root`` for ``assignment`` (or every assignment); :func:`collect_all` without the rows."""
    return collect_all(root, assignment, known_assignments)[0]


def collect_all(root: Path, assignment: str | None, known_assignments: set[str],
                damaged: dict[str, str] | None = None,
                originals: dict[str, str] | None = None) -> tuple[list[Submission], list[Unplaced]]:
    """Every submission under ``root``, and every file or folder that looks like one but cannot be placed.

    Each ``<student>/<known assignment>/`` folder (for ``assignment`` only, when given) becomes a
    :class:`Submission`, whatever the student folder's name. Notebooks that are symbolic links, not regular files,
    over :data:`MAX_NOTEBOOK_BYTES`, in a subfolder, or listed in ``damaged`` are ``refused`` with their reason.
    A notebook directly under the root or a student folder, a folder that is no assignment of the course, a
    symbolic link to a folder, a student folder with nothing to grade, and a damaged entry that belongs to no
    submission each become an :class:`Unplaced` row. Hidden entries and ``__MACOSX`` are tools' files, not read.

    Parameters
    ----------
    root : Path
        The folder of student folders (e.g. :attr:`Extracted.root`).
    assignment : str or None
        Only this assignment; None for every assignment in ``known_assignments``.
    known_assignments : set of str
        The course's assignment ids.
    damaged, originals : dict of str to str, optional
        :attr:`Extracted.damaged` and :attr:`Extracted.originals` when ``root`` came from a zip.

    Returns
    -------
    list of Submission
        Sorted by student id, then assignment; student ids are distinct for distinct folder names.
    list of Unplaced
        Sorted by path.
    """
    root = Path(root)
    if not root.is_dir():
        raise SubmissionsError(f"{root} is neither a folder nor a zip file")
    damaged, originals = damaged or {}, originals or {}
    subs: dict[tuple[str, str], Submission] = {}
    unplaced: list[Unplaced] = []
    accounted: set[str] = set()              # student folders that gave a submission or a row

    def wanted(aid: str) -> bool:
        return assignment is None or aid == assignment

    def shown(rel: str) -> str:                 # a path as received: from the zip's names, or printable
        return originals.get(rel) or _printable(rel)

    def submission(student: str, aid: str) -> Submission:
        accounted.add(student)
        return subs.setdefault((student, aid), Submission("", aid, original=shown(student)))

    def stray(student: str, rel: str, why: str) -> None:
        if student:
            accounted.add(student)
        unplaced.append(Unplaced(shown(student) if student else "", shown(rel), f"{shown(rel)} {why}; not graded"))

    students = []
    for entry in _listing(root):
        if entry.is_symlink():
            if entry.is_dir() or entry.name.endswith(".ipynb"):
                stray(entry.name if entry.is_dir() else "", entry.name, "is a symbolic link")
        elif entry.is_dir():
            students.append(entry.name)
            for child in _listing(entry):
                rel = f"{entry.name}/{child.name}"
                if child.is_symlink() and (child.is_dir() or child.name.endswith(".ipynb")):
                    stray(entry.name, rel, "is a symbolic link")
                elif child.is_dir() and child.name not in known_assignments:
                    if _holds_notebook(child):
                        stray(entry.name, rel, "is not an assignment of this course (expected "
                                               f"{shown(entry.name)}/<assignment>/<notebook>.ipynb)")
                elif child.is_dir():
                    accounted.add(entry.name)
                    if wanted(child.name):
                        _fill(submission(entry.name, child.name), child)
                elif child.name.endswith(".ipynb"):
                    stray(entry.name, rel, "lies directly in the student's folder, not in an assignment folder")
        elif entry.name.endswith(".ipynb"):
            stray("", entry.name, "lies directly in the submissions folder, not in <student>/<assignment>/")
    for rel, reason in sorted(damaged.items()):
        parts = rel.split("/")
        if any(_ignored(p) for p in parts):
            continue
        if len(parts) >= 3 and parts[1] in known_assignments:
            accounted.add(parts[0])
            if wanted(parts[1]):
                sub = submission(parts[0], parts[1])
                if len(parts) == 3 and parts[2].endswith(".ipynb"):
                    sub.refused[_printable(parts[2][:-len(".ipynb")])] = reason
                else:
                    sub.problems.append(reason)
        else:
            student = parts[0] if len(parts) > 1 else ""
            accounted.add(student)
            unplaced.append(Unplaced(shown(student) if student else "", shown(rel), reason))
    for student in students:
        if student not in accounted:
            stray(student, student, "holds no assignment folder (expected "
                                    f"{shown(student)}/<assignment>/<notebook>.ipynb)")
    raws = {s: originals[s].encode() if s in originals else os.fsencode(s) for s, _ in subs}
    ids = _ids(raws)
    for (student, _), sub in subs.items():
        sub.student = ids[student]
    return sorted(subs.values(), key=lambda s: (s.student, s.assignment)), sorted(unplaced, key=lambda u: u.path)


def _holds_notebook(folder: Path) -> bool:
    """Whether a notebook lies anywhere under ``folder`` (an empty stray folder is no submission)."""
    for _, dirs, files in os.walk(folder):
        dirs[:] = [d for d in dirs if not _ignored(d)]
        if any(f.endswith(".ipynb") for f in files):
            return True
    return False


def _fill(sub: Submission, folder: Path) -> None:
    """Put each notebook of the assignment folder ``folder`` into ``sub.notebooks`` or ``sub.refused``."""
    for nb in _listing(folder):
        if not nb.name.endswith(".ipynb"):
            continue
        nb_id, name = _printable(nb.name[:-len(".ipynb")]), _printable(nb.name)
        if nb.is_symlink():
            sub.refused[nb_id] = f"{name} is a symbolic link; not graded"
        elif not nb.is_file():
            sub.refused[nb_id] = f"{name} is not a regular file; not graded"
        elif nb.stat().st_size > MAX_NOTEBOOK_BYTES:
            sub.refused[nb_id] = _too_big(name, nb.stat().st_size, MAX_NOTEBOOK_BYTES)
        else:
            sub.notebooks[nb_id] = nb
    # A notebook one folder too deep (a zip of the assignment folder inside it) is named, not reported missing.
    for where, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not _ignored(d))
        sub_folder = Path(where).relative_to(folder).as_posix()
        for fname in sorted(f for f in files if f.endswith(".ipynb") and sub_folder != "."):
            nb_id = _printable(fname[:-len(".ipynb")])
            if nb_id not in sub.notebooks and nb_id not in sub.refused:
                sub.refused[nb_id] = (f"{_printable(fname)} lies in the subfolder {_printable(sub_folder)}/, not "
                                      f"directly in {_printable(folder.name)}/; not graded")
