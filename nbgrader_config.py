# nbgrader configuration of the course: the repository is the course root, `course/` holds the source
# (instructor notebooks), `assignments/` the student release. Grading happens in a separate folder
# through `python -m autograder grade` (see autograder/README.md).
import os

c = get_config()  # noqa: F821
c.CourseDirectory.root = os.path.dirname(os.path.abspath(__file__))
c.CourseDirectory.source_directory = "course"
c.CourseDirectory.release_directory = "assignments"
c.ClearSolutions.code_stub = {"python": "# YOUR CODE HERE\nraise NotImplementedError()"}
c.OverwriteCells.add_missing_cells = True
