"""LMS downloads arranged as ``<student>/<assignment>/<notebook>.ipynb``: Canvas, Moodle, nbgrader, a roster.

Each test builds a download in ``tmp_path`` from small notebooks whose cells carry nbgrader ``grade_id``\\s, runs it
through :func:`submissions.extract`, :func:`lms.arrange` and :func:`submissions.collect_all` as the grader does,
and checks where each file landed, under which student id, and what the notes and rows say.
"""

from __future__ import annotations

import zipfile

import nbformat
import pytest

from autograder import lms
from autograder.lms import RosterError, arrange, collect_arranged, read_roster
from autograder.submissions import SubmissionsError, collect_all, extract, safe_id

SOURCES = {
    "01_secant": {"01_secant": {"secant_update", "test_secant_update", "q_secant"}},
    "02_bfgs": {"02_bfgs": {"bfgs_update", "test_bfgs_update", "wolfe", "test_wolfe"}},
}
KNOWN = set(SOURCES)
SECANT = ("secant_update", "test_secant_update")
BFGS = ("bfgs_update", "wolfe", "test_wolfe")


def notebook(*grade_ids, text=""):
    """A notebook with one answer cell per grade id (and the other cells an nbgrader release has)."""
    nb = nbformat.v4.new_notebook()
    nb.cells.append(nbformat.v4.new_markdown_cell(text or "intro"))
    nb.cells.append(nbformat.v4.new_code_cell("import numpy as np", metadata={"nbgrader": {
        "grade_id": "setup", "solution": False, "grade": False, "locked": True, "schema_version": 3}}))
    for gid in grade_ids:
        nb.cells.append(nbformat.v4.new_code_cell("pass", metadata={"nbgrader": {
            "grade_id": gid, "solution": True, "grade": False, "locked": False, "schema_version": 3}}))
    return nbformat.writes(nb).encode()


def make_zip(path, entries):
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in entries.items():
            zf.writestr(name, data)
    return path


def run(tmp_path, entries, roster=None):
    """The grader's steps on a zip of ``entries``: extract, arrange, collect; and the submissions by place."""
    root, damaged, originals = extract(make_zip(tmp_path / "download.zip", entries), tmp_path / "incoming")
    arranged = arrange(root, tmp_path / "arranged", SOURCES, roster, damaged, originals)
    subs, rows = collect_arranged(arranged, None, KNOWN, SOURCES)
    return arranged, {(s.student, s.assignment): s for s in subs}, rows


def cell_text(path):
    return nbformat.read(path, as_version=4).cells[0].source


# -- Canvas ----------------------------------------------------------------------------------------------------

def test_canvas_zip_with_late_marks_resubmissions_and_a_renamed_notebook(tmp_path):
    arranged, subs, rows = run(tmp_path, {
        "smithjane_101_9001_01_secant.ipynb": notebook(*SECANT, text="first try"),
        "smithjane_101_9001_01_secant-1.ipynb": notebook(*SECANT, text="second try"),
        "smithjane_101_9001_data.csv": b"x,y\n1,2\n",
        "doejohn_LATE_102_9002_homework.ipynb": notebook(*BFGS, text="john"),
        "leeann_late_103_9003_02_bfgs (1).ipynb": notebook(*BFGS, text="ann"),
    })
    assert arranged.layout == "canvas" and rows == []
    assert sorted(subs) == [("doejohn", "02_bfgs"), ("leeann", "02_bfgs"), ("smithjane", "01_secant")]
    jane = subs["smithjane", "01_secant"]
    assert list(jane.notebooks) == ["01_secant"] and cell_text(jane.notebooks["01_secant"]) == "second try"
    assert (arranged.root / "smithjane" / "01_secant" / "data.csv").read_bytes() == b"x,y\n1,2\n"
    [resubmitted] = arranged.notes["smithjane", "01_secant"]
    assert "kept smithjane_101_9001_01_secant-1.ipynb" in resubmitted
    assert "not graded: smithjane_101_9001_01_secant.ipynb" in resubmitted
    john = subs["doejohn", "02_bfgs"]
    assert cell_text(john.notebooks["02_bfgs"]) == "john" and john.original == "doejohn"
    assert arranged.notes["doejohn", "02_bfgs"] == ["Canvas marks this submission late"]
    assert "Canvas marks this submission late" in subs["leeann", "02_bfgs"].problems
    assert not any("marks this submission late" in n for n in jane.problems)


