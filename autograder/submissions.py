"""Find submissions in a folder or an LMS zip laid out ``<student_id>/<assignment_id>/<notebook>.ipynb``."""

from __future__ import annotations

import re
import shutil
import zipfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@+-]{0,127}$")
MAX_ZIP_BYTES = 2 * 2**30
MAX_NOTEBOOK_BYTES = 50 * 2**20


class SubmissionsError(Exception):
    """The submissions cannot be read at all (the pipeline stops with this message)."""


@dataclass
class Submission:
    """One student's files for one assignment."""

    student: str
    assignment: str
    notebooks: dict[str, Path] = field(default_factory=dict)   # notebook id -> file
    problems: list[str] = field(default_factory=list)          # what was skipped, and why


def safe_extract(archive: Path, dest: Path) -> Path:
    """Extract a zip into ``dest``, refusing absolute paths, ``..``, links and oversized content."""
    try:
        zf = zipfile.ZipFile(archive)
    except (zipfile.BadZipFile, OSError) as exc:
        raise SubmissionsError(f"{archive} is not a readable zip file: {exc}") from None
    with zf:
        total = 0
        for info in zf.infolist():
            name = PurePosixPath(info.filename)
            if name.is_absolute() or ".." in name.parts or info.filename.startswith("/"):
                raise SubmissionsError(f"{archive}: refusing the unsafe path {info.filename!r}")
            if (info.external_attr >> 16) & 0o170000 == 0o120000:
                raise SubmissionsError(f"{archive}: refusing the symbolic link {info.filename!r}")
            total += info.file_size
        if total > MAX_ZIP_BYTES:
            raise SubmissionsError(f"{archive} unpacks to {total / 2**30:.1f} GiB, over the 2 GiB limit")
        if dest.exists():
            shutil.rmtree(dest)
        dest.mkdir(parents=True)
        zf.extractall(dest)
    # An LMS often wraps everything in one top-level folder: descend through it.
    entries = [p for p in dest.iterdir() if not p.name.startswith((".", "__MACOSX"))]
    if len(entries) == 1 and entries[0].is_dir() and not any(
            q.suffix == ".ipynb" for q in entries[0].rglob("*") if q.parent.parent == entries[0]):
        return entries[0]
    return dest


def collect(root: Path, assignment: str | None, known_assignments: set[str]) -> list[Submission]:
    """Submissions under ``root`` for ``assignment`` (or for every assignment of the course)."""
    if not root.is_dir():
        raise SubmissionsError(f"{root} is neither a folder nor a zip file")
    found = []
    for student_dir in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        for assignment_dir in sorted(p for p in student_dir.iterdir() if p.is_dir()):
            aid = assignment_dir.name
            if aid not in known_assignments or (assignment and aid != assignment):
                continue
            sub = Submission(student_dir.name, aid)
            if not ID.match(sub.student):
                sub.problems.append(f"student id {sub.student!r} has characters other than letters, digits "
                                    "and _.@+-; skipped")
            for nb in sorted(assignment_dir.glob("*.ipynb")):
                if nb.is_symlink() or not nb.is_file():
                    sub.problems.append(f"{nb.name} is not a regular file; skipped")
                elif nb.stat().st_size > MAX_NOTEBOOK_BYTES:
                    sub.problems.append(f"{nb.name} is over {MAX_NOTEBOOK_BYTES // 2**20} MiB; skipped")
                else:
                    sub.notebooks[nb.stem] = nb
            found.append(sub)
    return found
