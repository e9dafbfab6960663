"""
Jupyter Notebook behind Apache with TLS, on every host of the inventory.

    JUPYTER_PASSWORD=... pyinfra -y inventory.py deploy.py
    JUPYTER_PASSWORD=... pyinfra -y 203.0.113.7 deploy.py

Settings are host data (see group_data/all.py and docs/settings.md); they are checked for
every host before any operation runs. Each concern below is one module of operations/:
it reads its own settings and host state, and the order is the only thing they share.
"""

from pyinfra import host

from operations import (
    apache,
    backups,
    conda,
    environment,
    firewall,
    host_checks,
    hub,
    jupyter,
    letsencrypt,
    login_ban,
    os_updates,
    settings,
    sign_in,
    system,
    tls,
)

settings.validate(host)
host_checks.check_host()
# Every concern's distribution packages, in one apt transaction.
system.install_packages(
    needs=[
        conda.packages,
        jupyter.restarts.packages,
        sign_in.packages,
        hub.packages,
        tls.packages,
        apache.packages,
        firewall.packages,
        login_ban.packages,
        backups.packages,
        letsencrypt.packages,
        os_updates.packages,
    ],
    answers=[os_updates.debconf],
)
# Before anything restarts Jupyter or people's servers (the conda switch does, through them).
jupyter.install_restarts()
hub.install_restarts()
conda.install_conda()
# The fleet's packages, before Jupyter's service decides its restart: a package the server
# imports that changed owes one (when idle). A package that does not exist fails the host
# here, with pip's or conda's reason; the running server and the environment are as before.
environment.install_packages()
# Before Jupyter and Apache, which use its secrets (auth 'oidc').
sign_in.configure_sign_in()
# The single server and the per-person hub share jupyter_port (Apache proxies to it): the one
# not wanted stops before the other starts.
hub.stop_unless_wanted()
jupyter.install_jupyter()
# Each person their own server (per_person_servers): after the single server stopped.
hub.install_hub()
# The self-signed certificate (the fallback in letsencrypt mode): Apache's configtest needs
# the files it names, and on a fresh host it serves :80 for the ACME challenge on it.
tls.install_certificate()
apache.configure_apache()
firewall.configure_firewall()
login_ban.configure_login_ban()
backups.configure_backups()
# After Apache and Jupyter: its after-upgrade step reloads the one and owes the other a restart.
os_updates.configure_os_updates()
# Last: when issuance fails (DNS not pointing here yet) the host is reported as failed
# with the ACME server's reason, everything above is done, the site is up on the
# fallback certificate, and the next run tries again.
letsencrypt.configure_letsencrypt()
