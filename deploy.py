"""
Jupyter Notebook behind Apache with TLS, on every host of the inventory.

    JUPYTER_PASSWORD=... pyinfra -y inventory.py deploy.py
    JUPYTER_PASSWORD=... pyinfra -y 203.0.113.7 deploy.py

Settings are host data (see group_data/all.py and the README); they are checked for
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
    jupyter,
    letsencrypt,
    login_ban,
    restarts,
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
        restarts.packages,
        sign_in.packages,
        tls.packages,
        apache.packages,
        firewall.packages,
        login_ban.packages,
        backups.packages,
        letsencrypt.packages,
    ]
)
conda.install_conda()
# Before Jupyter and Apache, which use its secrets (auth 'oidc').
sign_in.configure_sign_in()
jupyter.install_jupyter()
# The self-signed certificate (the fallback in letsencrypt mode): Apache's configtest needs
# the files it names, and on a fresh host it serves :80 for the ACME challenge on it.
tls.install_certificate()
apache.configure_apache()
firewall.configure_firewall()
login_ban.configure_login_ban()
backups.configure_backups()
# After the site is up: a package that does not exist fails the host here, with pip's or
# conda's reason, and leaves a working server behind.
environment.install_packages()
# After every package is in: a change to the server's own packages restarts it (when idle).
restarts.restart_for_server_updates()
# Last: when issuance fails (DNS not pointing here yet) the host is reported as failed
# with the ACME server's reason, everything above is done, the site is up on the
# fallback certificate, and the next run tries again.
letsencrypt.configure_letsencrypt()
