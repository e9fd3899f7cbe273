"""Finding submissions: every student folder is graded under a safe id, and whatever is refused says why.

Folders and zips are built in ``tmp_path``; damaged zips are made by patching the headers of a good one, so each
test names exactly the one defect it checks. Nothing here grades a notebook.
"""

from __future__ import annotations

import hashlib
import os
import random
import struct
import warnings
import zipfile

import pytest

from autograder import submissions as sm
from autograder.submissions import ID, SubmissionsError, Unplaced, collect, collect_all, extract, safe_extract, safe_id

MINI = "00_mini"
KNOWN = {MINI, "01_secant"}
NOTEBOOK = b'{"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}'


def put(root, rel, data=NOTEBOOK):
    path = root.joinpath(*rel.split("/"))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def make_zip(path, entries, method=zipfile.ZIP_DEFLATED):
    """A zip of ``entries`` (name -> bytes, or (bytes, method))."""
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in entries.items():
            data, how = data if isinstance(data, tuple) else (data, method)
            zf.writestr(zipfile.ZipInfo(name, (2024, 1, 1, 0, 0, 0)), data, compress_type=how)
    return path


def patch(path, name, **fields):
    """Overwrite header fields of entry ``name`` in both its local header and its central directory record.

    Fields: ``method``, ``crc``, ``packed`` (compressed size), ``size`` (uncompressed size), ``flags``, and
    ``name_bytes`` (same length as the name).
    """
    data = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as zf:
        info = zf.getinfo(name)
    local = info.header_offset
    central = data.index(b"PK\x01\x02")                                # the record pointing at our entry
    while struct.unpack_from("<I", data, central + 42)[0] != local:
        central = data.index(b"PK\x01\x02", central + 4)
    # (offset in the local header, offset in the central record, struct format)
    where = {"flags": (6, 8, "<H"), "method": (8, 10, "<H"), "crc": (14, 16, "<I"), "packed": (18, 20, "<I"),
             "size": (22, 24, "<I")}
    for key, value in fields.items():
        if key == "name_bytes":
            data[local + 30:local + 30 + len(value)] = value
            data[central + 46:central + 46 + len(value)] = value
            continue
        lo, co, fmt = where[key]
        struct.pack_into(fmt, data, local + lo, value)
        struct.pack_into(fmt, data, central + co, value)
    path.write_bytes(bytes(data))
    return info


def by_student(subs):
    return {s.original: s for s in subs}


# -- safe ids --------------------------------------------------------------------------------------------------

def test_safe_ids_keep_safe_names_and_map_the_others():
    for name in ("alice", "alice.smith@uni.edu", "b+c-d_e", "X" * 64):
        assert safe_id(name) == name
    digest = lambda s: hashlib.sha256(s.encode()).hexdigest()[:8]     # noqa: E731
    assert safe_id("étudiant") == f"etudiant-{digest('étudiant')}"
    assert safe_id("学生") == f"_-{digest('学生')}"
    assert safe_id("Jean Dupont") == f"Jean_Dupont-{digest('Jean Dupont')}"
    for name in ("x" * 65, "y" * 300, ".hidden", "...", "a/b", "tab\there", os.fsdecode(b"\xe9l\xe8ve"),
                 "ﬁnal Ⅻ"):
        sid = safe_id(name)
        assert ID.fullmatch(sid) and len(sid) <= 64 and not sid.startswith("."), (name, sid)
        assert safe_id(name) == sid                                     # deterministic
    assert safe_id(b"\xe9l\xe8ve") == safe_id(os.fsdecode(b"\xe9l\xe8ve"))
    assert safe_id("ﬁnal Ⅻ").startswith("final_XII-")
    # The same letters, composed (NFC) or decomposed (NFD), are two names and two ids.
    assert safe_id("\u00e9tudiant") != safe_id("e\u0301tudiant")


# -- folders ---------------------------------------------------------------------------------------------------

