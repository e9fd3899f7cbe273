"""Command line: ``python -m autograder grade SUBMISSIONS [--assignment ID] [--out DIR] [--roster CSV] [--course DIR]
[--force] [--dask ADDRESS]``."""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from pathlib import Path


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m autograder", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    g = sub.add_parser("grade", help="grade submissions laid out <student_id>/<assignment_id>/<notebook>.ipynb")
    g.add_argument("submissions", type=Path, help="a folder, or a .zip of one as an LMS exports")
    g.add_argument("--assignment", help="grade only this assignment (default: every one found)")
    g.add_argument("--out", type=Path, default=Path("grading"), help="grading folder (default: ./grading)")
    g.add_argument("--roster", type=Path, default=None,
                   help="class list, a CSV with the columns id, name (or first_name, last_name), email and the LMS "
                        "id (canvas_id, moodle_id): maps an LMS download's students to ids, names in the gradebook")
    g.add_argument("--course", type=Path, default=None,
                   help="the folder of assignment sources, <assignment>/<notebook>.ipynb (default: course/)")
    g.add_argument("--force", action="store_true", help="regrade students that were already graded")
    g.add_argument("--jobs", type=int, default=None, help="parallel submissions (default: one per core)")
    g.add_argument("--dask", "--scheduler", dest="dask", metavar="ADDRESS", default=None,
                   help="run the sandboxed work on a Dask cluster: a scheduler address (tcp://host:8786, "
                        "dask://host:8786), a scheduler file (.json), or 'local' for a LocalCluster of --jobs "
                        "workers here (needs the 'cluster' extra; see autograder/README.md)")
    b = sub.add_parser("build", help="regenerate assignments/ and solutions/ from course/")
    b.add_argument("assignments", nargs="*", help="section folders (default: all)")
    b.add_argument("--check", action="store_true", help="only report what is out of date")
    s = sub.add_parser("selftest", help="grade each section's solution, blank release and mutants")
    s.add_argument("sections", nargs="*", help="section folders (default: all)")
    args = parser.parse_args(argv)

    if args.command == "selftest":
        from .selftest import main as selftest
        return selftest(args.sections or None)

    if args.command == "build":
        from .build import build
        return build(args.assignments or None, check=args.check)

    from .executors import ClusterError
    from .grade import Grader
    from .submissions import SubmissionsError
    try:
        grader = Grader(args.out, jobs=args.jobs, force=args.force, scheduler=args.dask,
                        **({"course": args.course} if args.course else {}))
        rows = grader.grade(args.submissions, args.assignment, roster=args.roster)
    except (SubmissionsError, ClusterError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    counts = Counter(r["status"] for r in rows)
    absent = [r for r in rows if r["status"] == "missing" and not r["grade_id"] and r["grading_id"]]
    students = len({r["student_id"] for r in rows} - {r["student_id"] for r in absent})
    print(f"graded {students} students, {len(rows) - len(absent)} graded cells: "
          + ", ".join(f"{k} {v}" for k, v in sorted((counts - Counter(r["status"] for r in absent)).items())))
    if absent:
        print(f"{len(absent)} students on the roster handed nothing in for an assignment graded here "
              "(rows with status missing)")
    st = getattr(grader, "stats", {})
    if st.get("reused"):
        print(f"this run graded {st['graded']} submissions and reused {st['reused']} results of an earlier run "
              f"(same files, same key); {st['rerecorded']} of those were missing from the gradebook or their "
              "feedback and were recorded again")
    if st.get("refreshed"):
        print(f"rewrote the feedback of {st['refreshed']} submissions whose scores or comments changed in the "
              "gradebook since their feedback was written (hand grades)")
    print(f"grades: {args.out / 'grades.csv'}; feedback: {args.out / 'feedback'}; gradebook: "
          f"{args.out / 'gradebook.db'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
