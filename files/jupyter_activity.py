# Managed by pyinfra (jupyter-apache-deploy): local edits are overwritten on the next run.
"""
What the running server is doing and running, for the deploy (a server extension).

A restart of Jupyter ends every kernel. The deploy restarts it only when nothing is busy
(``restart_policy = 'when-idle'``), and when the server's own packages changed since it
started. It asks here, on the host's loopback, with no password. The answer is counts and
versions only, for this host's own requests; a request that came through Apache (which always
adds ``X-Forwarded-For``) gets 404. The worst a notebook can do with it is delay its own
server's restart until the deadline the deploy set.

    GET /jupyter-deploy/activity  ->  kernels=3 kernels_busy=1 terminals=2 terminals_busy=0
                                      running jupyter-server 2.21.1
                                      running tornado 6.5.2
                                      ...

The path is the same whatever ``base_url`` is, so a run that changes the base URL (or the
port: the deploy's script finds the server's port itself) still asks the running server.
``running``: the versions of the server's packages (``SERVER_PACKAGES`` and everything they
require) as they were when it started. ``python -I jupyter_activity.py`` prints the same list
as installed now (``installed NAME VERSION``), which the deploy compares.

For the smoke check's audit (``python -m smoke --audit``), a second route answers signed-in
users only, through Apache like the rest of the API:

    GET {base_url}jupyter-deploy/versions  ->  {"distribution": "Debian GNU/Linux 12 (bookworm)",
        "python": "3.12.4", "running": {"jupyter-server": "2.21.1", ...},
        "installed": {"jupyter-server": "2.14.1", ...}}

``running`` and ``installed`` hold ``SERVER_PACKAGES`` only; they differ while a restart is owed.
Whoever has the password can run code and read all this anyway.

A person's server under JupyterHub (per_person_servers) shares the host's loopback with every
other person's: there the activity answers root's connections alone (the uid that owns the
connecting socket, as the kernel lists it in /proc/net/tcp).

Loaded by the deploy's jupyter_server_config.py (``jpserver_extensions``).
"""

import json
import os
import platform
import re
import sys
from importlib import metadata

PATH = "/jupyter-deploy/activity"
VERSIONS_PATH = "jupyter-deploy/versions"
PROXY_HEADERS = ("X-Forwarded-For", "X-Forwarded-Host", "X-Real-Ip", "Forwarded")
LOOPBACK = ("127.0.0.1", "::1")
SERVER_PACKAGES = ("notebook", "jupyter-server", "jupyterlab", "tornado", "jupyter-resource-usage")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


