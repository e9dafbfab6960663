"""
The conda distribution (Anaconda by default; Miniforge or Miniconda by setting).

The installer is downloaded to a private temporary directory, its sha256 is checked
before it runs, and it runs in batch mode (``-b``, which never edits ``.bashrc``).
A marker file written only after a successful install records which installer
produced the prefix, so a half-installed prefix (interrupted run) or a different
installer version is repaired with ``-u`` on the next run, and a converged host
runs nothing.
"""

from __future__ import annotations

import shlex

from pyinfra import host
from pyinfra.api import FactBase, QuoteString, StringCommand, deploy, operation

from . import settings, snapshot, system
from .render import FILES

MARKER = ".jupyter-deploy-installer"
# files/conda-install, uploaded by install_conda (it holds the installer lock).
INSTALL_SCRIPT = "/usr/local/lib/jupyter-deploy/conda-install"
# What the download and the installer need on the host.
PACKAGES = ["curl", "ca-certificates", "bzip2"]


@system.needs_packages
def packages(data) -> list[str]:
    """What the concern installs (through ``system.install_packages``)."""
    return PACKAGES


class CondaInstallation(FactBase):
    """
    Returns ``None`` when ``prefix`` does not exist, else a dict: ``installer_sha256``
    (from the marker, ``None`` if the install never finished) and ``has_notebook``.
    """

    def command(self, prefix):
        q = shlex.quote
        return (
            f"if [ -e {q(prefix)} ]; then echo present; "
            f"cat {q(f'{prefix}/{MARKER}')} 2>/dev/null || echo no-marker; "
            f"[ -x {q(f'{prefix}/bin/jupyter-notebook')} ] && echo notebook || echo no-notebook; fi"
        )

    def process(self, output):
        lines = [line.strip() for line in output]
        if not lines or lines[0] != "present":
            return None
        marker = lines[1] if len(lines) > 1 and lines[1] != "no-marker" else None
        return {"installer_sha256": marker, "has_notebook": "notebook" in lines[2:]}


def installation(state: snapshot.Snapshot):
    """What ``CondaInstallation`` says of the prefix, from the concern's snapshot (``installer_snapshot``)."""
    return CondaInstallation().process(state.probe("installation"))


def installer_snapshot(prefix: str) -> snapshot.Snapshot:
    """The concern's host state in one command: the install script and the prefix."""
    return snapshot.Snapshot(paths=[INSTALL_SCRIPT], probes={"installation": CondaInstallation().command(prefix)})


@operation()
def installed(url: str, sha256: str, prefix: str, state: snapshot.Snapshot, require_notebook: bool = False):
    """
    Install a conda distribution from its shell installer, verified by sha256.

    + url: installer URL (``.sh``)
    + sha256: the installer's published sha256, checked before it runs
    + prefix: install location
    + state: the concern's ``installer_snapshot``
    + require_notebook: fail when the installed prefix has no ``jupyter-notebook``

    The download, check and run are ``INSTALL_SCRIPT`` (``files/conda-install``, which
    ``install_conda`` uploads first).

    Runs only when ``prefix`` is missing, was installed by a different installer
    or never finished installing (then ``-u`` updates it in place).

    **Example:**

    .. code:: python

        conda.installed(
            name="Install Miniforge",
            url="https://github.com/conda-forge/miniforge/releases/download/25.3.0-3/Miniforge3-Linux-x86_64.sh",
            sha256="...",
            prefix="/opt/miniforge3",
            state=installer_snapshot("/opt/miniforge3"),
        )
    """
    current = installation(state)
    if current and current["installer_sha256"] == sha256:
        host.noop(f"{prefix} was installed by this installer")
        return
    yield StringCommand(
        QuoteString(INSTALL_SCRIPT),
        QuoteString(url),
        QuoteString(sha256),
        QuoteString(prefix),
        "update" if current else "install",
        "require-notebook" if require_notebook else "any",
    )


@operation()
def notebook_installed(prefix: str, method: str, state: snapshot.Snapshot, accept_tos: bool = False):
    """
    Install Jupyter Notebook 7 into a prefix whose distribution lacks it.

    + prefix: the conda prefix
    + method: ``conda`` (``conda install notebook``) or ``pip``
    + state: the concern's ``installer_snapshot``
    + accept_tos: accept Anaconda's channel Terms of Service for this install; without
      it, Anaconda's default channels refuse unattended installs (``CondaToSNonInteractiveError``)

    **Example:**

    .. code:: python

        conda.notebook_installed(name="Install Jupyter", prefix="/opt/miniforge3", method="conda", state=state)
    """
    current = installation(state)
    if current and current["has_notebook"]:
        host.noop(f"{prefix} has Jupyter Notebook")
        return
    q_prefix = shlex.quote(prefix)
    if method == "pip":
        yield f"{q_prefix}/bin/python -m pip install --quiet 'notebook>=7'"
        return
    # Accepting is the user's decision (setting conda_accept_tos); conda's ToS plugin
    # reads this variable instead of prompting.
    accept = "CONDA_PLUGINS_AUTO_ACCEPT_TOS=yes " if accept_tos else ""
    yield f"{accept}{q_prefix}/bin/conda install --yes --quiet 'notebook>=7'"


@deploy(
    "Conda distribution",
    data_defaults=settings.defaults(
        "conda_installer_url",
        "conda_installer_sha256",
        "conda_prefix",
        "conda_jupyter_install",
        "conda_accept_tos",
    ),
)
def install_conda():
    """Download, verify and install the conda distribution, then make sure it has Jupyter."""
    method = host.data.conda_jupyter_install
    prefix = host.data.conda_prefix
    state = installer_snapshot(prefix)
    snapshot.script(
        name="Installer script (download, check sha256, run)",
        dest=INSTALL_SCRIPT,
        src=FILES / "conda-install",
        state=state,
    )
    installed(
        name="Install the conda distribution (sha256-verified, batch mode)",
        url=host.data.conda_installer_url,
        sha256=host.data.conda_installer_sha256.lower(),
        prefix=prefix,
        require_notebook=method == "bundled",
        state=state,
    )
    if method != "bundled":
        notebook_installed(
            name=f"Install Jupyter Notebook with {method}",
            prefix=prefix,
            method=method,
            accept_tos=host.data.conda_accept_tos,
            state=state,
        )
