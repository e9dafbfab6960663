"""
What scripts/ci-deploy runs once the pinned tools are installed.

    ci_deploy.py [--dry] [INVENTORY]
    ci_deploy.py [--dry] --shards K [INVENTORY]       K pyinfra processes, one slice each
    ci_deploy.py [--dry] --shard I/K --result FILE [INVENTORY]
    ci_deploy.py --merge DIRECTORY [--shards K]      the report of the slices' result files (K expected)
    ci_deploy.py ... --report FILE                   also the fleet page (one HTML page, a row per host)
    ci_deploy.py --canary N [--shards K] [INVENTORY]  the first N hosts first; the rest only if they pass
    ci_deploy.py --canary N --canary-only --result FILE [INVENTORY]   only the canary (a CI job of its own)
    ci_deploy.py --canary N --shard I/K --result FILE [INVENTORY]     slice I/K of the hosts after the canary

A fleet past one core: ``--shards K`` runs K copies of this script side by side, each with
``--shard I/K`` (its slice of the inventory's hosts, by a hash of their names: shards.py; the
run is pyinfra's with ``--limit`` for each), and merges their results (hosts, changes, errors,
smoke verdicts, exit codes) into one report. On several CI jobs: each runs ``--shard I/K
--result FILE`` and keeps FILE, a last job ``--merge DIRECTORY`` over all of them
(.github/workflows/deploy.yml shows it).

A rollout with a canary (``--canary N``): the inventory's first N hosts are deployed and
smoke-checked first; only when every one of them passes are the others deployed (in one run,
or in K slices with ``--shards K``). Otherwise the run stops with the canary's report and the
other hosts untouched. In CI, a canary job (``--canary-only``) runs before the slices' jobs,
which leave the canary's hosts out (``--canary N --shard I/K``).

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
ACME server's root). A single sign-on host (``auth = 'oidc'``) has no password: it is checked
from outside without one (``smoke.check_single_sign_on``), and its cell runs on the host over
the same SSH connection the deploy uses (``smoke.cell_check_command``, one pyinfra fact run
for all such hosts), so a broken server fails its canary like any other.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import shards
from operations import settings, tls
from smoke import HUB_SMOKE_TOKEN, Verdict, cell_check_command, check, check_per_person, check_single_sign_on

ROOT = Path(__file__).resolve().parent.parent

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
    if code == 0 and hosts is None and os.environ.get("JUPYTER_SHARD"):
        return []  # this slice holds no host (inventory.py said so)
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
                "auth": data["auth"],
                "per_person": data["per_person_servers"],
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


def probe_cells(inventory: str, targets: list[dict]) -> dict[str, str]:
    """host name -> what the cell check printed there, for the single sign-on hosts (one pyinfra
    run per base URL: the command names it)."""
    found: dict[str, str] = {}
    single = [t for t in targets if t.get("auth") == "oidc" and not t.get("per_person")]
    for path in sorted({t["base_url"] for t in single}):
        names = [t["host"] for t in single if t["base_url"] == path]
        limits = [arg for name in names for arg in ("--limit", name)]
        _, facts = run_pyinfra(*limits, inventory, "fact", "server.Command", f"command={cell_check_command(path)}")
        by_host = next(iter(facts.values()), {}) if isinstance(facts, dict) else {}
        found.update({name: by_host.get(name) or "" for name in names})
    return found


def probe_hub_tokens(inventory: str, targets: list[dict]) -> dict[str, str]:
    """host name -> the hub's smoke-check token (root's alone there), for the per-person hosts,
    read over the deploy's SSH connection; kept in memory, never printed."""
    names = [t["host"] for t in targets if t.get("per_person")]
    if not names:
        return {}
    limits = [arg for name in names for arg in ("--limit", name)]
    _, facts = run_pyinfra(*limits, inventory, "fact", "server.Command", f"command=cat {HUB_SMOKE_TOKEN}")
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
            "host": target["host"],
            "single_sign_on": target.get("auth") == "oidc" and not target.get("per_person"),
            "per_person": bool(target.get("per_person")),
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
    cells = probe_cells(inventory, targets)
    tokens = probe_hub_tokens(inventory, targets)

    def run(plan):
        if plan["error"]:
            return Verdict(plan["target"], ok=False, error=plan["error"])
        if plan["per_person"]:
            token = tokens.get(plan["host"], "")
            # The fleet page shows what the distribution runs (people's own servers: smoke --audit).
            return check_per_person(
                plan["target"],
                lambda: token,
                plan["path"],
                plan["ca_file"],
                connect_to=plan["connect_to"],
                people_on_host=lambda: "",
            )
        if plan["single_sign_on"]:
            answer = cells.get(plan["host"], "")
            return check_single_sign_on(
                plan["target"], lambda: answer, plan["path"], plan["ca_file"], connect_to=plan["connect_to"]
            )
        if not password:
            return Verdict(plan["target"], ok=False, error=f"{settings.PASSWORD_ENV} is not set: no login to check")
        return check(plan["target"], password, plan["path"], plan["ca_file"], connect_to=plan["connect_to"], audit=True)

    with ThreadPoolExecutor(max_workers=min(16, len(plans) or 1)) as pool:
        return list(pool.map(run, plans))


