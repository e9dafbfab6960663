"""
The smoke check's audit (``python -m smoke --audit``): which server each host runs, and the
published advisories for it.

Each host says, to a signed-in client, its distribution, its Python, and the versions of the
server's own packages as the server runs them and as they are installed now
(``files/jupyter_activity.py``, ``jupyter-deploy/versions`` under the base URL). They differ
while a restart is owed; advisories are looked up for what runs, since that is what answers
requests. The look-up is pip-audit's (its PyPI service: PyPI's vulnerability data, one request
per package version), from the machine running the check: the hosts need no access to PyPI.

A host fails when the server it runs has an advisory whose ID (or an alias of it) is not in the
ignore list, or when an advisory could not be looked up: an audit that could not look is not a
pass. Ignored advisories stay in the report, marked so.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from packaging.version import InvalidVersion, Version
from pip_audit._service import PyPIService, ResolvedDependency, VulnerabilityService

# The packages whose advisories count, in the order the report lists them.
AUDITED = ("notebook", "jupyter-server", "jupyterlab", "tornado", "jupyter-resource-usage")
LOOKUPS_AT_ONCE = 8


@dataclass(frozen=True)
class Advisory:
    id: str
    aliases: tuple[str, ...]
    summary: str
    fixed: tuple[str, ...]

    def ids(self) -> set[str]:
        return {self.id, *self.aliases}


def advisory_service(timeout: float) -> VulnerabilityService:
    """Where advisories come from: PyPI, through pip-audit (the tests hand pip-audit's own
    service a stand-in of PyPI's answers: tests/advisory_feed.py)."""
    return PyPIService(timeout=int(timeout))


def look_up(packages: set[tuple[str, str]], timeout: float) -> dict[tuple[str, str], list[Advisory] | str]:
    """Advisories for each (name, version); a string says why there are none to show."""
    service = advisory_service(timeout)

    def one(package: tuple[str, str]):
        name, version = package
        try:
            dependency = ResolvedDependency(name=name, version=Version(version))
            answered, results = service.query(dependency)
        except InvalidVersion:
            return package, f"{name} {version!r} is not a version to look up"
        except Exception as error:  # a network or service failure: one line, per package
            return package, f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"[:200]
        if answered.is_skipped():
            return package, answered.skip_reason
        return package, [
            Advisory(
                id=result.id,
                aliases=tuple(sorted(result.aliases)),
                summary=result.description,
                fixed=tuple(str(version) for version in result.fix_versions),
            )
            for result in results
        ]

    with ThreadPoolExecutor(max_workers=LOOKUPS_AT_ONCE) as pool:
        return dict(pool.map(one, sorted(packages)))


def packages_to_look_up(report: dict) -> set[tuple[str, str]]:
    running = report.get("running", {})
    return {(name, running[name]) for name in AUDITED if name in running}


def judge(report: dict, advisories: dict, ignored: set[str]) -> tuple[list[str], list[str]]:
    """(report lines, problems) for one host's versions report and the looked-up advisories."""
    lines, problems = judge_packages(report.get("running", {}), report.get("installed", {}), advisories, ignored)
    return [f"{report.get('distribution', 'unknown')}, Python {report.get('python', 'unknown')}", *lines], problems


def judge_packages(
    running: dict[str, str], installed: dict[str, str], advisories: dict, ignored: set[str]
) -> tuple[list[str], list[str]]:
    """(lines, problems) for one server: what it runs (and what is installed instead, while a
    restart is owed), with the advisories for what runs."""
    lines, problems = [], []
    for name in AUDITED:
        if name not in running:
            continue
        version = running[name]
        line = f"{name} {version} running"
        if installed.get(name, version) != version:
            line += f" ({installed[name]} installed: the owed restart applies it)"
        lines.append(line)
        found = advisories.get((name, version), [])
        if isinstance(found, str):
            problems.append(f"advisories for {name} {version} could not be looked up ({found})")
            continue
        for advisory in found:
            fixed = ", ".join(advisory.fixed) or "none yet"
            skip = advisory.ids() & ignored
            mark = f"ignored ({', '.join(sorted(skip))})" if skip else "ADVISORY"
            also = f" (also {', '.join(advisory.aliases)})" if advisory.aliases else ""
            lines.append(f"  {mark} {advisory.id}{also} {name} {version}: {advisory.summary[:160]} (fixed in {fixed})")
            if not skip:
                problems.append(f"{advisory.id}{also} for the running {name} {version} (fixed in {fixed})")
    return lines, problems