def test_a_student_with_two_assignments_in_one_canvas_zip(tmp_path):
    arranged, subs, rows = run(tmp_path, {
        "doejohn_102_9101_01_secant.ipynb": notebook(*SECANT),
        "doejohn_102_9102_bfgs_final.ipynb": notebook(*BFGS),
        "doejohn_102_9102_plot.png": b"\x89PNG",
    })
    assert rows == [] and sorted(subs) == [("doejohn", "01_secant"), ("doejohn", "02_bfgs")]
    assert list(subs["doejohn", "02_bfgs"].notebooks) == ["02_bfgs"]
    # The picture came with the BFGS submission (same submission id), not with the secant one.
    assert (arranged.root / "doejohn" / "02_bfgs" / "plot.png").exists()
    assert not (arranged.root / "doejohn" / "01_secant" / "plot.png").exists()


def test_what_cannot_be_placed_becomes_a_row_with_its_reason(tmp_path):
    arranged, subs, rows = run(tmp_path, {
        "smithjane_101_9001_notes.ipynb": notebook("something_else"),
        "smithjane_101_9001_scratch.ipynb": b"{not json",
        "smithjane_101_9001_01_secant-2.ipynb": b"{truncated",
        "README.txt": b"exported by Canvas",
    })
    reasons = {r.path: r.reason for r in rows}
    assert sorted(reasons) == ["README.txt", "smithjane_101_9001_notes.ipynb", "smithjane_101_9001_scratch.ipynb"]
    assert "shares no graded cell" in reasons["smithjane_101_9001_notes.ipynb"]
    assert "not a readable notebook" in reasons["smithjane_101_9001_scratch.ipynb"]
    assert "does not follow Canvas's naming" in reasons["README.txt"]
    assert all("\n" not in r for r in reasons.values())
    assert {r.student for r in rows} == {"", "smithjane"}
    # Bad JSON named like an assignment's notebook is placed by its name, for the grader to refuse with its reason.
    assert list(subs) == [("smithjane", "01_secant")]
    assert any("placed by its file name" in n for n in arranged.notes["smithjane", "01_secant"])


def test_damaged_entries_follow_their_student_or_become_rows(tmp_path):
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "doejohn_102_9002_homework.ipynb").write_bytes(notebook(*BFGS))
    damaged = {"doejohn_102_9002_02_bfgs-1.ipynb": "02_bfgs-1.ipynb could not be extracted: bad CRC-32",
               "doejohn_102_9002_mystery.ipynb": "mystery.ipynb could not be extracted: bad CRC-32"}
    arranged = arrange(tmp_path / "in", tmp_path / "out", SOURCES, damaged=damaged)
    # The damaged resubmission is the latest version of 02_bfgs: it is refused with its reason, not swapped for
    # the older copy without a word.
    assert arranged.damaged == {"doejohn/02_bfgs/02_bfgs.ipynb": damaged["doejohn_102_9002_02_bfgs-1.ipynb"]}
    [sub], rows = collect_all(arranged.root, None, KNOWN, damaged=arranged.damaged)
    assert sub.refused == {"02_bfgs": damaged["doejohn_102_9002_02_bfgs-1.ipynb"]} and sub.notebooks == {}
    assert [(r.student, r.path) for r in rows] == []
    assert [r.path for r in arranged.unplaced] == ["doejohn_102_9002_mystery.ipynb"]
    assert arranged.unplaced[0].reason.startswith("mystery.ipynb could not be extracted: bad CRC-32")


# -- Moodle ----------------------------------------------------------------------------------------------------

def test_moodle_folders(tmp_path):
    jane = "Jane Smith_1234567_assignsubmission_file_"
    arranged, subs, rows = run(tmp_path, {
        f"{jane}/02_bfgs.ipynb": notebook(*BFGS, text="jane"),
        f"{jane}/helper.py": b"def f(): pass\n",
        "Jane Smith_1234567_assignsubmission_onlinetext_/onlinetext.html": b"<p>see notebook</p>",
        "Élodie Dupont_1234568_assignsubmission_file_/my work.ipynb": notebook(*SECANT, text="elodie"),
    })
    assert arranged.layout == "moodle" and rows == []
    jane_id, elodie_id = safe_id("Jane Smith"), safe_id("Élodie Dupont")
    assert sorted(subs) == sorted([(jane_id, "02_bfgs"), (elodie_id, "01_secant")])
    assert cell_text(subs[jane_id, "02_bfgs"].notebooks["02_bfgs"]) == "jane"
    assert cell_text(subs[elodie_id, "01_secant"].notebooks["01_secant"]) == "elodie"
    folder = arranged.root / jane_id / "02_bfgs"
    assert sorted(p.name for p in folder.iterdir()) == ["02_bfgs.ipynb", "helper.py", "onlinetext.html"]
    assert arranged.originals[jane_id] == jane and subs[jane_id, "02_bfgs"].original == jane


