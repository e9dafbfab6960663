"""
Remove the deploy from each host, keeping the data (see docs/backups.md).

    pyinfra inventory.py uninstall.py
    pyinfra inventory.py uninstall.py --data uninstall_purge=True     the data too

Removed: the Jupyter service and its config and password, the vhost and hygiene conf (the
default site back if the deploy disabled it), the Apache modules it enabled that nothing
else needs, the certificate files it made, its firewall rules for 80 and 443, the backup
timer and its settings, the login-ban jails. Kept unless ``uninstall_purge``: notebook_dir,
the Jupyter user and its home, the conda prefix, a local backup repository and certbot's
certificate. Running it again changes nothing.
"""

from pyinfra import host

from operations import settings, uninstall

settings.validate(host, script="uninstall")
uninstall.uninstall()
