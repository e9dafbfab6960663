"""
Real-time collaboration (setting ``collaboration``): people who open the same notebook see
each other's edits as they type, and each other's names (with ``auth = 'oidc'``, the names
the provider gives; with a shared password everyone is the same person).

``jupyter-collaboration`` is installed into the prefix with the prefix's own pip, in the
newest release that fits the prefix's JupyterLab (which stays as the distribution has it);
its server extension and front-end load from there. Its websockets are under the base URL,
so the vhost's one ``ProxyPass`` carries them. Switching it off uninstalls it again.

Used by the Jupyter concern (operations/jupyter/), whose server restarts for the change.
"""

from __future__ import annotations

import shlex

from pyinfra import host
from pyinfra.api import StringCommand, operation

from .. import environment, snapshot

PACKAGE = "jupyter-collaboration"
# Releases of the 4 and 5 series support JupyterLab 4 and Notebook 7.
SPEC = "jupyter-collaboration>=4,<6"
# What it brings that nothing else of the prefix needs: removed with it.
PACKAGES = (PACKAGE, "jupyter-collaboration-ui", "jupyter-docprovider", "jupyter-server-ydoc")


def probe(prefix: str) -> snapshot.Probe:
    """For the Jupyter concern's snapshot: the package's directory in the prefix, if any."""
    return snapshot.Lines(f"ls -d {shlex.quote(prefix)}/lib/python3*/site-packages/jupyter_collaboration")


def install_command(prefix: str) -> StringCommand:
    """The prefix's pip installs the package, pinned to the JupyterLab the prefix has (pip
    picks a release that fits it)."""
    python = f"{shlex.quote(prefix)}/bin/python"
    return StringCommand(
        environment.pip_install(prefix),
        shlex.quote(SPEC),
        f'"jupyterlab==$({python} -c "import jupyterlab; print(jupyterlab.__version__)")"',
    )


@operation()
def installed(prefix: str, wanted: bool, state: snapshot.Snapshot):
    """
    ``jupyter-collaboration`` in the prefix when ``wanted``, not in it otherwise.

    + prefix: the conda prefix; its own pip installs and removes the package
    + wanted: the setting ``collaboration``
    + state: the Jupyter concern's snapshot, with ``probe`` as ``collaboration``
    """
    present = bool(state.probe("collaboration"))
    if present == wanted:
        host.noop(f"{PACKAGE} is {'' if present else 'not '}installed in {prefix}")
        return
    if wanted:
        yield install_command(prefix)
    else:
        python = f"{shlex.quote(prefix)}/bin/python"
        yield StringCommand(
            f"{python} -m pip uninstall --yes --quiet --disable-pip-version-check --root-user-action=ignore",
            *map(shlex.quote, PACKAGES),
        )
