"""
The conda distribution (Anaconda by default; Miniforge or Miniconda by setting), one per
installer, side by side.

Each distribution is installed into its own directory, ``{conda_prefix}.dists/NAME`` (NAME:
the first 16 hex digits of its installer's sha256), and ``conda_prefix`` is a symbolic link
to the current one: the path users, kernels and the unit see. The installer is downloaded to
a private temporary directory, its sha256 is checked before it runs, and it runs in batch
mode (``-b``, which never edits ``.bashrc``). A marker file written only after a successful
install records which installer made a directory, so a half-installed one (interrupted run)
is repaired with ``-u`` on the next run, and a converged host runs nothing.

A changed installer is an upgrade: the new distribution is installed beside the running one,
with the fleet's packages and the memory display, then ``files/conda-switch`` checks it (its
server on a spare loopback port, a kernel's cell), backs up when backups are configured,
switches the link, restarts Jupyter under ``restart_policy`` and switches back by itself when
the server does not come up from it. The previous distribution stays (``rollback.py``
switches back to it) until the next upgrade; what users built on it is listed.
"""

from __future__ import annotations

import shlex

from pyinfra import host
from pyinfra.api import QuoteString, StringCommand, deploy, operation

from . import backups, environment, hub, layout, people, settings, snapshot, system
from .jupyter import collaboration, resource_usage, restarts
from .jupyter import layout as jupyter_layout
from .render import FILES

MARKER = ".jupyter-deploy-installer"
LIB = layout.LIB
# files/conda-install, uploaded by install_conda (it holds the installer lock).
INSTALL_SCRIPT = f"{LIB}/conda-install"
# files/conda-switch and what it runs: the check before a switch, the list of what is left behind.
SWITCH_SCRIPT = f"{LIB}/conda-switch"
CHECK_SCRIPT = f"{LIB}/conda-check"
STRANDED_SCRIPT = f"{LIB}/conda-stranded"
# Root's: the lines a switch or a rollback wrote for the run's output.
SWITCH_REPORT = f"{layout.STATE_DIR}/conda-switch-report"
# One change of a distribution at a time: files/conda-install and files/conda-switch take it.
LOCK = layout.INSTALLER_LOCK
# What the download and the installer need on the host.
PACKAGES = ["curl", "ca-certificates", "bzip2"]


def packages(data) -> list[str]:
    """What the concern installs (through ``system.install_packages``)."""
    return PACKAGES


# The concern's scripts on the host: what they do, where, from which file of files/.
SCRIPTS = (
    ("Installer script (download, check sha256, run)", INSTALL_SCRIPT, "conda-install"),
    ("Switch script (check, switch, switch back)", SWITCH_SCRIPT, "conda-switch"),
    ("Check of a new distribution before the switch", CHECK_SCRIPT, "conda-check"),
    ("List of what users built on the previous distribution", STRANDED_SCRIPT, "conda-stranded"),
)


def uploaded_scripts(state: snapshot.Snapshot, scripts) -> None:
    """The scripts (rows of ``SCRIPTS``) as this checkout has them, before one of them runs."""
    for name, path, source in scripts:
        snapshot.script(name=name, dest=path, src=FILES / source, state=state)


def install_command() -> list:
    """``files/conda-install`` with the lock and marker it works with, for its arguments."""
    return [system.script_line(INSTALL_SCRIPT, {"--lock": LOCK, "--marker": MARKER})]


