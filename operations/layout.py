"""
Where the deploy keeps its own things on a host: the directories every concern's paths are
under. Each concern names its own paths from these (``apache.SWAP_SCRIPT``,
``jupyter.layout.CONFIG_FILE``), once, and others take them from it; the scripts of
``files/`` get them as arguments.
"""

# The deploy's scripts on the host (root-owned, from files/).
LIB = "/usr/local/lib/jupyter-deploy"
# Root's own state: records of what the deploy made, owed restarts, reports of its scripts.
STATE_DIR = "/var/lib/jupyter-apache-deploy"
# Where the deploy's systemd units and their drop-ins go.
SYSTEMD_DIR = "/etc/systemd/system"
# One change of a conda distribution at a time (files/conda-install, files/conda-switch).
INSTALLER_LOCK = "/run/lock/jupyter-deploy-conda-installer.lock"
# Loopback ports of the per-person mode's own services (per_person_servers): the hub's API
# (people's servers and the proxy talk to it) and the proxy's REST API (the hub drives it).
# The proxy's public side is jupyter_port, where Apache sends everything.
HUB_PORT = 8081
PROXY_API_PORT = 8001
# Its sign-in form with per-person passwords (under jupyter_base_url): Apache logs each request
# to it for the login ban, as it logs the single server's.
HUB_LOGIN_PATH = "hub/login"
