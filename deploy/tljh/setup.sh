#!/usr/bin/env bash
# One-server course on The Littlest JupyterHub (TLJH). Run as root on a fresh Ubuntu 22.04/24.04
# server after installing TLJH with the grader as admin:
#
#   curl -L https://tljh.jupyter.org/bootstrap.py | sudo -E python3 - --admin grader
#   sudo bash deploy/tljh/setup.sh https://github.com/OWNER/secondorder.git   # or a local path
#
# It (1) checks out the repository privately for the grader, (2) installs the course library and
# Jupyter/nbgrader into the hub's user environment (students get the library, never course/),
# (3) creates the nbgrader exchange, (4) installs the nbgrader configurations, (5) installs
# bubblewrap for the grading sandbox. Safe to rerun (it updates). See docs/jupyterhub.md.
set -euo pipefail

REPO_URL=${1:?usage: setup.sh REPO_URL_OR_PATH}
GRADER=${GRADER:-jupyter-grader}                # TLJH makes hub user "grader" the unix user jupyter-grader
COURSE_DIR=/home/$GRADER/secondorder
EXCHANGE=/srv/nbgrader/exchange
USER_ENV=/opt/tljh/user                        # the conda environment every TLJH user runs in
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

id "$GRADER" >/dev/null 2>&1 || { echo "no unix user $GRADER: log in once as 'grader' on the hub first"; exit 1; }

# 1. The grader's checkout: the course sources with solutions and hidden tests, readable by the grader only.
if [ -d "$COURSE_DIR/.git" ]; then
    sudo -u "$GRADER" git -C "$COURSE_DIR" pull --ff-only
else
    sudo -u "$GRADER" git clone "$REPO_URL" "$COURSE_DIR"
fi
chmod 700 "/home/$GRADER" "$COURSE_DIR"
# `nbgrader collect` writes student work to $COURSE_DIR/submitted: keep it out of git's view.
grep -qx 'submitted/' "$COURSE_DIR/.git/info/exclude" 2>/dev/null \
    || echo 'submitted/' | sudo -u "$GRADER" tee -a "$COURSE_DIR/.git/info/exclude" >/dev/null

# 2. The library (a copy, not an editable install: students must not reach course/) and the course tools.
"$USER_ENV/bin/pip" install --quiet -c "$COURSE_DIR/requirements/constraints.txt" "$COURSE_DIR[course]"
"$USER_ENV/bin/jupyter" server extension enable --sys-prefix nbgrader.server_extensions.assignment_list
"$USER_ENV/bin/jupyter" server extension enable --sys-prefix nbgrader.server_extensions.course_list
# Students need no Formgrader; the grader enables it for themself in step 4.
"$USER_ENV/bin/jupyter" server extension disable --sys-prefix nbgrader.server_extensions.formgrader || true
"$USER_ENV/bin/jupyter" labextension disable --level=sys_prefix @jupyter/nbgrader:formgrader || true
"$USER_ENV/bin/jupyter" labextension disable --level=sys_prefix @jupyter/nbgrader:create-assignment || true

# 3. The exchange: everyone may write (nbgrader then makes inbound/ write-only for students).
mkdir -p "$EXCHANGE"
chmod 1777 "$EXCHANGE"

# 4. nbgrader configuration: the course and exchange for everyone; the grading folder for the grader.
mkdir -p /etc/jupyter
install -m 644 "$HERE/nbgrader_config.py" /etc/jupyter/nbgrader_config.py
sudo -u "$GRADER" mkdir -p "/home/$GRADER/.jupyter" "/home/$GRADER/grading"
install -m 644 -o "$GRADER" "$HERE/grader_nbgrader_config.py" "/home/$GRADER/.jupyter/nbgrader_config.py"
sudo -u "$GRADER" "$USER_ENV/bin/jupyter" server extension enable --user nbgrader.server_extensions.formgrader
sudo -u "$GRADER" "$USER_ENV/bin/jupyter" labextension enable --level=user @jupyter/nbgrader:formgrader \
    @jupyter/nbgrader:create-assignment

# 5. The grading sandbox (python -m autograder grade): bubblewrap, and the grader's own tools.
apt-get install -y bubblewrap
sudo -u "$GRADER" bwrap --ro-bind / / --unshare-net --unshare-user true \
    || echo "warning: bubblewrap cannot create a user namespace for $GRADER (Ubuntu 24.04 restricts them:" \
            "see docs/jupyterhub.md); grading will run with resource limits only"
"$USER_ENV/bin/pip" install --quiet -c "$COURSE_DIR/requirements/constraints.txt" nbclient nbformat

# JupyterLab as every user's interface.
tljh-config set user_environment.default_app jupyterlab
tljh-config reload
echo "done: course checkout $COURSE_DIR, exchange $EXCHANGE, grading folder /home/$GRADER/grading"