def chosen(targets: list[dict], shard: str | None = None, canary: int = 0, canary_only: bool = False) -> list[dict]:
    """The hosts one run deploys, in inventory order: the first ``canary`` of them
    (``canary_only``), else the ones after them, cut to slice ``shard`` (``I/K``)."""
    picked = targets[:canary] if canary_only else targets[canary:]
    if shard:
        index, count = shards.parse(shard)
        picked = [t for t in picked if shards.slice_of(t["host"], count) == index]
    return picked


def deploy(
    inventory: str, dry: bool, password: str, shard: str | None = None, canary: int = 0, canary_only: bool = False
) -> dict:
    """One pyinfra run over ``inventory``, or over the hosts ``chosen`` (pyinfra's ``--limit``
    for each), and its smoke check: the result the report is made of (JSON-able, so slices
    can be merged)."""
    everything = smoke_targets(inventory)
    targets = chosen(everything, shard, canary, canary_only)
    limits: list[str] = []
    if len(targets) < len(everything):
        limits = [arg for t in targets for arg in ("--limit", t["host"])]
    if shard:
        index, count = shards.parse(shard)
        print(f"ci-deploy: slice {index}/{count}: {len(targets)} host(s)", file=sys.stderr)
    if canary_only:
        print(f"ci-deploy: canary: {len(targets)} host(s) first", file=sys.stderr)
    result = {
        "dry": dry,
        "canary": canary_only,
        "others": len(everything) - len(targets),
        "hosts": [t["host"] for t in targets],
        "changes": {},
        "errors": {},
        "smoke": [],
        "seconds": 0.0,
    }
    if not targets:
        return {**result, "code": 0, "reported": True}
    started = time.monotonic()
    code, report = run_pyinfra(*([] if dry else ["-y"]), *(["--dry"] if dry else []), *limits, inventory, "deploy.py")
    result.update(code=code, reported=report is not None, seconds=time.monotonic() - started)
    if report is None:
        return result
    result["changes"], result["errors"] = changes_by_host(report, dry), errors_by_host(report)
    for name in (report.get("results") or {}).get("failed_hosts", []):
        result["errors"].setdefault(name, "connecting or preparing (see the log above)")
    if not result["errors"]:
        with tempfile.TemporaryDirectory() as workdir:
            verdicts = smoke(targets, inventory, password, Path(workdir))
        # The whole verdict too: the fleet page (--report) of one run or of merged slices.
        result["smoke"] = [{"line": v.line(), "ok": v.ok, "verdict": dataclasses.asdict(v)} for v in verdicts]
    return result


def passed(result: dict) -> bool:
    """Every host of one run deployed without error and passed the smoke check."""
    smoke_ok = all(v["ok"] for v in result["smoke"]) and (result["smoke"] or not result["hosts"])
    return result["reported"] and result["code"] == 0 and not result["errors"] and bool(smoke_ok)