def test_every_student_folder_becomes_a_submission(tmp_path):
    names = ["alice", "Jean Dupont", "étudiant", "学生", "z" * 200, os.fsdecode(b"\xe9l\xe8ve")]
    for name in names:
        put(tmp_path, f"{name}/{MINI}/{MINI}.ipynb")
    subs, unplaced = collect_all(tmp_path, None, KNOWN)
    assert not unplaced
    assert sorted(s.original for s in subs) == sorted([*names[:5], "\\xe9l\\xe8ve"])
    assert len({s.student for s in subs}) == len(names)
    for s in subs:
        assert ID.fullmatch(s.student) and len(s.student) <= 64
        assert list(s.notebooks) == [MINI] and s.notebooks[MINI].is_file() and not s.refused and not s.problems
    assert by_student(subs)["alice"].student == "alice"
    assert by_student(subs)["étudiant"].student.startswith("etudiant-")
    assert [s.student for s in collect(tmp_path, MINI, KNOWN)] == [s.student for s in subs]


def test_folder_names_that_fold_alike_get_distinct_ids(tmp_path):
    nfc, nfd = "\u00e9tudiant", "e\u0301tudiant"
    squatter = safe_id(nfc)                 # a folder literally named as the other's mapped id
    for name in (nfc, nfd, squatter, "Jean Dupont", "Jean_Dupont"):
        put(tmp_path, f"{name}/{MINI}/{MINI}.ipynb")
    subs = collect(tmp_path, None, KNOWN)
    ids = {s.original: s.student for s in subs}
    assert len(set(ids.values())) == 5
    assert ids[squatter] == squatter and ids["Jean_Dupont"] == "Jean_Dupont"     # safe names never move
    assert ids[nfc] == safe_id(nfc, 16) and ids[nfd] == safe_id(nfd)


def test_refused_notebooks_say_why(tmp_path, monkeypatch):
    monkeypatch.setattr(sm, "MAX_NOTEBOOK_BYTES", 1000)
    folder = tmp_path / "alice" / MINI
    put(tmp_path, f"alice/{MINI}/{MINI}.ipynb")
    put(tmp_path, f"alice/{MINI}/02_big.ipynb", b" " * 1500)
    (folder / "03_lbfgs.ipynb").symlink_to(folder / f"{MINI}.ipynb")
    (folder / "04_dir.ipynb").mkdir()
    put(tmp_path, f"alice/{MINI}/inner/05_deep.ipynb")
    put(tmp_path, f"alice/{MINI}/.ipynb_checkpoints/{MINI}-checkpoint.ipynb")
    [sub] = collect(tmp_path, None, KNOWN)
    assert list(sub.notebooks) == [MINI]
    assert sub.refused == {
        "02_big": "02_big.ipynb is 1.5 KiB, over the 1000 bytes limit; not graded",
        "03_lbfgs": "03_lbfgs.ipynb is a symbolic link; not graded",
        "04_dir": "04_dir.ipynb is not a regular file; not graded",
        "05_deep": f"05_deep.ipynb lies in the subfolder inner/, not directly in {MINI}/; not graded"}


def test_what_cannot_be_placed_becomes_a_row(tmp_path):
    put(tmp_path, "stray.ipynb")
    put(tmp_path, f"bob/{MINI}.ipynb")                                  # no assignment folder
    put(tmp_path, "carol/99_unknown/x.ipynb")
    (tmp_path / "carol" / "empty_folder").mkdir()                      # no notebook: no row
    put(tmp_path, "dave/notes.txt", b"hi")                              # nothing to grade at all
    put(tmp_path, f"erin/{MINI}/{MINI}.ipynb")
    (tmp_path / "frank").symlink_to(tmp_path / "erin", target_is_directory=True)
    put(tmp_path, "__MACOSX/erin/._x.ipynb")
    put(tmp_path, ".DS_Store", b"")
    subs, unplaced = collect_all(tmp_path, None, KNOWN)
    assert [s.original for s in subs] == ["erin"]
    assert unplaced == [
        Unplaced("bob", f"bob/{MINI}.ipynb", f"bob/{MINI}.ipynb lies directly in the student's folder, not in an "
                                             "assignment folder; not graded"),
        Unplaced("carol", "carol/99_unknown", "carol/99_unknown is not an assignment of this course (expected "
                                              "carol/<assignment>/<notebook>.ipynb); not graded"),
        Unplaced("dave", "dave", "dave holds no assignment folder (expected dave/<assignment>/<notebook>.ipynb); "
                                 "not graded"),
        Unplaced("frank", "frank", "frank is a symbolic link; not graded"),
        Unplaced("", "stray.ipynb", "stray.ipynb lies directly in the submissions folder, not in "
                                    "<student>/<assignment>/; not graded")]


