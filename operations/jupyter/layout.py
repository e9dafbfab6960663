"""
Where the Jupyter server's files and units are on a host: every path and unit name of the
server, its restarts and its memory display, defined once. The other modules of the package
and the other concerns (uninstall, backups, conda) take them from here.
"""

from __future__ import annotations

from .. import layout

# The server's configuration (root-owned; the notebook user reads it): its config file,
# password, and the modules it imports from here.
CONFIG_DIR = "/etc/jupyter"
CONFIG_FILE = f"{CONFIG_DIR}/jupyter_server_config.py"
PASSWORD_FILE = f"{CONFIG_DIR}/password_hash"
# files/jupyter_login_handler.py: password checks off the event loop, in each client's turn.
LOGIN_HANDLER_MODULE = "jupyter_login_handler"
LOGIN_HANDLER_FILE = f"{CONFIG_DIR}/{LOGIN_HANDLER_MODULE}.py"
# files/jupyter_sign_in.py: who is signed in, as Apache says (auth 'oidc').
SIGN_IN_MODULE = "jupyter_sign_in"
SIGN_IN_FILE = f"{CONFIG_DIR}/{SIGN_IN_MODULE}.py"
# files/jupyter_activity.py: tells the deploy whether anything is busy and what the server
# runs; loaded as a server extension, and run as a script for the installed versions.
ACTIVITY_MODULE = "jupyter_activity"
ACTIVITY_FILE = f"{CONFIG_DIR}/{ACTIVITY_MODULE}.py"
# Its answer on loopback, whatever the base URL.
ACTIVITY_PATH = "/jupyter-deploy/activity"
MIGRATED_MARKER = f"{CONFIG_DIR}/migrated"
# The server's data dir (JUPYTER_DATA_DIR): root-owned, holds the deploy's python3 kernel spec.
DATA_DIR = f"{CONFIG_DIR}/data"
KERNEL_DIR = f"{DATA_DIR}/kernels/python3"
KERNEL_SPEC = f"{KERNEL_DIR}/kernel.json"
# On JUPYTER_PATH after DATA_DIR: holds only `kernels`, a link to the user's kernel specs.
USER_KERNELS = f"{CONFIG_DIR}/user"
# The memory limit the notebook UI shows (root-written, read at each request of the display).
MEMORY_MAX_FILE = f"{CONFIG_DIR}/memory_max"

# The `conda` first on the notebook user's PATH (files/conda-shared-prefix-guard).
GUARD_DIR = f"{layout.LIB}/bin"
GUARD_FILE = f"{GUARD_DIR}/conda"
# The smoke check's cell on the host itself (files/jupyter-cell-check and the client it runs),
# for a single sign-on host nobody can log in to with a password: run as root over SSH.
CELL_CHECK = f"{layout.LIB}/jupyter-cell-check"
CELL_CHECK_CLIENT = f"{layout.LIB}/jupyter_cell_check.py"

# The server's unit, its sandbox and its limits (drop-ins).
UNIT = "jupyter.service"
UNIT_FILE = f"{layout.SYSTEMD_DIR}/{UNIT}"
LIMITS_DROPIN = f"{UNIT_FILE}.d/limits.conf"
# What confines the server, its kernels and terminals; files/conda-switch runs the check of a
# new distribution with the same properties (it reads this file).
SANDBOX_DROPIN = f"{UNIT_FILE}.d/sandbox.conf"

# Restarts that wait until nothing is busy (files/jupyter-restart-when-idle and its timer).
RESTART_NAME = "jupyter-restart-when-idle"
RESTART_SCRIPT = f"{layout.LIB}/{RESTART_NAME}"
RESTART_SERVICE = f"{RESTART_NAME}.service"
RESTART_TIMER = f"{RESTART_NAME}.timer"
RESTART_SERVICE_FILE = f"{layout.SYSTEMD_DIR}/{RESTART_SERVICE}"
RESTART_TIMER_FILE = f"{layout.SYSTEMD_DIR}/{RESTART_TIMER}"
# Root's (written 0600): the owed restart (and OWED.lock beside it, one run of the script at
# a time), and the line a restart request writes for the run.
OWED = f"{layout.STATE_DIR}/restart-owed"
REPORT = f"{layout.STATE_DIR}/restart-report"