def report(results: list[dict], dry: bool) -> tuple[str, bool]:
    """The Markdown summary of one run or of several slices' runs, and whether it failed."""
    lines = [f"## {'Jupyter drift check' if dry else 'Jupyter deploy'}", ""]
    canaries = [r for r in results if r.get("canary")]
    slices = [r for r in results if not r.get("canary") and "stopped" not in r]
    if canaries:
        hosts = ", ".join(name for r in canaries for name in r["hosts"]) or "no host"
        lines += [f"Canary: {hosts}, deployed and smoke-checked before the others.", ""]
    if len(slices) > 1:
        lines += [f"{len(slices)} slices of the inventory, deployed side by side.", ""]
    failed = False
    rows = []
    for result in results:
        if "stopped" in result:
            rows.append(f"**{result['stopped']}**")
            failed = True
            continue
        if not result["reported"]:
            unreported = f"pyinfra failed (exit {result['code']}) before it could report: see the log above."
            rows.append(result.get("why") or unreported)
            # pyinfra reports nothing when every host of its run failed ("No hosts remaining!").
            rows += [f"| {name} | **failed: no report from pyinfra, see the log above** |" for name in result["hosts"]]
            failed = True
            continue
        for name in result["hosts"]:
            what = ", ".join(cell(op) for op in result["changes"].get(name, [])) or "nothing"
            if name in result["errors"]:
                what += f"; **failed at: {cell(result['errors'][name])}**"
            rows.append(f"| {name} | {what} |")
        failed = failed or result["code"] != 0 or bool(result["errors"])
    table = [row for row in rows if row.startswith("|")]
    if table:
        lines += [f"| host | {'would change' if dry else 'changed'} |", "|---|---|", *table]
    lines += [row for row in rows if not row.startswith("|")]
    codes = ", ".join(str(r["code"]) for r in results if "stopped" not in r)
    # The canary runs before the others; slices run side by side.
    slowest = sum(r["seconds"] for r in canaries) + max((r["seconds"] for r in slices), default=0.0)
    lines += ["", f"pyinfra exit {codes} in {slowest:.1f} s."]
    drifted = sum(len(r["changes"]) for r in results)
    if dry and drifted:
        lines.append(f"Drift: {drifted} host(s) differ from what the deploy makes; a deploy run converges them.")
        failed = True
    verdicts = [v for r in results for v in r["smoke"]]
    if verdicts:
        lines += ["", "Smoke check (login, one cell in a fresh kernel):", "", "```"]
        lines += [v["line"] for v in verdicts] + ["```"]
        failed = failed or not all(v["ok"] for v in verdicts)
    lines += ["", "**FAILED**" if failed else "**OK**"]
    return "\n".join(lines) + "\n", failed


def write_fleet_page(results: list[dict], path: Path) -> None:
    """The fleet page (smoke/report.py) of every host of ``results``: as smoke-checked, or failed
    by the deploy before it (what failed); a result from before the page existed (a line only)
    is shown as its line."""
    from smoke.report import page

    verdicts = []
    for result in results:
        errors = result.get("errors", {})
        if not result.get("reported", True):
            errors = {name: "no report from pyinfra (see the job's log)" for name in result.get("hosts", [])}
        for name, what in sorted(errors.items()):
            verdicts.append(Verdict(name, ok=False, error=f"the deploy failed at: {what}"))
        for entry in result.get("smoke", []):
            said = entry.get("verdict")
            if isinstance(said, dict):
                fields = {f.name for f in dataclasses.fields(Verdict)}
                verdicts.append(Verdict(**{k: v for k, v in said.items() if k in fields}))
            else:
                verdicts.append(Verdict(entry.get("line", "?"), ok=bool(entry.get("ok")), error=entry.get("line", "")))
    path.write_text(page(verdicts), encoding="utf-8")
    print(f"ci-deploy: the fleet page is {path}", file=sys.stderr)


def run_shards(count: int, inventory: str, dry: bool, canary: int = 0) -> list[dict]:
    """``count`` copies of this script side by side, one slice each (of the hosts after the
    first ``canary``); their results."""
    with tempfile.TemporaryDirectory() as directory:
        runs = []
        for index in range(1, count + 1):
            result_file = Path(directory) / f"shard-{index}.json"
            command = [sys.executable, "-m", "scripts.ci_deploy", "--shard", f"{index}/{count}"]
            command += ["--canary", str(canary)] if canary else []
            command += ["--result", str(result_file), *(["--dry"] if dry else []), inventory]
            # Only the merged report goes to the job's summary.
            env = {k: v for k, v in os.environ.items() if k != "GITHUB_STEP_SUMMARY"}
            runs.append((subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL), result_file))
        for process, _ in runs:
            process.wait()
        return [read_result(result_file) for _, result_file in runs]


