"""
Switch each host back to the distribution it ran before the last upgrade (see docs/restarts-and-upgrades.md).

    pyinfra inventory.py rollback.py

Jupyter (with per_person_servers, each running person's server) restarts from it under
``restart_policy`` (when idle, by default). A host without a
previous distribution (never upgraded, or already rolled back) changes nothing, so running it
again changes nothing. The next deploy.py run upgrades again unless ``conda_installer_url`` and
``conda_installer_sha256`` name the previous installer.
"""

from pyinfra import host

from operations import conda, hub, jupyter, settings

settings.validate(host, script="rollback")
# The restart machinery first: the switch back restarts Jupyter (or people's servers) through it.
jupyter.install_restarts()
hub.install_restarts()
conda.roll_back()
