"""
Uninstall: remove what the deploy installed and configured, keeping the data.

Everything is done by ``files/jupyter-uninstall`` on the host, in one go; this module
decides whether there is anything left to remove (one command) and runs it only then, so
a second uninstall changes nothing. The script undoes only what the deploy itself made
(``records.RECORD``) and, when purging, deletes only data the deploy made.
"""

from __future__ import annotations

import shlex

from pyinfra import host
from pyinfra.api import FileUploadCommand, QuoteString, StringCommand, deploy, operation

from . import (
    apache,
    backups,
    conda,
    hub,
    jupyter,
    layout,
    letsencrypt,
    login_ban,
    os_updates,
    people,
    records,
    settings,
    sign_in,
    snapshot,
    system,
    tls,
)
from .render import FILES

SCRIPT = "/root/.jupyter-uninstall"
# What the script removed and kept, and why: shown in the run's output, then deleted.
REPORT = "/root/.jupyter-uninstall-report"

# What the deploy leaves on a host (files/jupyter-uninstall removes each of them).
INSTALLED = [
    jupyter.UNIT_FILE,
    jupyter.CONFIG_DIR,
    jupyter.layout.RESTART_SCRIPT,
    jupyter.layout.RESTART_SERVICE_FILE,
    jupyter.layout.RESTART_TIMER_FILE,
    jupyter.GUARD_DIR.rsplit("/", 1)[0],
    hub.layout.HUB_UNIT_FILE,
    hub.layout.PROXY_UNIT_FILE,
    hub.layout.SLICE_FILE,
    hub.layout.RESTART_TIMER_FILE,
    hub.layout.RESTART_SERVICE_FILE,
    hub.layout.CONFIG_DIR,
    hub.layout.PREFIX,
    apache.SITE_PATH,
    apache.HARDENING_PATH,
    apache.WORKERS_PATH,
    sign_in.DIR,
    sign_in.CACHE_DIR,
    tls.CERT,
    tls.KEY,
    tls.SERVED_CERT,
    tls.SERVED_KEY,
    letsencrypt.DEPLOY_HOOK,
    letsencrypt.TRUSTED_CA,
    login_ban.FILTER_FILE,
    login_ban.ACTION_FILE,
    login_ban.JAIL_FILE,
    *backups.INSTALLED,
    apache.RELOAD_STAMP,
    apache.DEFAULT_SITE_MARKER,
    *os_updates.INSTALLED,
]


# What files/jupyter-uninstall stops, disables and removes, each option given once per value;
# the units stop in this order (backups, a deferred restart, then Jupyter, whose kernels go
# with it; people's deferred restarts, the hub, every person's server (the slice), the hub's
# proxy).
SCRIPT_PATHS = {
    "--unit-file": [
        backups.TIMER_FILE,
        backups.SERVICE_FILE,
        jupyter.layout.RESTART_TIMER_FILE,
        jupyter.layout.RESTART_SERVICE_FILE,
        jupyter.UNIT_FILE,
        hub.layout.RESTART_TIMER_FILE,
        hub.layout.RESTART_SERVICE_FILE,
        hub.layout.HUB_UNIT_FILE,
        hub.layout.SLICE_FILE,
        hub.layout.PROXY_UNIT_FILE,
        os_updates.REBOOT_TIMER_FILE,
        os_updates.REBOOT_SERVICE_FILE,
    ],
    "--site": [apache.SITE],
    "--conf": [apache.HARDENING_CONF, apache.WORKERS_CONF],
    "--apache-file": [
        apache.SITE_PATH,
        apache.HARDENING_PATH,
        apache.WORKERS_PATH,
        apache.HTPASSWD,
        sign_in.DIR,
        sign_in.CACHE_DIR,
    ],
    "--certificate-file": [
        tls.CERT,
        tls.KEY,
        tls.SERVED_CERT,
        tls.SERVED_KEY,
        letsencrypt.DEPLOY_HOOK,
        tls.ACME_WEBROOT,
    ],
    "--ban-file": [login_ban.JAIL_FILE, login_ban.FILTER_FILE, login_ban.ACTION_FILE],
    "--jail": list(login_ban.JAILS),
    "--deploy-file": [
        jupyter.CONFIG_DIR,
        backups.CONFIG_DIR,
        layout.LIB,
        backups.CACHE_DIR,
        hub.layout.CONFIG_DIR,
        hub.layout.PREFIX,
        os_updates.APT_CONF,
        os_updates.NEEDRESTART_CONF,
        os_updates.UPGRADE_DROPIN,
        os_updates.STATUS_DIR,
    ],
}
# The deploy's paths the script reads or removes, one each.
SCRIPT_OPTIONS = {
    "--config-dir": jupyter.CONFIG_DIR,
    "--default-site-marker": apache.DEFAULT_SITE_MARKER,
    "--trusted-ca": letsencrypt.TRUSTED_CA,
    "--renewal-dir": letsencrypt.RENEWAL,
    "--backup-state": backups.STATE_DIR,
    "--moved-aside": backups.MOVED_ASIDE,
    "--person-comment": people.COMMENT_PREFIX,
    "--hub-state": hub.layout.STATE_DIR,
    "--admins-group": hub.layout.ADMINS_GROUP,
    "--check-account": hub.layout.CHECK_ACCOUNT,
}


