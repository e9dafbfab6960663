"""
What scripts/ci-deploy runs once the pinned tools are installed.

    ci_deploy.py [--dry] [INVENTORY]

Deploy mode: ``pyinfra -y --json INVENTORY deploy.py``; any error fails the job. Then the
smoke check (``smoke``) logs in and runs a cell on every host. Drift mode (``--dry``):
``pyinfra --dry`` (without -y, which would skip change detection); any operation that
would change something fails the job, naming host and operation. Both write a short
Markdown summary to stdout and, when set, to ``$GITHUB_STEP_SUMMARY``.

SSH host keys are always checked strictly (``ssh_strict_host_key_checking=yes``): CI must
pin known_hosts, never accept a new key. A self-signed host is smoke-checked over that
verified SSH connection's word only: its certificate and the address it was reached at
(``$SSH_CONNECTION``) are read over it, and the login is sent to that address, trusting
that one certificate and nothing else (``server_name`` goes in SNI and Host), so a stale
DNS record for ``server_name`` cannot receive the password. Let's Encrypt hosts are checked
by name through DNS against the system CAs (plus ``$SMOKE_CA_FILE`` if set, e.g. a private
ACME server's root).
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
from smoke import Verdict, check  # noqa: E402

STRICT = ["--data", "ssh_strict_host_key_checking=yes"]
SYSTEM_CAS = "/etc/ssl/certs/ca-certificates.crt"


def run_pyinfra(*args: str) -> tuple[int, dict | None]:
    """pyinfra with --json: its log goes to our stderr (the CI log), the report is parsed."""
    result = subprocess.run(
        [sys.executable, "-m", "pyinfra", "--json", *STRICT, *args], cwd=ROOT, stdout=subprocess.PIPE, text=True
    )
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
        targets.append(
            {
                "host": host["name"],
                "server_name": data["server_name"] or host["name"],
                "base_url": data["jupyter_base_url"],
                "tls_mode": data["tls_mode"],
            }
        )
    return targets


# Read over each self-signed host's SSH connection: where it was reached, then its certificate.
SELF_SIGNED_PROBE = f'echo "$SSH_CONNECTION"; cat {tls.CERT}'


def probe_self_signed(inventory: str, targets: list[dict]) -> dict[str, str]:
    """host name -> what SELF_SIGNED_PROBE printed there, for the self-signed hosts."""
    names = [t["host"] for t in targets if t["tls_mode"] == "self-signed"]
    if not names:
        return {}
    limits = [arg for name in names for arg in ("--limit", name)]
    _, facts = run_pyinfra(*limits, inventory, "fact", "server.Command", f"command={SELF_SIGNED_PROBE}")
    # {"server.Command (command=...)": {host name: output}}
    by_host = next(iter(facts.values()), {}) if isinstance(facts, dict) else {}
    return {name: by_host.get(name) or "" for name in names}


def smoke_plan(targets: list[dict], probes: dict[str, str], directory: Path) -> list[dict]:
    """Per host: ``check()``'s arguments. Self-signed: its own certificate, its SSH address."""
    public = []
    for extra in (SYSTEM_CAS, os.environ.get("SMOKE_CA_FILE")):
        if extra and Path(extra).is_file():
            public.append(Path(extra).read_text())
    public_bundle = directory / "public-cas.pem"
    public_bundle.write_text("".join(public))
    plans = []
    for number, target in enumerate(targets):
        plan = {
            "target": target["server_name"],
            "path": target["base_url"],
            "ca_file": str(public_bundle),
            "connect_to": None,
            "error": None,
        }
        if target["tls_mode"] == "self-signed":
            first, _, certificate = (probes.get(target["host"]) or "").partition("\n")
            fields = first.split()
            cert_file = directory / f"host-{number}.pem"
            cert_file.write_text(certificate.strip() + "\n")
            plan.update(ca_file=str(cert_file), connect_to=fields[2] if len(fields) == 4 else None)
            if not plan["connect_to"] or "-----BEGIN CERTIFICATE-----" not in certificate:
                plan["error"] = "could not read its certificate and address over SSH"
        plans.append(plan)
    return plans


def smoke(targets: list[dict], inventory: str, password: str, workdir: Path) -> list:
    plans = smoke_plan(targets, probe_self_signed(inventory, targets), workdir)

    def run(plan):
        if plan["error"]:
            return Verdict(plan["target"], ok=False, error=plan["error"])
        return check(plan["target"], password, plan["path"], plan["ca_file"], connect_to=plan["connect_to"])

    with ThreadPoolExecutor(max_workers=min(16, len(plans) or 1)) as pool:
        return list(pool.map(run, plans))


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
    code, report = run_pyinfra(
        *([] if args.dry else ["-y"]), *(["--dry"] if args.dry else []), args.inventory, "deploy.py"
    )
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
