"""
Distribution packages: one apt transaction for every concern of the deploy.

Each concern says what it needs with a ``packages(data)`` function (host data in, package
names out); deploy.py hands every concern's to ``install_packages``, which installs the union
with one ``apt-get install``, after an index refresh only when something is missing and the
index is over an hour old. Its state is one probe (``PackageState``) of the host's read.

Also here: ``shown_report``, how a script's report reaches the run's output.
"""

from __future__ import annotations

import hashlib
import shlex
from collections.abc import Callable, Iterable

from pyinfra import host
from pyinfra.api import FunctionCommand, StringCommand, deploy, operation

from . import snapshot

APT_CACHE_SECONDS = 3600
# Every apt-get of the deploy. Debian 12's apt (2.6.1) retries a transient failure (a mirror's
# or proxy's 503, say) after a delay, and when that failure is one suite's InRelease on a
# connection shared with the host's other suites, the delayed retry is never sent: apt-get
# update waits for it forever (reproduced against a proxy answering 503 once; seen in CI as a
# deploy killed after 600 s). Retried at once instead, it ends: a suite still failing is
# reported and its previous index used, as apt does without retries.
APT_OPTIONS = "-o Acquire::Retries::Delay=false"
# Touched after every successful index refresh (by apt's daily job and by this deploy).
UPDATE_STAMP = "/var/lib/apt/periodic/update-success-stamp"


def script_line(script: str, options: dict[str, str]) -> str:
    """A host script with the deploy's names it works on (``--option value``), every word
    quoted: the start of a command line, ready for a subcommand and its arguments."""
    q = shlex.quote
    return " ".join([q(script), *(f"{option} {q(value)}" for option, value in options.items())])


def spread(host_name: str, span: int) -> int:
    """A number in ``range(span)`` of the host's own, the same on every run: what spreads a
    fleet's nightly jobs (backups) and reboots over their window, so hosts do not all go at once."""
    return int.from_bytes(hashlib.sha256(host_name.encode()).digest()[:4], "big") % span


def wanted_packages(data, needs: Iterable[Callable]) -> list[str]:
    """Every concern's packages for this host (``needs``: their ``packages(data)``), duplicates
    dropped, order kept."""
    return list(dict.fromkeys(name for packages in needs for name in packages(data)))


class PackageState(snapshot.Probe):
    """
    ``{"installed": [...], "index_age": seconds}``: the packages dpkg has installed (all of
    them: the same probe whatever a host's settings want), and how old apt's package index is
    (very old when never refreshed).
    """

    def command(self):
        stamp = shlex.quote(UPDATE_STAMP)
        return (
            "dpkg-query -W -f='${db:Status-Abbrev} ${Package}\\n' 2>/dev/null; "
            f'echo "index-age $(( $(date +%s) - $(stat -c %Y {stamp} 2>/dev/null || echo 0) ))"'
        )

    def parse(self, output):
        installed, age = [], 10**10
        for line in output:
            fields = line.split()
            if len(fields) == 2 and fields[0] == "index-age":
                age = int(fields[1])
            elif len(fields) == 2 and fields[0] == "ii":
                installed.append(fields[1].split(":")[0])
        return {"installed": sorted(installed), "index_age": age}


def packages_snapshot() -> snapshot.Snapshot:
    """The concern's host state: which packages are installed, how old apt's index is."""
    return snapshot.Snapshot(probes={"packages": PackageState()})


@operation()
def packages_installed(packages: list[str], state: snapshot.Snapshot, answers: list[str] | None = None):
    """
    Install the distribution packages that are missing, in one ``apt-get install``.

    + packages: package names
    + state: ``packages_snapshot()``
    + answers: debconf answers (``debconf-set-selections`` lines) given before a package that
      asks them is installed; a package already installed keeps its own

    The index is refreshed first when something is missing and it is over
    ``APT_CACHE_SECONDS`` old; nothing runs when everything is installed.

    **Example:**

    .. code:: python

        system.packages_installed(name="System packages", packages=["apache2", "ufw"],
                                  state=system.packages_snapshot())
    """
    current = state.probe("packages")
    missing = [p for p in packages if p not in current["installed"]]
    if not missing:
        host.noop(f"installed: {', '.join(packages)}")
        return
    if current["index_age"] > APT_CACHE_SECONDS:
        stamp, stamp_dir = shlex.quote(UPDATE_STAMP), shlex.quote(UPDATE_STAMP.rsplit("/", 1)[0])
        yield f"apt-get {APT_OPTIONS} update -q && mkdir -p {stamp_dir} && touch {stamp}"
    given = [line for line in answers or [] if line.split()[0] in missing]
    if given:
        yield StringCommand(
            "printf '%s\\n' " + " ".join(shlex.quote(line) for line in given) + " | debconf-set-selections"
        )
    # needrestart (os_updates) never restarts a service behind the deploy's back: what a run
    # changes it restarts itself; replaced libraries wait for the next unattended upgrade's.
    yield StringCommand(
        f"NEEDRESTART_SUSPEND=1 DEBIAN_FRONTEND=noninteractive apt-get {APT_OPTIONS} -y -q "
        "-o Dpkg::Options::=--force-confdef "
        "-o Dpkg::Options::=--force-confold install " + " ".join(shlex.quote(p) for p in missing)
    )


@deploy("System packages")
def install_packages(needs: Iterable[Callable], answers: Iterable[Callable] = ()):
    """Every concern's distribution packages (``needs``: their ``packages(data)``), in one apt
    transaction; ``answers``: concerns' debconf answers for them (``debconf(data)``)."""
    packages = wanted_packages(host.data, needs)
    given = [line for debconf in answers for line in debconf(host.data)]
    packages_installed(name="Install system packages", packages=packages, state=packages_snapshot(), answers=given)


def shown_report(path: str) -> FunctionCommand:
    """A command for an operation to yield after the script that writes ``path``: when it runs,
    each line of the report is shown in the run's output (a script's own output shows only
    with ``-vvv``). The report is read then, as the host has it after the script."""

    def show():
        report = snapshot.Snapshot(probes={"report": snapshot.FileLines(path)})
        for line in report.probe("report"):
            host.log(line)

    return FunctionCommand(show, (), {})