class UninstallState(snapshot.Probe):
    """
    ``{"paths": [...], "undo": bool, "data": [...], "foreign_account": bool, "moved_aside_kib": int|None}``:
    which of ``paths`` exist; whether ``records.RECORD`` names a module or rule to undo;
    with ``purge``, which data the deploy made are still there (``account``, ``notebook_dir``,
    ``prefix``, ``repository``, ``certificate``) and whether ``user`` exists without being the
    deploy's; the size of the files restores moved aside.
    """

    def __init__(self, paths, user, notebook_dir, prefix, repository, server_name, purge):
        self.paths, self.user, self.notebook_dir, self.prefix = paths, user, notebook_dir, prefix
        self.repository, self.server_name, self.purge = repository, server_name, purge

    def command(self):
        q = shlex.quote
        record = q(records.RECORD)
        lines = [
            f"for p in {' '.join(q(p) for p in self.paths)}; do "
            '{ [ -e "$p" ] || [ -L "$p" ]; } && printf \'path %s\\n\' "$p"; done',
            f"grep -q -e '^module ' -e '^ufw ' {record} 2>/dev/null && echo undo",
            f"du -sk {q(backups.MOVED_ASIDE)} 2>/dev/null | sed 's/^/moved-aside /'",
        ]
        if self.purge:
            lines += [
                f"printf 'for-user %s\\n' {q(self.user)}",
                jupyter.AccountOrigin(self.user).command(),
                f"[ -e {q(self.notebook_dir)} ] && grep -qxF {q(f'notebook_dir {self.notebook_dir}')} {record} "
                "2>/dev/null && echo notebook_dir",
                f"[ -f {q(f'{self.prefix}/{conda.MARKER}')} ] && echo prefix",
                f"[ -e /etc/letsencrypt/renewal/{q(f'{self.server_name}.conf')} ] && echo certificate",
                f"getent passwd | grep -qF {q(':' + people.COMMENT_PREFIX)} && echo people",
            ]
            if self.repository:
                lines.append(
                    f"[ -e {q(self.repository)} ] && grep -qxF {q(f'repository {self.repository}')} {record} "
                    "2>/dev/null && echo repository"
                )
        return "; ".join([*lines, "true"])

    def parse(self, output):
        state = {"paths": [], "undo": False, "data": [], "foreign_account": False, "moved_aside_kib": None}
        account, user = [], None
        for line in output:
            kind, _, rest = line.partition(" ")
            if kind == "for-user":
                user = rest
            elif kind == "path":
                state["paths"].append(rest)
            elif line == "undo":
                state["undo"] = True
            elif kind == "moved-aside":
                state["moved_aside_kib"] = int(rest.split()[0])
            elif line in ("notebook_dir", "prefix", "certificate", "repository", "people"):
                state["data"].append(line)
            else:
                account.append(line)
        origin = jupyter.AccountOrigin(user or "").parse(account)
        if origin is not None:
            ours = jupyter.made_by_deploy(user, origin)
            state["data"] += ["account"] if ours else []
            state["foreign_account"] = not ours
        return state