def switch_command(per_person: bool = False) -> list:
    """``files/conda-switch`` with what it works on (the server's unit, sandbox and limits, the
    backup, its check scripts, the lock, the marker, and the restart script that decides how
    Jupyter restarts), for a subcommand and its arguments. ``per_person``: people's servers
    instead (``per_person_servers``): the hub's spawn of the check account is the check, and
    their restart script restarts each person's."""
    options = {
        "--unit": jupyter_layout.UNIT,
        "--sandbox": jupyter_layout.SANDBOX_DROPIN,
        "--limits": jupyter_layout.LIMITS_DROPIN,
        "--backup-unit": backups.SERVICE,
        "--check": CHECK_SCRIPT,
        "--stranded": STRANDED_SCRIPT,
        "--lock": LOCK,
        "--marker": MARKER,
    }
    if per_person:
        options.update(
            {
                "--server-command": hub.layout.RESTART_SERVER_SCRIPT,
                "--check-unit": hub.layout.server_unit(hub.layout.CHECK_NAME),
                "--check-distribution": hub.layout.CHECK_DISTRIBUTION,
                "--people-comment": people.COMMENT_PREFIX,
            }
        )
    command = [system.script_line(SWITCH_SCRIPT, options), "--restart", restarts.script_command(), "--"]
    if per_person:
        command += ["--people", hub.restarts.script_command(), "--"]
    return command


def distributions_dir(prefix: str) -> str:
    """Where each distribution has its directory, beside ``conda_prefix``."""
    return f"{prefix.rstrip('/')}.dists"


def distribution_dir(prefix: str, sha256: str) -> str:
    """The directory of the distribution an installer makes."""
    return f"{distributions_dir(prefix)}/{sha256.lower()[:16]}"


class CondaInstallation(snapshot.Probe):
    """
    What the host has of ``prefix`` and of ``target`` (the directory of the configured
    installer's distribution): ``prefix`` (``link``, ``dir``, ``other`` or ``None``),
    ``prefix_sha256`` (its marker: ``None`` when the install never finished),
    ``prefix_notebook``, ``target_present``, ``target_sha256``, ``target_notebook``,
    ``target_resource_usage``, ``target_packages`` (its ``environment.FleetPackages`` record)
    and ``previous`` (the previous distribution's directory name, ``None`` when there is none).
    """

    def __init__(self, prefix: str, target: str | None = None):
        self.prefix, self.target = prefix, target or prefix

    def command(self):
        q = shlex.quote
        prefix, target = self.prefix, self.target
        p, t = q(prefix), q(target)
        previous = q(f"{distributions_dir(prefix)}/previous")

        def marker(path, key):
            return f'[ -f {q(f"{path}/{MARKER}")} ] && echo "{key} $(head -c 64 {q(f"{path}/{MARKER}")})"'

        record = q(f"{target}/{environment.RECORD}")
        parts = [
            f'if [ -L {p} ]; then echo "prefix link"; elif [ -d {p} ]; then echo "prefix dir"; '
            f'elif [ -e {p} ]; then echo "prefix other"; fi',
            marker(prefix, "prefix-sha256"),
            f"[ -x {q(f'{prefix}/bin/jupyter-notebook')} ] && echo prefix-notebook",
            f"[ -d {t} ] && echo target-present",
            marker(target, "target-sha256"),
            f"[ -x {q(f'{target}/bin/jupyter-notebook')} ] && echo target-notebook",
            f"ls -d {t}/lib/python3*/site-packages/jupyter_resource_usage >/dev/null 2>&1"
            " && echo target-resource-usage",
            f'[ -f {record} ] && echo "target-packages $(tr -d "\\n" < {record})"',
            f'[ -L {previous} ] && echo "previous $(readlink {previous})"',
            "true",
        ]
        return "; ".join(parts)

    def parse(self, output):
        values: dict[str, str] = {}
        for line in output:
            key, _, value = line.strip().partition(" ")
            values[key] = value.strip()
        return {
            "prefix": values.get("prefix") or None,
            "prefix_sha256": values.get("prefix-sha256") or None,
            "prefix_notebook": "prefix-notebook" in values,
            "target_present": "target-present" in values,
            "target_sha256": values.get("target-sha256") or None,
            "target_notebook": "target-notebook" in values,
            "target_resource_usage": "target-resource-usage" in values,
            "target_packages": environment.FleetPackages.record([values.get("target-packages", "")]),
            "previous": values.get("previous") or None,
        }


