"""
Jupyter Notebook behind Apache with TLS, on every host of the inventory.

    JUPYTER_PASSWORD=... pyinfra -y inventory.py deploy.py
    JUPYTER_PASSWORD=... pyinfra -y 203.0.113.7 deploy.py

Settings are host data (see group_data/all.py and the README); they are checked for
every host before any operation runs.
"""

from pyinfra import host

from operations import (
    apache,
    backups,
    conda,
    environment,
    firewall,
    jupyter,
    letsencrypt,
    login_ban,
    settings,
    system,
    tls,
)

settings.validate(host)
tls_mode = host.data.get("tls_mode", settings.DEFAULTS["tls_mode"])

system.install_packages(
    conda.PACKAGES
    + tls.PACKAGES
    + (letsencrypt.PACKAGES if tls_mode == "letsencrypt" else [])
    + apache.PACKAGES
    + firewall.packages(host.data.get("firewall", settings.DEFAULTS["firewall"]))
    + login_ban.packages(host.data.get("login_ban", settings.DEFAULTS["login_ban"]))
    + backups.packages(host.data.get("backup_repository", settings.DEFAULTS["backup_repository"])),
)
conda.install_conda()
jupyter.install_jupyter()
if tls_mode == "letsencrypt":
    # On a fresh host this is the self-signed fallback: Apache must serve :80 (the ACME
    # challenge) before certbot can get the real certificate.
    cert, key, certificate = letsencrypt.certificate_to_serve()
else:
    cert, key, certificate = tls.install_certificate()
    letsencrypt.forget_private_ca()
apache.configure_apache(cert=cert, key=key, reload_after=[certificate])
firewall.configure_firewall()
login_ban.configure_login_ban()
backups.configure_backups()
# After the site is up: a package that does not exist fails the host here, with pip's or
# conda's reason, and leaves a working server behind.
environment.install_packages()
if tls_mode == "letsencrypt":
    # Last: when issuance fails (DNS not pointing here yet) the host is reported as
    # failed with the ACME server's reason, everything above is done, the site is up
    # on the fallback certificate, and the next run tries again.
    cert, key, issued = letsencrypt.obtain_certificate(reload_stamp=apache.RELOAD_STAMP)
    apache.use_certificate(cert=cert, key=key, issued=issued)
