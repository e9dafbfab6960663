"""
Jupyter Notebook as a systemd service, listening on loopback for Apache.

The server runs as an unprivileged system user with no login shell, reads its
configuration from ``/etc/jupyter`` (root-owned: the notebook user can read but not
change it) and is restarted only when its configuration, password or unit changed.
"""

from __future__ import annotations

from io import StringIO

from pyinfra import host
from pyinfra.operations import files, server, systemd
from pyinfra.operations.util import any_changed

from pyinfra.api import FactBase, deploy

from . import passwords, settings
from .render import render

CONFIG_DIR = "/etc/jupyter"
CONFIG_FILE = f"{CONFIG_DIR}/jupyter_server_config.py"
PASSWORD_FILE = f"{CONFIG_DIR}/password_hash"
MIGRATED_MARKER = f"{CONFIG_DIR}/migrated"
UNIT = "jupyter"
UNIT_FILE = f"/etc/systemd/system/{UNIT}.service"


class RestartPending(FactBase):
    """
    Returns what a running ``unit`` has not picked up yet: each of ``paths`` changed
    after its main process started, and ``daemon-reload`` when systemd still has an old
    copy of the unit. Empty when the unit is not running. (A run interrupted between
    writing a file and restarting leaves exactly this behind.)
    """

    @staticmethod
    def default():
        return []

    def command(self, unit, paths):
        checks = " ".join(paths)
        return (
            f"pid=$(systemctl show -p MainPID --value {unit} 2>/dev/null); "
            'if [ -n "$pid" ] && [ "$pid" -gt 0 ]; then '
            'start=$(date -d "$(ps -o lstart= -p "$pid")" +%s); '
            f'for f in {checks}; do [ -e "$f" ] && [ "$(stat -c %Y "$f")" -gt "$start" ] && echo "$f"; done; fi; '
            f'[ "$(systemctl show -p NeedDaemonReload --value {unit} 2>/dev/null)" = yes ] && echo daemon-reload; true'
        )

    def process(self, output):
        return [line.strip() for line in output if line.strip()]


def home_of(user: str) -> str:
    return f"/var/lib/{user}"


def server_config(server_name, base_url, port, notebook_dir, terminals) -> str:
    return render(
        "jupyter_server_config.py.j2",
        server_name=server_name,
        server_name_is_ip=settings.is_ip(server_name),
        base_url=base_url,
        port=port,
        notebook_dir=notebook_dir,
        terminals=terminals,
        password_file=PASSWORD_FILE,
    )


def unit_file(user, prefix, notebook_dir, base_url, port) -> str:
    return render(
        "jupyter.service.j2",
        user=user,
        port=port,
        home=home_of(user),
        prefix=prefix,
        notebook_dir=notebook_dir,
        base_url=base_url,
        config_dir=CONFIG_DIR,
    )


@deploy(
    "Jupyter Notebook service",
    data_defaults=settings.defaults(
        "server_name", "jupyter_base_url", "jupyter_port", "jupyter_user", "notebook_dir",
        "jupyter_password_hash", "jupyter_terminals", "conda_prefix",
    ),
)
def install_jupyter():
    """User, directories, config, password, systemd unit; restart only on change."""
    user = host.data.jupyter_user
    notebook_dir = host.data.notebook_dir
    server.user(
        name=f"System user {user} (no login shell)",
        user=user,
        system=True,
        home=home_of(user),
        shell="/usr/sbin/nologin",
        create_home=True,
    )
    files.directory(name="Notebook directory", path=notebook_dir, user=user, group=user, mode="750")
    files.directory(name="Jupyter's home", path=home_of(user), user=user, group=user, mode="750")
    files.directory(name="Config directory", path=CONFIG_DIR, user="root", group=user, mode="750")
    # Jupyter migrates an old ~/.ipython into its config dir unless this marker exists; the
    # config dir is read-only for the server, and a failed migration stops it from starting.
    files.file(name="No config migration", path=MIGRATED_MARKER, user="root", group=user, mode="640")
    config = files.put(
        name="Jupyter server config",
        src=StringIO(
            server_config(
                settings.server_name(host),
                host.data.jupyter_base_url,
                host.data.jupyter_port,
                notebook_dir,
                host.data.jupyter_terminals,
            ),
        ),
        dest=CONFIG_FILE,
        user="root",
        group=user,
        mode="640",
    )
    password = passwords.password_file(
        name="Jupyter password hash (never shown)",
        path=PASSWORD_FILE,
        password_hash=host.data.jupyter_password_hash,
        password=passwords.password_from_environment(),
        group=user,
    )
    unit = files.put(
        name="systemd unit",
        src=StringIO(unit_file(user, host.data.conda_prefix, notebook_dir, host.data.jupyter_base_url,
                               host.data.jupyter_port)),
        dest=UNIT_FILE,
        user="root",
        group="root",
        mode="644",
    )
    # Files an interrupted earlier run wrote but never restarted for.
    pending = host.get_fact(RestartPending, unit=UNIT, paths=[CONFIG_FILE, PASSWORD_FILE, UNIT_FILE])
    # Gated when the run executes (`_if`), unless an interrupted run left them owed: asking
    # the operations now whether they will change would run their facts twice.
    systemd.daemon_reload(name="Reload systemd units",
                          **({} if "daemon-reload" in pending else {"_if": unit.did_change}))
    # Restarts only a running server; a stopped one starts with the new files below.
    systemd.service(name="Restart Jupyter for its new config", service=UNIT, restarted=True,
                    **({} if pending else {"_if": any_changed(config, password, unit)}))
    systemd.service(name="Jupyter running and enabled", service=UNIT, running=True, enabled=True)