def installation(state: snapshot.Snapshot):
    """What ``CondaInstallation`` says, from the concern's snapshot (``installer_snapshot``)."""
    return state.probe("installation")


def installer_snapshot(prefix: str, sha256: str = "") -> snapshot.Snapshot:
    """The concern's host state in one command: its scripts, the prefix and the directory of
    the distribution ``sha256``'s installer makes."""
    target = distribution_dir(prefix, sha256) if sha256 else prefix
    return snapshot.Snapshot(
        paths=[INSTALL_SCRIPT, SWITCH_SCRIPT, CHECK_SCRIPT, STRANDED_SCRIPT],
        probes={"installation": CondaInstallation(prefix, target)},
    )


def step(current: dict, sha256: str) -> str:
    """What the run does with the distribution: ``converged`` (the prefix is this installer's),
    ``fresh`` (no prefix yet: install and link), ``repair`` (a prefix whose install never
    finished: ``-u`` in place) or ``upgrade`` (another installer's: install beside, switch)."""
    if current["prefix"] is None:
        return "fresh"
    if current["prefix_sha256"] == sha256:
        return "converged"
    if current["prefix_sha256"] is None:
        return "repair"
    return "upgrade"


def install_dir(prefix: str, sha256: str, current: dict) -> str:
    """Where this run installs: the prefix itself for a repair, else the distribution's directory."""
    return prefix if step(current, sha256) in ("converged", "repair") else distribution_dir(prefix, sha256)


@operation()
def installed(url: str, sha256: str, prefix: str, state: snapshot.Snapshot, require_notebook: bool = False):
    """
    Install a conda distribution from its shell installer, verified by sha256, into its own
    directory beside ``prefix`` (``distribution_dir``).

    + url: installer URL (``.sh``)
    + sha256: the installer's published sha256, checked before it runs
    + prefix: the stable path (a link to the current distribution, made by ``switched``)
    + state: the concern's ``installer_snapshot``
    + require_notebook: fail when the installed distribution has no ``jupyter-notebook``

    The download, check and run are ``INSTALL_SCRIPT`` (``files/conda-install``, which
    ``install_conda`` uploads first).

    Runs only when ``prefix`` is missing or another installer's (then the new one goes into
    its own directory), or when an install never finished (then ``-u`` repairs it in place).

    **Example:**

    .. code:: python

        conda.installed(
            name="Install Miniforge",
            url="https://github.com/conda-forge/miniforge/releases/download/25.3.0-3/Miniforge3-Linux-x86_64.sh",
            sha256="...",
            prefix="/opt/miniforge3",
            state=installer_snapshot("/opt/miniforge3", "..."),
        )
    """
    current = installation(state)
    what = step(current, sha256)
    if what == "converged":
        host.noop(f"{prefix} was installed by this installer")
        return
    target = install_dir(prefix, sha256, current)
    if what != "repair" and current["target_sha256"] == sha256:
        host.noop(f"{target} was installed by this installer")
        return
    yield StringCommand(
        *install_command(),
        QuoteString(url),
        QuoteString(sha256),
        QuoteString(target),
        "update" if what == "repair" or current["target_present"] else "install",
        "require-notebook" if require_notebook else "any",
    )