def test_moodle_flat(tmp_path):
    arranged, subs, rows = run(tmp_path, {
        "John Doe_77_assignsubmission_file_02_bfgs.ipynb": notebook(*BFGS),
        "John Doe_77_assignsubmission_file_helper.py": b"",
        "John Doe_78_assignsubmission_file_01_secant.ipynb": notebook(*SECANT),
    })
    assert arranged.layout == "moodle" and rows == []
    # Two students of one name stay two students.
    john = safe_id("John Doe")
    assert sorted(subs) == [(safe_id(f"{john}_77"), "02_bfgs"), (safe_id(f"{john}_78"), "01_secant")]
    assert (arranged.root / safe_id(f"{john}_77") / "02_bfgs" / "helper.py").exists()
    assert any("would all be" in n for n in arranged.notes[safe_id(f"{john}_77"), "02_bfgs"])


# -- nbgrader's own layout -------------------------------------------------------------------------------------

def nbgrader_course(course):
    for rel, data in {"submitted/alice/01_secant/01_secant.ipynb": notebook(*SECANT),
                      "submitted/alice/01_secant/timestamp.txt": b"2024-01-01 10:00:00.000000 UTC",
                      "submitted/bob/02_bfgs/02_bfgs.ipynb": notebook(*BFGS),
                      "source/01_secant/01_secant.ipynb": notebook(*SECANT),
                      "nbgrader_config.py": b""}.items():
        path = course / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return course


def test_nbgrader_submitted_tree_and_a_course_folder_holding_it(tmp_path):
    course = nbgrader_course(tmp_path / "course")
    for given in (course / "submitted", course):
        arranged = arrange(given, tmp_path / "dest", SOURCES)
        assert arranged.layout == "folders" and arranged.root == course / "submitted"
        subs, rows = collect_arranged(arranged, None, KNOWN)
        assert [(s.student, s.assignment) for s in subs] == [("alice", "01_secant"), ("bob", "02_bfgs")]
        assert rows == [] and (subs[0].notebooks["01_secant"].parent / "timestamp.txt").exists()
    assert not (tmp_path / "dest").exists()


def test_a_zipped_course_folder_keeps_extracts_names_and_damage(tmp_path):
    damaged = {"submitted/bob/02_bfgs/02_bfgs.ipynb": "02_bfgs.ipynb: bad CRC-32", "gradebook.db": "bad CRC-32"}
    arranged = arrange(nbgrader_course(tmp_path / "course"), tmp_path / "dest", SOURCES, damaged=damaged)
    assert arranged.damaged == {"bob/02_bfgs/02_bfgs.ipynb": "02_bfgs.ipynb: bad CRC-32"}
    assert [(u.path, u.reason) for u in arranged.unplaced] == [("gradebook.db", "bad CRC-32")]


# -- the roster ------------------------------------------------------------------------------------------------

def test_roster_maps_lms_ids_and_names_to_student_ids(tmp_path):
    roster_csv = tmp_path / "roster.csv"
    roster_csv.write_bytes("\ufeffStudent ID,Full name,Email address,Canvas ID\n"
                           's001,"Smith, Jane",jane@uni.edu,101\n'
                           "s002,John Doe,john@uni.edu,\n"
                           "s003,Élodie Dupont,elodie@uni.edu,\n".encode())
    roster = read_roster(roster_csv)
    assert roster.entries["s001"] == lms.RosterEntry("s001", "Jane", "Smith", "jane@uni.edu", ("101",))
    assert roster.match("999", "dupont, ELODIE").id == "s003" and roster.match("999", "nobody") is None
    arranged, subs, rows = run(tmp_path, {
        "smithjane_101_9001_01_secant.ipynb": notebook(*SECANT),        # by Canvas id
        "doejohn_102_9002_01_secant.ipynb": notebook(*SECANT),          # by name, last name first
        "leeann_103_9003_01_secant.ipynb": notebook(*SECANT),           # not in the roster
    }, roster)
    assert sorted(subs) == [("leeann", "01_secant"), ("s001", "01_secant"), ("s002", "01_secant")]
    assert subs["s001", "01_secant"].original == "smithjane" and arranged.originals["s002"] == "doejohn"
    assert arranged.notes["leeann", "01_secant"] == [
        "the roster does not list leeann (Canvas id 103); graded as leeann"]
    assert ("s001", "01_secant") not in arranged.notes

    moodle, subs, _ = run(tmp_path, {"Elodie DUPONT_5_assignsubmission_file_/a.ipynb": notebook(*BFGS)}, roster)
    assert list(subs) == [("s003", "02_bfgs")]


