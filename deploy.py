"""
Jupyter Notebook behind Apache with TLS, on every host of the inventory.

    JUPYTER_PASSWORD=... pyinfra -y inventory.py deploy.py
    JUPYTER_PASSWORD=... pyinfra -y 203.0.113.7 deploy.py

Settings are host data (see group_data/all.py and the README); they are checked for
every host before any operation runs.
"""

from pyinfra import host

from operations import apache, conda, firewall, jupyter, settings, system, tls

settings.validate(host)

system.install_packages(
    conda.PACKAGES + tls.PACKAGES + apache.PACKAGES
    + firewall.packages(host.data.get("firewall", settings.DEFAULTS["firewall"])),
)
conda.install_conda()
jupyter.install_jupyter()
cert, key, certificate = tls.install_certificate()
apache.configure_apache(cert=cert, key=key, reload_after=[certificate])
firewall.configure_firewall()
