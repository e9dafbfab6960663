"""
What scripts/ci-deploy runs once the pinned tools are installed.

    ci_deploy.py [--dry] [INVENTORY]

Deploy mode: ``pyinfra -y --json INVENTORY deploy.py``; any error fails the job. Then the
smoke check (``smoke``) logs in and runs a cell on every host. Drift mode (``--dry``):
``pyinfra --dry`` (without -y, which would skip change detection); any operation that
would change something fails the job, naming host and operation. Both write a short
Markdown summary to stdout and, when set, to ``$GITHUB_STEP_SUMMARY``.

SSH host keys are always checked strictly (``ssh_strict_host_key_checking=yes``): CI must
pin known_hosts, never accept a new key. Self-signed hosts are smoke-checked against the
certificate read from the host over that SSH connection; others against the system CAs
(plus ``$SMOKE_CA_FILE`` if set, e.g. a private ACME server's root).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from operations import settings, tls  # noqa: E402
from smoke import check  # noqa: E402

STRICT = ["--data", "ssh_strict_host_key_checking=yes"]
SYSTEM_CAS = "/etc/ssl/certs/ca-certificates.crt"


def run_pyinfra(*args: str) -> tuple[int, dict | None]:
    """pyinfra with --json: its log goes to our stderr (the CI log), the report is parsed."""
    result = subprocess.run([sys.executable, "-m", "pyinfra", "--json", *STRICT, *args], cwd=ROOT,
                            stdout=subprocess.PIPE, text=True)
    try:
        return result.returncode, json.loads(result.stdout)
    except json.JSONDecodeError:
        return result.returncode, None


def changes_by_host(report: dict, dry: bool) -> dict[str, list[str]]:
    changes: dict[str, list[str]] = {}
    if dry:
        # Conditional operations (reload, restart) only follow a change on the same host.
        for op in report.get("plan", []):
            for name in op["hosts_with_change"]:
                changes.setdefault(name, []).append(op["name"])
    else:
        for op in (report.get("results") or {}).get("operations", []):
            for name in op["success"]:
                changes.setdefault(name, []).append(op["name"])
    return changes


def errors_by_host(report: dict) -> dict[str, str]:
    """The first failed operation of each host (pyinfra lists every later one as an error too)."""
    errors: dict[str, str] = {}
    for op in (report.get("results") or {}).get("operations", []):
        for name in op.get("error", []):
            errors.setdefault(name, op["name"])
    return errors


def cell(text: str) -> str:
    # pyinfra names operations "Deploy | Operation": a bare | would split a Markdown table cell.
    return text.replace("|", "\\|")


def smoke_targets(inventory: str) -> list[dict]:
    """Each host's URL and TLS mode, from pyinfra's own view of the inventory and group_data."""
    code, hosts = run_pyinfra(inventory, "debug-inventory")
    if code != 0 or not isinstance(hosts, list):
        raise SystemExit(f"ci-deploy: pyinfra could not load the inventory {inventory} (exit {code}): see above")
    targets = []
    for host in hosts:
        data = {**settings.DEFAULTS, **{k: v for k, v in host["data"].items() if k in settings.DEFAULTS}}
        targets.append({"host": host["name"], "server_name": data["server_name"] or host["name"],
                        "base_url": data["jupyter_base_url"], "tls_mode": data["tls_mode"]})
    return targets


def trust_bundle(inventory: str, targets: list[dict], directory: Path) -> Path:
    """System CAs + $SMOKE_CA_FILE + the self-signed certificate of each self-signed host."""
    parts = []
    for extra in (SYSTEM_CAS, os.environ.get("SMOKE_CA_FILE")):
        if extra and Path(extra).is_file():
            parts.append(Path(extra).read_text())
    self_signed = [t["host"] for t in targets if t["tls_mode"] == "self-signed"]
    if self_signed:
        limits = [arg for name in self_signed for arg in ("--limit", name)]
        code, facts = run_pyinfra(*limits, inventory, "fact", "files.FileContents", f"path={tls.CERT}")
        # {"files.FileContents (path=...)": {host name: [lines]}}
        by_host = next(iter(facts.values()), {}) if isinstance(facts, dict) else {}
        for name in self_signed:
            lines = by_host.get(name) or []
            parts.append("\n".join(lines) + "\n")
    bundle = directory / "trust.pem"
    bundle.write_text("".join(parts))
    return bundle


def smoke(targets: list[dict], inventory: str, password: str, workdir: Path) -> list:
    bundle = trust_bundle(inventory, targets, workdir)
    with ThreadPoolExecutor(max_workers=min(16, len(targets) or 1)) as pool:
        return list(pool.map(lambda t: check(t["server_name"], password, t["base_url"], str(bundle)), targets))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="scripts/ci-deploy")
    parser.add_argument("--dry", action="store_true", help="drift check: fail if a deploy would change anything")
    parser.add_argument("inventory", nargs="?", default="inventory.py")
    args = parser.parse_args(argv)
    password = os.environ.get(settings.PASSWORD_ENV, "")
    if not password:
        print(f"ci-deploy: {settings.PASSWORD_ENV} is not set (a repository secret in CI)", file=sys.stderr)
        return 2

    targets = smoke_targets(args.inventory)
    started = time.monotonic()
    code, report = run_pyinfra(*([] if args.dry else ["-y"]), *(["--dry"] if args.dry else []),
                               args.inventory, "deploy.py")
    seconds = time.monotonic() - started
    lines = [f"## {'Jupyter drift check' if args.dry else 'Jupyter deploy'}", ""]
    if report is None:
        lines.append(f"pyinfra failed (exit {code}) before it could report: see the log above.")
        changes, errors = {}, {}
    else:
        changes, errors = changes_by_host(report, args.dry), errors_by_host(report)
        for name in (report.get("results") or {}).get("failed_hosts", []):
            errors.setdefault(name, "connecting or preparing (see the log above)")
        lines += [f"| host | {'would change' if args.dry else 'changed'} |", "|---|---|"]
        for name in [t["host"] for t in targets]:
            what = ", ".join(cell(op) for op in changes.get(name, [])) or "nothing"
            if name in errors:
                what += f"; **failed at: {cell(errors[name])}**"
            lines.append(f"| {name} | {what} |")
        lines += ["", f"pyinfra exit {code} in {seconds:.1f} s."]
    failed = code != 0 or report is None or bool(errors)
    if args.dry and changes:
        lines.append(f"Drift: {len(changes)} host(s) differ from what the deploy makes; a deploy run converges them.")
        failed = True

    if report is not None and not errors:
        with tempfile.TemporaryDirectory() as workdir:
            verdicts = smoke(targets, args.inventory, password, Path(workdir))
        lines += ["", "Smoke check (login, one cell in a fresh kernel):", "", "```"]
        lines += [v.line() for v in verdicts] + ["```"]
        failed = failed or not all(v.ok for v in verdicts)

    lines += ["", "**FAILED**" if failed else "**OK**"]
    summary = "\n".join(lines) + "\n"
    print(summary, flush=True)
    if os.environ.get("GITHUB_STEP_SUMMARY"):
        with open(os.environ["GITHUB_STEP_SUMMARY"], "a") as out:
            out.write(summary)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