def normalized(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def server_versions() -> dict[str, str]:
    """The installed version of each package the server imports: ``SERVER_PACKAGES`` and
    their requirements, all the way down (optional extras left out)."""
    versions: dict[str, str] = {}
    todo = list(SERVER_PACKAGES)
    while todo:
        name = normalized(todo.pop())
        if name in versions:
            continue
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            continue
        versions[name] = dist.version
        for requirement in dist.requires or ():
            spec, _, marker = requirement.partition(";")
            match = _NAME.match(spec.strip())
            if match and "extra" not in marker:
                todo.append(match.group(0))
    return dict(sorted(versions.items()))


# As the server started: what it imported.
RUNNING = server_versions()


def child_processes(pid: int) -> int:
    """How many processes have ``pid`` as their parent (this user's: the others are hidden)."""
    count = 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as stat:
                # "PID (COMM) STATE PPID ...": COMM may hold spaces and parentheses.
                fields = stat.read().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if len(fields) > 1 and fields[1] == str(pid):
            count += 1
    return count


def activity(serverapp, settings) -> str:
    kernels = serverapp.kernel_manager.list_kernels()
    busy_kernels = sum(1 for kernel in kernels if kernel.get("execution_state") == "busy")
    terminals = getattr(settings.get("terminal_manager"), "terminals", {}) or {}
    # A terminal is busy while its shell has a child: a command running, in front or behind.
    busy_terminals = 0
    for terminal in list(terminals.values()):
        pid = getattr(getattr(terminal, "ptyproc", None), "pid", None)
        if pid and child_processes(pid):
            busy_terminals += 1
    lines = [
        f"kernels={len(kernels)} kernels_busy={busy_kernels} terminals={len(terminals)} terminals_busy={busy_terminals}"
    ]
    lines += [f"running {name} {version}" for name, version in RUNNING.items()]
    return "\n".join(lines) + "\n"


OS_RELEASE = "/etc/os-release"


def distribution_name() -> str:
    try:
        with open(OS_RELEASE) as release:
            for line in release:
                key, _, value = line.strip().partition("=")
                if key == "PRETTY_NAME":
                    return value.strip('"')
    except OSError:
        pass
    return "unknown"


def versions_report() -> dict:
    """What the audit needs: the host's distribution, the server's Python, and the server's
    own packages as it runs them and as they are installed now."""
    installed = server_versions()
    return {
        "distribution": distribution_name(),
        "python": platform.python_version(),
        "running": {name: RUNNING[name] for name in map(normalized, SERVER_PACKAGES) if name in RUNNING},
        "installed": {name: installed[name] for name in map(normalized, SERVER_PACKAGES) if name in installed},
    }


# Under JupyterHub (a person's server): the activity answers root alone.
UNDER_HUB = bool(os.environ.get("JUPYTERHUB_API_TOKEN"))


def _tcp_address(host: str, port: int) -> str:
    """An IPv4 address as /proc/net/tcp writes it (``0100007F:1F90``)."""
    return "".join(f"{int(part):02X}" for part in reversed(host.split("."))) + f":{port:04X}"


def peer_uid(server: tuple, peer: tuple, table: str = "/proc/net/tcp") -> int | None:
    """Who owns the socket that connected from ``peer`` to ``server`` (both ``(host, port)``,
    IPv4): the uid of the connection seen from the peer's side."""
    local, remote = _tcp_address(*peer[:2]), _tcp_address(*server[:2])
    try:
        with open(table) as f:
            for line in f.readlines()[1:]:
                fields = line.split()
                if len(fields) > 7 and fields[1] == local and fields[2] == remote:
                    return int(fields[7])
    except (OSError, ValueError):
        pass
    return None


def _jupyter_server_extension_points():
    return [{"module": __name__}]


def _load_jupyter_server_extension(serverapp):
    # Imported here: run as a script (the installed versions), this needs no server.
    from jupyter_server.base.handlers import APIHandler
    from jupyter_server.utils import url_path_join
    from tornado.web import HTTPError, RequestHandler, authenticated

    class ActivityHandler(RequestHandler):
        def get(self):
            if any(h in self.request.headers for h in PROXY_HEADERS) or self.request.remote_ip not in LOOPBACK:
                raise HTTPError(404)
            if UNDER_HUB and not self._from_root():
                raise HTTPError(404)
            self.set_header("Content-Type", "text/plain; charset=utf-8")
            self.set_header("Cache-Control", "no-store")
            self.finish(activity(serverapp, self.settings))

        def _from_root(self) -> bool:
            try:
                sock = self.request.connection.stream.socket
                return peer_uid(sock.getsockname(), sock.getpeername()) == 0
            except (AttributeError, OSError):
                return False

    class VersionsHandler(APIHandler):
        @authenticated
        def get(self):
            self.set_header("Cache-Control", "no-store")
            self.finish(json.dumps(versions_report()))

    versions = url_path_join(serverapp.base_url, VERSIONS_PATH)
    serverapp.web_app.add_handlers(".*$", [(PATH, ActivityHandler), (versions, VersionsHandler)])


if __name__ == "__main__":
    for name, version in RUNNING.items():
        print("installed", name, version)
    sys.exit(0)
