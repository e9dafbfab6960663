"""
The fleet's shared environment: the packages every host's ``conda_prefix`` carries.

Declared once in settings (``conda_packages``, ``pip_packages``, ``pip_requirements``),
installed as root into the prefix (which the notebook user cannot write). A record of
what was installed lives beside the prefix's own files, so a converged host reads one
small file and runs no installer; a changed list installs only the new or changed specs;
an entry removed from the settings is left installed and reported once. A spec that does
not exist fails the host with pip's or conda's own error and leaves the record (and the
environment) as it was, so Jupyter keeps working and the next run retries. Nothing here
restarts Jupyter: running kernels keep running, new kernels see the new packages.
"""

from __future__ import annotations

import hashlib
import json
import shlex

from pyinfra import host, logger
from pyinfra.api import FileUploadCommand, StringCommand, deploy, operation

from . import settings, snapshot

RECORD = ".jupyter-deploy-packages.json"
REQUIREMENTS = ".jupyter-deploy-requirements.txt"


class FleetPackages(snapshot.Probe):
    """
    What this deploy installed into ``prefix``: a dict with ``conda`` and ``pip`` (lists of
    specs) and ``requirements`` (sha256 of the installed requirements file, or ``None``).
    Empty lists when nothing was recorded yet.
    """

    def __init__(self, prefix: str):
        self.prefix = prefix

    def command(self):
        return f"cat {shlex.quote(f'{self.prefix}/{RECORD}')} 2>/dev/null || true"

    def parse(self, output):
        return self.record(output)

    @staticmethod
    def record(output: list[str]) -> dict:
        """The record file's lines, read (what ``parse`` returns)."""
        text = "\n".join(output).strip()
        try:
            record = json.loads(text) if text else {}
        except json.JSONDecodeError:
            record = {}
        empty = {"conda": [], "pip": [], "requirements": None}
        return {**empty, **{k: v for k, v in record.items() if k in empty}}


def packages_snapshot(prefix: str) -> snapshot.Snapshot:
    """The concern's host state: what it installed into ``prefix`` (``FleetPackages``)."""
    return snapshot.Snapshot(probes={"installed": FleetPackages(prefix)})


def pip_install(prefix: str) -> str:
    """The prefix's own pip, as root, quiet and never asking: add the quoted specs."""
    return (
        f"{shlex.quote(prefix)}/bin/python -m pip install --quiet --no-input --disable-pip-version-check "
        "--root-user-action=ignore"
    )


def local_sha256(path: str) -> str:
    """The sha256 of a file on the control machine."""
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


@operation()
def packages_installed(
    prefix: str,
    conda: list[str],
    pip: list[str],
    state: snapshot.Snapshot,
    requirements: str = "",
    accept_tos: bool = False,
):
    """
    Install conda and pip packages into a conda prefix, only what is not installed yet.

    + prefix: the conda prefix (its ``bin/conda`` and ``bin/python`` are used)
    + conda: conda match specs, installed with ``conda install --yes``
    + pip: PEP 508 specs, installed with the prefix's own pip
    + requirements: a local requirements file, uploaded and installed with ``pip install -r``
      whenever its content changed; ``''`` for none
    + accept_tos: accept Anaconda's channel Terms of Service for the conda install
    + state: ``packages_snapshot(prefix)``

    Specs are compared as written: changing ``x==1`` to ``x==2`` installs ``x==2``.
    A spec no longer listed is left installed (and reported once).

    **Example:**

    .. code:: python

        environment.packages_installed(
            name="Course packages",
            prefix="/opt/anaconda3",
            conda=["scipy>=1.11"],
            pip=["tabulate==0.9.0"],
            state=environment.packages_snapshot("/opt/anaconda3"),
        )
    """
    installed = state.probe("installed")
    commands, left = install_commands(prefix, conda, pip, requirements, installed, accept_tos)
    if not commands:
        host.noop(f"{prefix} has every listed package")
        return
    if left:
        logger.warning(
            f"{host.name}: no longer listed, left installed in {prefix}: {', '.join(left)} "
            "(uninstall by hand if it must go)"
        )
    yield from commands


def install_commands(
    prefix: str, conda: list[str], pip: list[str], requirements: str, installed: dict, accept_tos: bool = False
):
    """What installs the specs ``installed`` (a ``FleetPackages`` record) lacks into ``prefix``,
    then records them; and the specs no longer listed. No commands when nothing is missing."""
    new_conda = [spec for spec in conda if spec not in installed["conda"]]
    new_pip = [spec for spec in pip if spec not in installed["pip"]]
    requirements_sha = local_sha256(requirements) if requirements else None
    new_requirements = requirements_sha is not None and requirements_sha != installed["requirements"]
    left = [spec for spec in installed["conda"] + installed["pip"] if spec not in conda + pip]
    if installed["requirements"] and not requirements:
        left.append("the packages of the previous pip_requirements file")
    if not (new_conda or new_pip or new_requirements or left):
        return [], []
    commands: list = []
    q_prefix = shlex.quote(prefix)
    if new_conda:
        # The prefix's conda, never a `conda` found on PATH; accepting the channels' terms
        # is the user's decision (conda_accept_tos), read by conda's ToS plugin.
        env = "CONDA_PLUGINS_AUTO_ACCEPT_TOS=yes " if accept_tos else ""
        commands.append(
            f"{env}{q_prefix}/bin/conda install --yes --quiet --prefix {q_prefix} "
            + " ".join(shlex.quote(spec) for spec in new_conda)
        )
    if new_pip:
        commands.append(f"{pip_install(prefix)} " + " ".join(shlex.quote(spec) for spec in new_pip))
    if new_requirements:
        target = f"{prefix}/{REQUIREMENTS}"
        commands.append(FileUploadCommand(requirements, target))
        commands.append(f"chmod 644 {shlex.quote(target)}")
        commands.append(f"{pip_install(prefix)} --requirement {shlex.quote(target)}")
    # Written only after every install above succeeded: a failed install is retried.
    record = json.dumps({"conda": list(conda), "pip": list(pip), "requirements": requirements_sha}, sort_keys=True)
    q_record = shlex.quote(f"{prefix}/{RECORD}")
    commands.append(
        StringCommand(f"printf '%s\\n' {shlex.quote(record)} > {q_record}.new && mv {q_record}.new {q_record}")
    )
    return commands, left


@deploy(
    "Fleet packages",
    data_defaults=settings.defaults(
        "conda_prefix", "conda_packages", "pip_packages", "pip_requirements", "conda_accept_tos"
    ),
)
def install_packages():
    """The packages every host of the fleet carries in its conda prefix."""
    packages_installed(
        name="Install the listed conda and pip packages into the prefix",
        prefix=host.data.conda_prefix,
        conda=host.data.conda_packages,
        pip=host.data.pip_packages,
        requirements=host.data.pip_requirements,
        accept_tos=host.data.conda_accept_tos,
        state=packages_snapshot(host.data.conda_prefix),
    )
