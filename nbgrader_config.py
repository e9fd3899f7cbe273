# nbgrader configuration of the course: the repository is the course root, `course/` holds the source
# (instructor notebooks), `assignments/` the student release. The release is made by `make assignments`
# (python -m autograder build), never by the Formgrader's Generate; grading happens in a separate folder
# through `python -m autograder grade`, where `make lab-instructor` opens the Formgrader (see
# autograder/README.md).
import os

ROOT = os.path.dirname(os.path.abspath(__file__))
c = get_config()  # noqa: F821
c.CourseDirectory.root = ROOT
c.CourseDirectory.source_directory = "course"
c.CourseDirectory.release_directory = "assignments"
c.ClearSolutions.code_stub = {"python": "# YOUR CODE HERE\nraise NotImplementedError()"}
c.OverwriteCells.add_missing_cells = True
# A gradebook nbgrader makes here (a Formgrader or `nbgrader` command run in the repository) holds no grades
# anyone needs: it goes to build/ (git-ignored), not beside the sources.
_gradebook = os.path.join(ROOT, "build", "nbgrader", "gradebook.db")
try:
    os.makedirs(os.path.dirname(_gradebook), exist_ok=True)
except OSError:  # a read-only checkout: nbgrader says so when (if ever) it opens the gradebook
    pass
c.CourseDirectory.db_url = "sqlite:///" + _gradebook