def test_assignment_filter_skips_other_assignments_quietly(tmp_path):
    put(tmp_path, f"alice/{MINI}/{MINI}.ipynb")
    put(tmp_path, "bob/01_secant/01_secant.ipynb")
    subs, unplaced = collect_all(tmp_path, MINI, KNOWN)
    assert [(s.student, s.assignment) for s in subs] == [("alice", MINI)] and not unplaced


def test_a_file_is_no_submissions_folder(tmp_path):
    with pytest.raises(SubmissionsError, match="neither a folder nor a zip"):
        collect_all(put(tmp_path, "x.zip", b"x"), None, KNOWN)


# -- zips: names -----------------------------------------------------------------------------------------------

def test_zip_names_in_any_encoding_and_length_are_graded(tmp_path):
    long_name = "é" + "x" * 299                                         # 301 bytes: over one path component
    archive = make_zip(tmp_path / "a.zip", {
        f"Xtudiant/{MINI}/{MINI}.ipynb": NOTEBOOK,                      # becomes cp437 b"\x82tudiant"
        f"XXleve/{MINI}/{MINI}.ipynb": NOTEBOOK,                        # becomes UTF-8 without the flag
        f"学生/{MINI}/{MINI}.ipynb": NOTEBOOK,                            # UTF-8 with the flag (zipfile sets it)
        f"{long_name}/{MINI}/{MINI}.ipynb": NOTEBOOK,
        f"Jean Dupont/{MINI}/{MINI}.ipynb": NOTEBOOK,
        f"win\\{MINI}\\{MINI}.ipynb": NOTEBOOK})                          # backslashes from a Windows tool
    patch(archive, f"Xtudiant/{MINI}/{MINI}.ipynb", name_bytes=b"\x82")
    patch(archive, f"XXleve/{MINI}/{MINI}.ipynb", name_bytes="é".encode())
    got = extract(archive, tmp_path / "out")
    assert got.root == tmp_path / "out" and not got.damaged
    assert got.originals == {safe_id(long_name): long_name, f"{safe_id(long_name)}/{MINI}": f"{long_name}/{MINI}",
                             f"{safe_id(long_name)}/{MINI}/{MINI}.ipynb": f"{long_name}/{MINI}/{MINI}.ipynb"}
    subs, unplaced = collect_all(got.root, None, KNOWN, damaged=got.damaged, originals=got.originals)
    assert not unplaced
    subs = by_student(subs)
    assert sorted(subs) == sorted(["étudiant", "éleve", "学生", long_name, "Jean Dupont", "win"])
    assert subs[long_name].student == safe_id(long_name) and len(subs[long_name].student) <= 64
    for s in subs.values():
        assert list(s.notebooks) == [MINI] and s.notebooks[MINI].read_bytes() == NOTEBOOK


def test_lms_wrapper_folder_is_descended_but_a_lone_student_is_not(tmp_path):
    wrapped = make_zip(tmp_path / "w.zip", {f"export/carol/{MINI}/{MINI}.ipynb": NOTEBOOK,
                                            "__MACOSX/export/._carol": b"junk"})
    assert safe_extract(wrapped, tmp_path / "w") == tmp_path / "w" / "export"
    lone = make_zip(tmp_path / "l.zip", {f"carol/{MINI}/{MINI}.ipynb": NOTEBOOK})
    root = safe_extract(lone, tmp_path / "l")
    assert root == tmp_path / "l" and [s.student for s in collect(root, None, KNOWN)] == ["carol"]


def test_bzip2_lzma_and_stored_entries_unpack(tmp_path):
    archive = make_zip(tmp_path / "m.zip", {
        f"a/{MINI}/{MINI}.ipynb": (NOTEBOOK, zipfile.ZIP_BZIP2),
        f"b/{MINI}/{MINI}.ipynb": (NOTEBOOK, zipfile.ZIP_LZMA),
        f"c/{MINI}/{MINI}.ipynb": (NOTEBOOK, zipfile.ZIP_STORED)})
    got = extract(archive, tmp_path / "out")
    assert not got.damaged
    assert all(s.notebooks[MINI].read_bytes() == NOTEBOOK for s in collect(got.root, None, KNOWN))


# -- zips: damaged entries -------------------------------------------------------------------------------------