@operation()
def notebook_installed(prefix: str, sha256: str, method: str, state: snapshot.Snapshot, accept_tos: bool = False):
    """
    Install Jupyter Notebook 7 into a distribution that lacks it.

    + prefix: ``conda_prefix``
    + sha256: the installer's; the run installs into that distribution's directory
      (``install_dir``)
    + method: ``conda`` (``conda install notebook``) or ``pip``
    + state: the concern's ``installer_snapshot``
    + accept_tos: accept Anaconda's channel Terms of Service for this install; without
      it, Anaconda's default channels refuse unattended installs (``CondaToSNonInteractiveError``)

    **Example:**

    .. code:: python

        conda.notebook_installed(name="Install Jupyter", prefix="/opt/miniforge3", sha256="...",
                                 method="conda", state=state)
    """
    current = installation(state)
    where = install_dir(prefix, sha256, current)
    if current["prefix_notebook" if where == prefix else "target_notebook"]:
        host.noop(f"{where} has Jupyter Notebook")
        return
    q_where = shlex.quote(where)
    if method == "pip":
        yield f"{q_where}/bin/python -m pip install --quiet 'notebook>=7'"
        return
    # Accepting is the user's decision (setting conda_accept_tos); conda's ToS plugin
    # reads this variable instead of prompting.
    accept = "CONDA_PLUGINS_AUTO_ACCEPT_TOS=yes " if accept_tos else ""
    yield f"{accept}{q_where}/bin/conda install --yes --quiet --prefix {q_where} 'notebook>=7'"


@operation()
def carried_over(
    prefix: str,
    sha256: str,
    state: snapshot.Snapshot,
    conda=(),
    pip=(),
    requirements="",
    accept_tos=False,
    collaborating=False,
    per_person=False,
):
    """
    Before an upgrade's switch, the new distribution carries what the current one does: the
    fleet's packages (``environment``), the memory display (``resource_usage``), when on,
    real-time collaboration (``collaboration``), and with per-person servers what they need
    (``hub.server_packages_command``).

    + prefix: ``conda_prefix``
    + sha256: the new installer's
    + state: the concern's ``installer_snapshot``
    + conda, pip, requirements, accept_tos: the fleet's packages, as ``environment.packages_installed``
    + collaborating: the setting ``collaboration``
    + per_person: the setting ``per_person_servers``
    """
    current = installation(state)
    target = distribution_dir(prefix, sha256)
    if step(current, sha256) != "upgrade":
        host.noop(f"{prefix} is not being upgraded")
        return
    commands, _ = environment.install_commands(
        target, list(conda), list(pip), requirements, current["target_packages"], accept_tos
    )
    if not current["target_resource_usage"]:
        commands.append(
            StringCommand(
                environment.pip_install(target),
                shlex.quote(f"{resource_usage.PACKAGE}=={resource_usage.VERSION}"),
            )
        )
        # The display on by default, as in the current distribution (when it is).
        now, new = (shlex.quote(resource_usage.overrides_path(p)) for p in (prefix, target))
        commands.append(StringCommand(f"if [ -f {now} ] && [ ! -e {new} ]; then install -D -m 644 {now} {new}; fi"))
    if collaborating:
        commands.append(collaboration.install_command(target))
    if per_person:
        commands.append(hub.server_packages_command(target))
    if not commands:
        host.noop(f"{target} has the fleet's packages and the memory display")
    yield from commands


@operation()
def switched(
    prefix: str, sha256: str, state: snapshot.Snapshot, policy: str, hours: float, backup: bool, per_person=False
):
    """
    ``prefix`` points at the distribution of installer ``sha256``: on a fresh host a new link;
    on an upgrade the checked switch of ``SWITCH_SCRIPT`` (``files/conda-switch``).

    + prefix: ``conda_prefix``
    + sha256: the installer's
    + state: the concern's ``installer_snapshot``
    + policy, hours: ``restart_policy`` and ``restart_deadline``, for Jupyter's restart
    + backup: back up before the switch (backups are configured)
    + per_person: ``per_person_servers`` (people's servers are checked and restarted)
    """
    current = installation(state)
    what = step(current, sha256)
    target = distribution_dir(prefix, sha256)
    if what == "fresh":
        yield StringCommand(*switch_command(), "link", QuoteString(prefix), QuoteString(target))
    elif what == "upgrade":
        yield StringCommand(
            *switch_command(per_person),
            "upgrade",
            QuoteString(prefix),
            QuoteString(target),
            QuoteString(policy),
            QuoteString(str(hours)),
            "backup" if backup else "no-backup",
            QuoteString(SWITCH_REPORT),
        )
        yield system.shown_report(SWITCH_REPORT)
    else:
        host.noop(f"{prefix} is the distribution of this installer")