def local_repository(repository: str | None) -> str:
    """What the script needs of the repository: a local path, or ``''`` (never a URL, which
    may carry credentials, on a command line)."""
    return repository if repository and repository.startswith("/") else ""


def uninstall_snapshot(user, notebook_dir, prefix, server_name, repository, purge) -> snapshot.Snapshot:
    """What is left of the deploy on the host (``UninstallState``)."""
    paths = INSTALLED + ([backups.MOVED_ASIDE, layout.STATE_DIR, hub.layout.STATE_DIR] if purge else [])
    probe = UninstallState(paths, user, notebook_dir, prefix, local_repository(repository), server_name, purge)
    return snapshot.Snapshot(probes={"left": probe})


@operation()
def uninstalled(
    user: str,
    notebook_dir: str,
    prefix: str,
    server_name: str,
    repository: str | None,
    purge: bool,
    state: snapshot.Snapshot,
):
    """
    Nothing of the deploy left on the host; with ``purge``, none of the data it made either.

    + user, notebook_dir, prefix, server_name: as the deploy had them
    + repository: the backup repository (a local one the deploy created is deleted when purging)
    + purge: also delete the notebooks, the user and its home, the conda prefix, a local
      backup repository, the files restores moved aside and certbot's certificate, each
      only when the deploy made it
    + state: ``uninstall_snapshot`` of the same arguments
    """
    local = local_repository(repository)
    state = state.probe("left")
    if not (state["paths"] or state["undo"] or state["data"]):
        kept = []
        if purge and state["foreign_account"]:
            kept.append(f"user {user} (not created by this deploy)")
        if not purge and state["moved_aside_kib"] is not None:
            kept.append(f"{backups.MOVED_ASIDE} ({state['moved_aside_kib']} KiB)")
        host.noop(
            "nothing of the deploy is left"
            + (", and none of the data it made" if purge else "")
            + (f"; kept: {', '.join(kept)}" if kept else "")
        )
        return
    yield FileUploadCommand(str(FILES / "jupyter-uninstall"), SCRIPT)
    arguments = {
        "--user": user,
        "--home-dir": settings.home_of(user or ""),
        "--notebook-dir": notebook_dir,
        "--prefix": prefix,
        "--server-name": server_name,
        "--local-repository": local,
        "--account-comment": jupyter.ACCOUNT_COMMENT,
        "--installer-marker": conda.MARKER,
        "--record": records.RECORD,
        "--modules": " ".join(apache.needed_modules(basic_auth=False)),
        "--report": REPORT,
        **SCRIPT_OPTIONS,
    }
    yield StringCommand(
        "bash",
        QuoteString(SCRIPT),
        *(["--purge"] if purge else []),
        *(part for option, value in arguments.items() for part in (option, QuoteString(value))),
        *(part for option, values in SCRIPT_PATHS.items() for value in values for part in (option, QuoteString(value))),
        "; status=$?;",
        "rm",
        "-f",
        QuoteString(SCRIPT),
        "; exit $status",
    )
    yield system.shown_report(REPORT)
    yield StringCommand("rm", "-f", QuoteString(REPORT))


@deploy(
    "Uninstall",
    data_defaults=settings.defaults(
        "jupyter_user", "notebook_dir", "conda_prefix", "backup_repository", "uninstall_purge"
    ),
)
def uninstall():
    """Remove the deploy from the host (``uninstall_purge``: the data it made too)."""
    arguments = dict(
        user=host.data.jupyter_user,
        notebook_dir=host.data.notebook_dir,
        prefix=host.data.conda_prefix,
        server_name=settings.server_name(host),
        repository=host.data.backup_repository,
        purge=host.data.uninstall_purge,
    )
    uninstalled(
        name="Remove the deploy"
        + (
            " and the data it made (uninstall_purge)"
            if host.data.uninstall_purge
            else " (notebooks, user, conda and backups kept)"
        ),
        state=uninstall_snapshot(**arguments),
        **arguments,
    )
