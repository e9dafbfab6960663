"""
Uninstall: remove what the deploy installed and configured, keeping the data.

Everything is done by ``files/jupyter-uninstall`` on the host, in one go; this module
decides whether there is anything left to remove (one command) and runs it only then, so
a second uninstall changes nothing.
"""

from __future__ import annotations

from pyinfra import host
from pyinfra.api import FileUploadCommand, QuoteString, StringCommand, deploy, operation

from . import apache, backups, jupyter, letsencrypt, login_ban, settings, system, tls
from .render import FILES

SCRIPT = "/root/.jupyter-uninstall"

# What the deploy leaves on a host (files/jupyter-uninstall removes each of them).
INSTALLED = [
    jupyter.UNIT_FILE,
    jupyter.CONFIG_DIR,
    jupyter.GUARD_DIR.rsplit("/", 1)[0],
    f"/etc/apache2/sites-available/{apache.SITE}.conf",
    f"/etc/apache2/conf-available/{apache.HARDENING_CONF}.conf",
    apache.RELOAD_STAMP.rsplit("/", 1)[0],
    tls.CERT,
    tls.KEY,
    tls.SERVED_CERT,
    tls.SERVED_KEY,
    letsencrypt.DEPLOY_HOOK,
    letsencrypt.TRUSTED_CA,
    login_ban.JAIL_FILE,
    login_ban.FILTER_FILE,
    *backups.INSTALLED,
]


@operation()
def uninstalled(user: str, notebook_dir: str, prefix: str, server_name: str, repository: str | None, purge: bool):
    """
    Nothing of the deploy left on the host; with ``purge``, none of its data either.

    + user, notebook_dir, prefix, server_name: as the deploy had them
    + repository: the backup repository (a local one is deleted when purging)
    + purge: also delete the notebooks, the user and its home, the conda prefix, a local
      backup repository and certbot's certificate
    """
    paths = list(INSTALLED)
    if purge:
        paths += [notebook_dir, prefix, f"/etc/letsencrypt/renewal/{server_name}.conf"]
        if repository and repository.startswith("/"):
            paths.append(repository)
    remains = host.get_fact(system.ExistingPaths, paths=paths, user=user if purge else None)
    if not remains:
        host.noop("nothing of the deploy is left" + (", and none of its data" if purge else ""))
        return
    yield FileUploadCommand(str(FILES / "jupyter-uninstall"), SCRIPT)
    arguments = [user, notebook_dir, prefix, server_name, repository or "", "purge" if purge else "keep"]
    yield StringCommand(
        "bash",
        QuoteString(SCRIPT),
        *(QuoteString(a) for a in arguments),
        "; status=$?;",
        "rm",
        "-f",
        QuoteString(SCRIPT),
        "; exit $status",
    )


@deploy(
    "Uninstall",
    data_defaults=settings.defaults(
        "jupyter_user", "notebook_dir", "conda_prefix", "backup_repository", "uninstall_purge"
    ),
)
def uninstall():
    """Remove the deploy from the host (``uninstall_purge``: its data too)."""
    uninstalled(
        name="Remove the deploy"
        + (
            " and its data (uninstall_purge)"
            if host.data.uninstall_purge
            else " (notebooks, user, conda and backups kept)"
        ),
        user=host.data.jupyter_user,
        notebook_dir=host.data.notebook_dir,
        prefix=host.data.conda_prefix,
        server_name=settings.server_name(host),
        repository=host.data.backup_repository,
        purge=host.data.uninstall_purge,
    )