@operation()
def rolled_back(prefix: str, state: snapshot.Snapshot, policy: str, hours: float, per_person=False):
    """
    ``prefix`` points at the previous distribution again, and Jupyter restarts from it under
    ``policy``; nothing when there is no previous distribution (none yet, or rolled back).

    + prefix: ``conda_prefix``
    + state: the concern's ``installer_snapshot``
    + policy, hours: ``restart_policy`` and ``restart_deadline``
    + per_person: ``per_person_servers`` (people's servers restart from it)
    """
    current = installation(state)
    if current["previous"] is None or current["prefix"] != "link":
        host.noop(f"{prefix} has no previous distribution to switch back to")
        return
    yield StringCommand(
        *switch_command(per_person),
        "rollback",
        QuoteString(prefix),
        QuoteString(policy),
        QuoteString(str(hours)),
        QuoteString(SWITCH_REPORT),
    )
    yield system.shown_report(SWITCH_REPORT)


@deploy(
    "Conda distribution",
    data_defaults=settings.defaults(
        "conda_installer_url",
        "conda_installer_sha256",
        "conda_prefix",
        "conda_jupyter_install",
        "conda_accept_tos",
        "conda_packages",
        "pip_packages",
        "pip_requirements",
        "restart_policy",
        "restart_deadline",
        "backup_repository",
        "collaboration",
        "per_person_servers",
    ),
)
def install_conda():
    """Download, verify and install the conda distribution beside the current one, make sure
    it has Jupyter, then switch to it (checked, with a way back)."""
    method = host.data.conda_jupyter_install
    prefix = host.data.conda_prefix
    sha256 = host.data.conda_installer_sha256.lower()
    state = installer_snapshot(prefix, sha256)
    uploaded_scripts(state, SCRIPTS)
    installed(
        name="Install the conda distribution (sha256-verified, batch mode)",
        url=host.data.conda_installer_url,
        sha256=sha256,
        prefix=prefix,
        require_notebook=method == "bundled",
        state=state,
    )
    if method != "bundled":
        notebook_installed(
            name=f"Install Jupyter Notebook with {method}",
            prefix=prefix,
            sha256=sha256,
            method=method,
            accept_tos=host.data.conda_accept_tos,
            state=state,
        )
    carried_over(
        name="The new distribution gets the fleet's packages and the memory display",
        prefix=prefix,
        sha256=sha256,
        conda=host.data.conda_packages,
        pip=host.data.pip_packages,
        requirements=host.data.pip_requirements,
        accept_tos=host.data.conda_accept_tos,
        collaborating=host.data.collaboration,
        per_person=host.data.per_person_servers,
        state=state,
    )
    switched(
        name="Switch to the new distribution (checked first, switched back if Jupyter fails)",
        prefix=prefix,
        sha256=sha256,
        policy=host.data.restart_policy,
        hours=host.data.restart_deadline,
        backup=bool(host.data.backup_repository),
        per_person=host.data.per_person_servers,
        state=state,
    )


@deploy(
    "Conda distribution rollback",
    data_defaults=settings.defaults("conda_prefix", "restart_policy", "restart_deadline", "per_person_servers"),
)
def roll_back():
    """Switch ``conda_prefix`` back to the previous distribution (rollback.py), with the switch
    script of this checkout (a host last deployed by an older one may have another)."""
    prefix = host.data.conda_prefix
    state = installer_snapshot(prefix)
    uploaded_scripts(state, [row for row in SCRIPTS if row[1] == SWITCH_SCRIPT])
    rolled_back(
        name="Switch back to the previous distribution",
        prefix=prefix,
        policy=host.data.restart_policy,
        hours=host.data.restart_deadline,
        per_person=host.data.per_person_servers,
        state=state,
    )
