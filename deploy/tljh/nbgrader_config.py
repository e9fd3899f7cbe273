# nbgrader configuration for everyone on the hub (students and the grader).
# Install as /etc/jupyter/nbgrader_config.py (deploy/tljh/setup.sh does). It names the course and the
# exchange, the shared folder through which `nbgrader release_assignment`, `fetch`, `submit`,
# `collect` and `release_feedback` hand notebooks over. See docs/jupyterhub.md.
c = get_config()  # noqa: F821

c.CourseDirectory.course_id = "secondorder"
c.Exchange.root = "/srv/nbgrader/exchange"