def damaged_zip(tmp_path):
    """One good student and one student per defect, each defect in the notebook of that student."""
    big = b"0" * 50_000
    nb = lambda who: f"{who}/{MINI}/{MINI}.ipynb"                      # noqa: E731
    archive = make_zip(tmp_path / "d.zip", {
        nb("good"): NOTEBOOK, nb("liar"): big, nb("shy"): NOTEBOOK, nb("crc"): (NOTEBOOK, zipfile.ZIP_STORED),
        nb("cut"): big, nb("exotic"): NOTEBOOK, nb("bomb"): b"\0" * 3_000_000, nb("corrupt"): big,
        f"good/{MINI}/data.csv": (b"1,2", zipfile.ZIP_STORED), "loose.ipynb": (NOTEBOOK, zipfile.ZIP_STORED)})
    with zipfile.ZipFile(archive) as zf:
        info = {i.filename: i for i in zf.infolist()}
    patch(archive, nb("liar"), size=100)                                 # declares 100, unpacks to 50 000
    patch(archive, nb("shy"), size=len(NOTEBOOK) + 10)                   # declares more than it holds
    data = bytearray(archive.read_bytes())
    start = info[nb("crc")].header_offset + 30 + len(nb("crc"))
    data[start + 5] ^= 0xFF                                             # one flipped byte of stored data
    start = info[nb("corrupt")].header_offset + 30 + len(nb("corrupt"))
    data[start:start + 4] = b"\xff\xff\xff\xff"                         # an invalid deflate block type
    start = info[f"good/{MINI}/data.csv"].header_offset + 30 + len(f"good/{MINI}/data.csv")
    data[start] ^= 0xFF
    start = info["loose.ipynb"].header_offset + 30 + len("loose.ipynb")
    data[start] ^= 0xFF
    archive.write_bytes(bytes(data))
    patch(archive, nb("cut"), packed=info[nb("cut")].compress_size // 2)  # the stream stops half way
    patch(archive, nb("exotic"), method=9)                               # deflate64
    return archive


def test_damaged_entries_are_refused_one_by_one(tmp_path, monkeypatch):
    monkeypatch.setattr(sm, "RATIO_FLOOR", 1_000_000)
    archive = damaged_zip(tmp_path)
    got = extract(archive, tmp_path / "out")
    subs, unplaced = collect_all(got.root, None, KNOWN, damaged=got.damaged, originals=got.originals)
    subs = by_student(subs)
    assert list(subs["good"].notebooks) == [MINI] and not subs["good"].refused
    assert subs["good"].problems == ["data.csv could not be extracted from the zip: bad CRC-32 (the file is "
                                     "damaged); ask for a new copy"]
    failed = f"{MINI}.ipynb could not be extracted from the zip: "
    expected = {
        "liar": "its header declares 100 bytes but it unpacks to more (a damaged or forged header); ask for a new copy",
        "shy": f"its header declares {len(NOTEBOOK) + 10} bytes but it holds {len(NOTEBOOK)} (a damaged or forged "
               "header); ask for a new copy",
        "crc": "bad CRC-32 (the file is damaged); ask for a new copy",
        "cut": "the zip ends inside it (truncated); ask for a new copy",
        "exotic": "it uses compression method 9 (deflate64), which cannot be unpacked here; ask for a zip made "
                  "with ordinary (deflate) compression",
        "bomb": "it unpacks to more than 500 times its compressed size (a zip bomb); not graded",
        "corrupt": "its compressed data is corrupt (the file is damaged); ask for a new copy"}
    for who, why in expected.items():
        assert subs[who].refused == {MINI: failed + why} and not subs[who].notebooks, who
        assert not (got.root / who / MINI / f"{MINI}.ipynb").exists()
    assert unplaced == [Unplaced("", "loose.ipynb", "loose.ipynb could not be extracted from the zip: bad CRC-32 "
                                                    "(the file is damaged); ask for a new copy")]


def test_oversized_and_duplicate_entries_in_a_zip(tmp_path, monkeypatch):
    monkeypatch.setattr(sm, "MAX_NOTEBOOK_BYTES", 1000)
    monkeypatch.setattr(sm, "MAX_ENTRY_BYTES", 2000)
    archive = tmp_path / "o.zip"
    with warnings.catch_warnings(), zipfile.ZipFile(archive, "w") as zf:
        warnings.simplefilter("ignore")                                 # zipfile warns about the duplicate
        zf.writestr(f"alice/{MINI}/{MINI}.ipynb", b" " * 1500)
        zf.writestr(f"alice/{MINI}/data.bin", b" " * 2500)
        zf.writestr(f"bob/{MINI}/{MINI}.ipynb", NOTEBOOK)
        zf.writestr(f"bob/{MINI}/{MINI}.ipynb", NOTEBOOK)
    got = extract(archive, tmp_path / "out")
    subs = by_student(collect_all(got.root, None, KNOWN, damaged=got.damaged)[0])
    assert subs["alice"].refused == {MINI: f"{MINI}.ipynb is 1.5 KiB, over the 1000 bytes limit; not graded"}
    assert subs["alice"].problems == ["data.bin is 2.4 KiB, over the 2 KiB limit for a file in a zip; skipped"]
    assert subs["bob"].refused == {MINI: f"{MINI}.ipynb could not be extracted from the zip: the zip holds 2 "
                                         "entries of this name; ask for a new copy"}


# -- zips: unusable as a whole ---------------------------------------------------------------------------------

def refuse(archive, tmp_path, match):
    with pytest.raises(SubmissionsError, match=match) as caught:
        extract(archive, tmp_path / "out")
    assert "\n" not in str(caught.value)


def test_unusable_zips_stop_with_one_line(tmp_path, monkeypatch):
    refuse(put(tmp_path, "text.zip", b"not a zip at all"), tmp_path, "is not a readable zip file")
    good = make_zip(tmp_path / "good.zip", {f"a/{MINI}/{MINI}.ipynb": NOTEBOOK, f"b/{MINI}/{MINI}.ipynb": NOTEBOOK})
    cut = put(tmp_path, "cut.zip", good.read_bytes()[:-40])             # the central directory is gone
    refuse(cut, tmp_path, "is not a readable zip file.*truncated")
    for name in ("../../escape/x.ipynb", "/etc/x.ipynb", "C:\\x.ipynb", "a\\..\\..\\x.ipynb"):
        refuse(make_zip(tmp_path / "u.zip", {name: NOTEBOOK}), tmp_path, "unsafe path")
    link = tmp_path / "link.zip"
    with zipfile.ZipFile(link, "w") as zf:
        info = zipfile.ZipInfo(f"a/{MINI}/{MINI}.ipynb")
        info.external_attr = (0o120777 << 16)
        zf.writestr(info, "/etc/passwd")
    refuse(link, tmp_path, "symbolic link")
    locked = make_zip(tmp_path / "locked.zip", {f"a/{MINI}/{MINI}.ipynb": NOTEBOOK})
    patch(locked, f"a/{MINI}/{MINI}.ipynb", flags=0x1)
    refuse(locked, tmp_path, "encrypted")
    monkeypatch.setattr(sm, "MAX_ZIP_BYTES", 100)
    refuse(good, tmp_path, "unpacks to 130 bytes, over the 100 bytes limit")
    monkeypatch.setattr(sm, "MAX_ZIP_ENTRIES", 1)
    refuse(good, tmp_path, "2 entries, over the 1 limit")


def test_no_corruption_of_a_zip_raises_anything_but_submissions_error(tmp_path):
    good = make_zip(tmp_path / "good.zip", {
        f"a/{MINI}/{MINI}.ipynb": NOTEBOOK * 20, f"b/{MINI}/{MINI}.ipynb": (NOTEBOOK, zipfile.ZIP_STORED),
        f"c/{MINI}/{MINI}.ipynb": (NOTEBOOK * 20, zipfile.ZIP_BZIP2),
        f"d/{MINI}/{MINI}.ipynb": (NOTEBOOK * 20, zipfile.ZIP_LZMA)}).read_bytes()
    rng = random.Random(0)
    for trial in range(300):
        data = bytearray(good)
        for _ in range(rng.randint(1, 4)):
            data[rng.randrange(len(data))] = rng.randrange(256)
        if trial % 10 == 0:
            data = data[:rng.randrange(len(data))]
        archive = tmp_path / "fuzz.zip"
        archive.write_bytes(bytes(data))
        try:
            got = extract(archive, tmp_path / "out")
        except SubmissionsError as exc:
            assert "\n" not in str(exc)
            continue
        subs, unplaced = collect_all(got.root, None, KNOWN, damaged=got.damaged, originals=got.originals)
        for s in subs:
            assert not set(s.notebooks) & set(s.refused)
