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
from pyinfra.api import FactBase, StringCommand, deploy, operation

from . import settings, system

MARKER = ".jupyter-deploy-installer"
LOCK = "/run/lock/jupyter-deploy-conda-installer.lock"
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
        return (
            f"if [ -e {prefix} ]; then echo present; "
            f"cat {prefix}/{MARKER} 2>/dev/null || echo no-marker; "
            f"[ -x {prefix}/bin/jupyter-notebook ] && echo notebook || echo no-notebook; fi"
        )

    def process(self, output):
        lines = [line.strip() for line in output]
        if not lines or lines[0] != "present":
            return None
        marker = lines[1] if len(lines) > 1 and lines[1] != "no-marker" else None
        return {"installer_sha256": marker, "has_notebook": "notebook" in lines[2:]}


@operation()
def installed(url: str, sha256: str, prefix: str, require_notebook: bool = False):
    """
    Install a conda distribution from its shell installer, verified by sha256.

    + url: installer URL (``.sh``)
    + sha256: the installer's published sha256, checked before it runs
    + prefix: install location
    + require_notebook: fail when the installed prefix has no ``jupyter-notebook``

    Runs only when ``prefix`` is missing, was installed by a different installer
    or never finished installing (then ``-u`` updates it in place).

    **Example:**

    .. code:: python

        conda.installed(
            name="Install Miniforge",
            url="https://github.com/conda-forge/miniforge/releases/download/25.3.0-3/Miniforge3-Linux-x86_64.sh",
            sha256="...",
            prefix="/opt/miniforge3",
        )
    """
    current = host.get_fact(CondaInstallation, prefix=prefix)
    if current and current["installer_sha256"] == sha256:
        host.noop(f"{prefix} was installed by this installer")
        return

    update = " -u" if current else ""
    q_prefix = shlex.quote(prefix)
    script = [
        "set -e",
        # One installer at a time: an installer whose run was interrupted (SSH dropped) goes on
        # on the host, and a second one racing it in the same prefix breaks both. Held until
        # this shell ends, so the next run waits for the orphan and then repairs with -u.
        f"exec 9>{LOCK}",
        "flock 9",
        f"url={shlex.quote(url)}",
        # /var/tmp, not /tmp: Anaconda is ~1 GB and /tmp may be a small tmpfs.
        "d=$(mktemp -d /var/tmp/conda-installer.XXXXXX)",
        "trap 'rm -rf \"$d\"' EXIT",
        'curl -fsSL --retry 3 -o "$d/installer.part" "$url"',
        f"if ! echo '{sha256}  '\"$d/installer.part\" | sha256sum -c --status; then "
        f'echo "sha256 mismatch for $url: expected {sha256}, got $(sha256sum "$d/installer.part" | cut -c1-64)" >&2; '
        "exit 1; fi",
        # Only a verified, complete download ever gets the name that is executed.
        'mv "$d/installer.part" "$d/installer.sh"',
        f'bash "$d/installer.sh" -b{update} -p {q_prefix}',
        f"echo {sha256} > {q_prefix}/{MARKER}",
    ]
    if require_notebook:
        script.append(
            f'if [ ! -x {q_prefix}/bin/jupyter-notebook ]; then echo "{prefix} has no Jupyter Notebook: '
            "this distribution does not bundle it, set conda_jupyter_install to 'conda' or 'pip'\" >&2; exit 1; fi",
        )
    yield StringCommand("bash", "-c", shlex.quote("\n".join(script)))


@operation()
def notebook_installed(prefix: str, method: str, accept_tos: bool = False):
    """
    Install Jupyter Notebook 7 into a prefix whose distribution lacks it.

    + prefix: the conda prefix
    + method: ``conda`` (``conda install notebook``) or ``pip``
    + accept_tos: accept Anaconda's channel Terms of Service for this install; without
      it, Anaconda's default channels refuse unattended installs (``CondaToSNonInteractiveError``)

    **Example:**

    .. code:: python

        conda.notebook_installed(name="Install Jupyter", prefix="/opt/miniforge3", method="conda")
    """
    current = host.get_fact(CondaInstallation, prefix=prefix)
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
    installed(
        name="Install the conda distribution (sha256-verified, batch mode)",
        url=host.data.conda_installer_url,
        sha256=host.data.conda_installer_sha256.lower(),
        prefix=host.data.conda_prefix,
        require_notebook=method == "bundled",
    )
    if method != "bundled":
        notebook_installed(
            name=f"Install Jupyter Notebook with {method}",
            prefix=host.data.conda_prefix,
            method=method,
            accept_tos=host.data.conda_accept_tos,
        )
