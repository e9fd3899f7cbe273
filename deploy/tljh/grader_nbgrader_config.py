# nbgrader configuration of the one grader account (hub user `grader`, unix user `jupyter-grader`).
# Install as ~jupyter-grader/.jupyter/nbgrader_config.py (deploy/tljh/setup.sh does).
#
# Two folders, two roles (see docs/jupyterhub.md):
# - ~/secondorder, the grader's private checkout of the repository. Its own nbgrader_config.py (the
#   repository's, read from the working directory, which takes precedence over this file) makes it the
#   course root there: `course/` the sources, `assignments/` the release. Run `nbgrader
#   release_assignment` and `nbgrader collect` in it; collected work lands in ~/secondorder/submitted.
# - ~/grading, where `python -m autograder grade` keeps the gradebook and the feedback. This file points
#   everything else at it: the Formgrader of the grader's hub server and `nbgrader release_feedback`.
c = get_config()  # noqa: F821

c.CourseDirectory.course_id = "secondorder"
c.CourseDirectory.root = "/home/jupyter-grader/grading"
c.CourseDirectory.source_directory = "source"      # as `python -m autograder grade` lays out ~/grading
c.CourseDirectory.release_directory = "release"
c.Exchange.root = "/srv/nbgrader/exchange"