def read_result(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return {"hosts": [], "changes": {}, "errors": {}, "smoke": [], "seconds": 0.0, "code": 1, "reported": False}


def stopped_result() -> dict:
    """A run that did not happen (a report line of its own)."""
    return {"hosts": [], "changes": {}, "errors": {}, "smoke": [], "seconds": 0.0}


def canary_stopped(others: int) -> dict:
    """The result standing for the runs a failed canary stopped: it says how many hosts they had."""
    return {**stopped_result(), "stopped": f"Canary failed: the other {others} host(s) were not deployed."}


def roll_out(canary: int, shard_count: int | None, inventory: str, password: str) -> list[dict]:
    """The canary's run; the others' runs only when it passed, else a line saying they were not."""
    first = deploy(inventory, False, password, canary=canary, canary_only=True)
    if not passed(first):
        return [first, canary_stopped(first["others"])]
    if shard_count and shard_count > 1:
        return [first, *run_shards(shard_count, inventory, False, canary)]
    return [first, deploy(inventory, False, password, canary=canary)]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="scripts/ci-deploy")
    parser.add_argument("--dry", action="store_true", help="drift check: fail if a deploy would change anything")
    parser.add_argument(
        "--shards", type=int, help="deploy K slices of the inventory side by side (with --merge: K results expected)"
    )
    parser.add_argument("--shard", help="deploy only slice I/K of the inventory")
    parser.add_argument("--result", help="with --shard: write this slice's result (JSON) here")
    parser.add_argument("--merge", help="report the slices' result files in this directory")
    parser.add_argument(
        "--canary",
        type=int,
        default=0,
        metavar="N",
        help="deploy and smoke-check the inventory's first N hosts first, the others only if they pass",
    )
    parser.add_argument(
        "--canary-only", action="store_true", help="with --canary N: deploy only those N hosts (a CI job of its own)"
    )
    parser.add_argument(
        "--report",
        metavar="FILE",
        help="also write the fleet page (smoke --report's HTML page) of the hosts smoke-checked (a CI artifact)",
    )
    parser.add_argument("inventory", nargs="?", default="inventory.py")
    args = parser.parse_args(argv)
    if args.canary < 0 or (args.canary_only and not args.canary):
        parser.error("--canary takes a number of hosts, 1 or more (and --canary-only needs it)")
    if args.canary and (args.dry or args.merge):
        parser.error("--canary goes with a deploy (not --dry or --merge)")
    if args.canary_only and (args.shard or args.shards):
        parser.error("--canary-only deploys the canary alone: no --shard or --shards with it")
    if args.merge:
        results = [read_result(path) for path in sorted(Path(args.merge).glob("**/*.json"))]
        if not results:
            print(f"ci-deploy: no result file in {args.merge}", file=sys.stderr)
            return 2
        canaries = [r for r in results if r.get("canary")]
        slices = len(results) - len(canaries)
        if any(not passed(r) for r in canaries) and not slices:
            # The canary's job failed, so the slices' jobs never ran.
            results.append(canary_stopped(max(r.get("others", 0) for r in canaries)))
        elif args.shards and slices < args.shards:
            # A slice whose job died before writing its result: the run failed, say so.
            missing = args.shards - slices
            why = f"{missing} of {args.shards} slices left no result: see their jobs."
            results.append({**read_result(Path(args.merge) / "missing"), "why": why})
    else:
        password = os.environ.get(settings.PASSWORD_ENV, "")
        if not password and not os.environ.get(settings.OIDC_CLIENT_SECRET_ENV):
            print(
                f"ci-deploy: {settings.PASSWORD_ENV} is not set (a repository secret in CI; a fleet on single "
                f"sign-on sets {settings.OIDC_CLIENT_SECRET_ENV} instead)",
                file=sys.stderr,
            )
            return 2
        if args.canary and not args.canary_only and not args.shard:
            results = roll_out(args.canary, args.shards, args.inventory, password)
        elif args.shards and args.shards > 1:
            results = run_shards(args.shards, args.inventory, args.dry)
        else:
            if args.shard:
                try:
                    shards.parse(args.shard)
                except ValueError as error:
                    print(f"ci-deploy: --shard {error}", file=sys.stderr)
                    return 2
            results = [deploy(args.inventory, args.dry, password, args.shard, args.canary, args.canary_only)]
            if args.result:
                Path(args.result).write_text(json.dumps(results[0]))
    summary, failed = report(results, args.dry or any(r.get("dry") for r in results))
    print(summary, flush=True)
    if args.report:
        write_fleet_page(results, Path(args.report))
    if os.environ.get("GITHUB_STEP_SUMMARY"):
        with open(os.environ["GITHUB_STEP_SUMMARY"], "a") as out:
            out.write(summary)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