@pytest.mark.parametrize("content, message", [
    (b"name,email\nalice,a@x\n", r"roster\.csv, line 1 \(the header\): no id column"),
    (b"id,name\nalice,Alice A\nbob,Bob B\nalice,Alice B\n", r"line 4, column 1 \('id'\): the id 'alice' is already "
                                                          r"on line 2"),
    (b"ID;Name\nalice;Alice\n;Nobody\n", r"line 3, column 1 \('ID'\): empty id"),
    (b"id,name\nalice,\xe9lodie\n", r"line 2, column 2 \('name'\): not UTF-8"),
    (b"id,name,email\nalice,Smith, Alice,a@x\n", r"line 2: 4 fields but the header has 3"),
    (b"id,canvas_id\nalice,7\nbob,7\n", r"line 3: the LMS id '7' is already on line 2"),
    (b"", r"roster\.csv: the roster is empty"),
])
def test_roster_errors_name_the_file_line_and_column(tmp_path, content, message):
    (tmp_path / "roster.csv").write_bytes(content)
    with pytest.raises(RosterError, match=message):
        read_roster(tmp_path / "roster.csv")


def test_an_unreadable_roster_is_named(tmp_path):
    with pytest.raises(RosterError, match=r"missing\.csv: the roster cannot be read"):
        read_roster(tmp_path / "missing.csv")


# -- odd input -------------------------------------------------------------------------------------------------

def test_a_wrapper_folder_is_descended_and_dest_may_not_hold_root(tmp_path):
    inner = tmp_path / "download" / "Assignment 2 submissions"
    inner.mkdir(parents=True)
    (inner / "doejohn_102_9002_02_bfgs.ipynb").write_bytes(notebook(*BFGS))
    arranged = arrange(tmp_path / "download", tmp_path / "out", SOURCES)
    assert arranged.layout == "canvas" and (tmp_path / "out" / "doejohn" / "02_bfgs" / "02_bfgs.ipynb").exists()
    with pytest.raises(SubmissionsError, match="one lies inside the other"):
        arrange(tmp_path / "download", inner / "out", SOURCES)


def test_sources_are_read_from_the_instructors_notebooks(tmp_path):
    (tmp_path / "02_bfgs").mkdir()
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("", metadata={"nbgrader": {
        "grade_id": gid, "solution": sol, "grade": grade}}) for gid, sol, grade in
        [("setup", False, False), ("bfgs_update", True, False), ("test_bfgs", False, True)]])
    nbformat.write(nb, tmp_path / "02_bfgs" / "02_bfgs.ipynb")
    assert lms.read_sources(tmp_path, {"02_bfgs"}) == {"02_bfgs": {"02_bfgs": {"bfgs_update", "test_bfgs"}}}


def test_a_renamed_notebook_in_its_assignment_folder_is_graded_by_its_content(tmp_path):
    """Folders layout: ``alice/02_bfgs/02_bfgs (1).ipynb`` is 02_bfgs; a notebook of nothing known stays as it is."""
    _, subs, rows = run(tmp_path, {"alice/02_bfgs/02_bfgs (1).ipynb": notebook(*BFGS, text="alice"),
                                   "alice/01_secant/scratch.ipynb": notebook("other", text="scratch")})
    bfgs, secant = subs[("alice", "02_bfgs")], subs[("alice", "01_secant")]
    assert set(bfgs.notebooks) == {"02_bfgs"} and cell_text(bfgs.notebooks["02_bfgs"]) == "alice"
    assert any("graded as 02_bfgs.ipynb" in p for p in bfgs.problems)
    assert set(secant.notebooks) == {"scratch"} and not secant.problems and rows == []
