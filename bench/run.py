"""
The benchmark: how fast a fleet converges, how cheap a no-op run is, what the proxy costs.

    sudo .venv/bin/python -m bench.run                 # everything (about 15 minutes)
    sudo .venv/bin/python -m bench.run --repeat 1 --only noop,proxy

Needs what the real-host tests need (root, the lab; `.ci/run` installs it). Boots its own
lab hosts (Debian 12), so never run it beside the test suite. Prints one table (median,
min, max of --repeat runs) and writes bench/results/<date>.json. See bench/README.md.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import re
import socket
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

from bench import proxy
from lab import Lab, standin
from lab.config import CACHE

ROOT = Path(__file__).resolve().parents[1]

PASSWORD = "bench password, not secret"
# Which deploy an operation belongs to, by the deploy's name (pyinfra's "Deploy | Operation").
PHASES = {
    "System packages": "apt",
    "Conda distribution": "installer",
    "Jupyter Notebook service": "jupyter",
    "TLS certificate": "apache",
    "Let's Encrypt certificate": "apache",
    "Apache reverse proxy": "apache",
    "Firewall": "firewall",
    "Login ban": "login ban",
    "Backups": "backups",
    "Fleet packages": "fleet packages",
    "Host checks": "host checks",
}
OP_START = re.compile(r"^--> Starting operation: (.+?) \| ")
COMMAND = re.compile(r"^\s*\[([^\]]+)\] >>> ")


def write_inventory(lab, names, installer_url, digest, path: Path) -> Path:
    data = {"conda_installer_url": installer_url, "conda_installer_sha256": digest}
    return lab.write_inventory(path, {lab.hosts[n].ip: data for n in names})


def run_pyinfra(inventory: Path, count_commands: bool = False) -> dict:
    """The real CLI; returns wall time, time per phase, changes and (-vv) remote commands per host."""
    argv = [
        sys.executable,
        "-m",
        "pyinfra",
        "-y",
        "--json",
        *(["-vv"] if count_commands else []),
        str(inventory),
        "deploy.py",
    ]
    started = time.monotonic()
    process = subprocess.Popen(
        argv,
        cwd=ROOT,
        env=dict(os.environ, JUPYTER_PASSWORD=PASSWORD),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    marks, commands = [("connect+plan", started)], {}
    # Remote commands per host and concern (pyinfra's deploy name; "planning" before the first operation).
    concern, by_concern = "planning", {}
    stdout = []
    reader = threading.Thread(target=lambda: stdout.append(process.stdout.read()))
    reader.start()
    for line in process.stderr:
        match = OP_START.match(line)
        if match:
            concern = match.group(1)
            phase = PHASES.get(match.group(1), match.group(1))
            if phase != marks[-1][0]:
                marks.append((phase, time.monotonic()))
        elif count_commands and (match := COMMAND.match(line)):
            commands[match.group(1)] = commands.get(match.group(1), 0) + 1
            per_host = by_concern.setdefault(match.group(1), {})
            per_host[concern] = per_host.get(concern, 0) + 1
    process.wait()
    reader.join()
    ended = time.monotonic()
    phases: dict[str, float] = {}
    for (phase, at), (_, until) in zip(marks, marks[1:] + [("end", ended)], strict=True):
        phases[phase] = phases.get(phase, 0) + until - at
    report = json.loads(stdout[0]) if stdout and stdout[0].strip() else {}
    results = report.get("results") or {}
    operations = results.get("operations", [])
    return {
        "seconds": ended - started,
        "returncode": process.returncode,
        "phases": phases,
        "changed": results.get("totals", {}).get("success"),
        "operations_per_host": len(operations)
        and sum(op["hosts"] for op in operations)
        / max(1, len({h for op in operations for h in op["success"] + op["no_change"] + op["error"]})),
        "commands_per_host": commands,
        "commands_per_concern": by_concern,
    }


def spread(values) -> dict:
    values = [v for v in values if v is not None]
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "n": len(values)}


def bench_fleet(repeat: int, parts: set[str]) -> tuple[dict, dict]:
    """Fresh 1-host and 3-host deploys on new hosts each round, then no-op re-runs of both."""
    installer, digest = standin.build(CACHE / "standin")
    runs: dict[str, list[dict]] = {"fresh-1": [], "fresh-3": [], "noop-1": [], "noop-3": []}
    kept = {}
    work = Path(os.environ.get("TMPDIR", "/tmp")) / "jupyter-deploy-bench"
    work.mkdir(exist_ok=True)
    for round_ in range(repeat):
        last = round_ == repeat - 1
        with Lab([(f"b{i}", "bookworm") for i in range(1, 5)], files=installer.parent, log=lambda m: None) as lab:
            url = lab.url(installer.name)
            one = write_inventory(lab, ["b1"], url, digest, work / "one.py")
            three = write_inventory(lab, ["b2", "b3", "b4"], url, digest, work / "three.py")
            for key, inventory in (("fresh-1", one), ("fresh-3", three)):
                result = run_pyinfra(inventory)
                assert result["returncode"] == 0, f"{key} deploy failed"
                runs[key].append(result)
                print(f"  round {round_ + 1}: {key} {result['seconds']:.1f} s", file=sys.stderr)
            for key, inventory in (("noop-1", one), ("noop-3", three)):
                for _ in range(3):
                    runs[key].append(run_pyinfra(inventory, count_commands=True))
                print(f"  round {round_ + 1}: {key} {runs[key][-1]['seconds']:.1f} s", file=sys.stderr)
            if last and "proxy" in parts:
                kept["proxy"] = proxy.measure(lab, lab.hosts["b1"], PASSWORD)
    summary = {}
    for key, results in runs.items():
        summary[key] = {"seconds": spread([r["seconds"] for r in results])}
        if key.startswith("fresh"):
            phases = {p for r in results for p in r["phases"]}
            summary[key]["phases"] = {p: spread([r["phases"].get(p, 0) for r in results]) for p in sorted(phases)}
        else:
            per_host = [c for r in results for c in r["commands_per_host"].values()]
            summary[key]["changed"] = spread([r["changed"] for r in results])
            summary[key]["commands_per_host"] = spread(per_host)
            summary[key]["operations_per_host"] = spread([r["operations_per_host"] for r in results])
            concerns = {c: None for r in results for h in r["commands_per_concern"].values() for c in h}
            summary[key]["commands_per_concern"] = {
                c: spread([h.get(c, 0) for r in results for h in r["commands_per_concern"].values()]) for c in concerns
            }
    summary["parallel_efficiency"] = summary["fresh-3"]["seconds"]["median"] / summary["fresh-1"]["seconds"]["median"]
    return summary, kept.get("proxy", {})


def bench_fake(sizes: list[int], shards: list[int]) -> dict:
    """The real CLI over N @fake hosts: default parallelism, --parallel N, and the same over K
    slices side by side for each of ``shards`` (bench/fake_fleet.py)."""
    out = {}
    for size in sizes:
        runs = [(None, 1), (size, 1)] + [(size // count, count) for count in shards if count > 1]
        for parallel, count in runs:
            result = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "bench.fake_fleet",
                    str(size),
                    *(["--parallel", str(parallel)] if parallel else []),
                    *(["--shards", str(count)] if count > 1 else []),
                ],
                cwd=ROOT,
                capture_output=True,
                text=True,
                timeout=1800,
            )
            assert result.returncode == 0, result.stderr[-3000:]
            key = f"{size}" + (f" --parallel {parallel}" if parallel else "")
            key += f" --shards {count}" if count > 1 else ""
            out[key] = json.loads(result.stdout)
            print(f"  fake fleet {key}: {out[key]['seconds']:.1f} s", file=sys.stderr)
    return out


def table(results: dict) -> str:
    rows = ["| measure | median | min | max |", "|---|---|---|---|"]

    def row(name, s, unit="s", fmt="{:.1f}"):
        rows.append(f"| {name} | {fmt.format(s['median'])} {unit} | {fmt.format(s['min'])} | {fmt.format(s['max'])} |")

    fleet = results.get("fleet", {})
    for key, label in (("fresh-1", "fresh deploy, 1 host"), ("fresh-3", "fresh deploy, 3 hosts in one run")):
        if key in fleet:
            row(label, fleet[key]["seconds"])
            for phase, s in fleet[key]["phases"].items():
                row(f"&nbsp;&nbsp;{phase}", s)
    if "parallel_efficiency" in fleet:
        rows.append(f"| parallel efficiency t(3)/t(1) | {fleet['parallel_efficiency']:.2f} | | |")
    for key, label in (("noop-1", "no-op run, 1 host"), ("noop-3", "no-op run, 3 hosts")):
        if key in fleet:
            row(label, fleet[key]["seconds"], fmt="{:.2f}")
            row("&nbsp;&nbsp;changed operations", fleet[key]["changed"], unit="", fmt="{:.0f}")
            row("&nbsp;&nbsp;operations per host", fleet[key]["operations_per_host"], unit="", fmt="{:.0f}")
            row("&nbsp;&nbsp;remote commands per host", fleet[key]["commands_per_host"], unit="", fmt="{:.0f}")
            ops, cmds = fleet[key]["operations_per_host"]["median"], fleet[key]["commands_per_host"]["median"]
            rows.append(f"| &nbsp;&nbsp;commands per operation | {cmds / ops:.2f} | | |")
            for concern, spread_ in fleet[key].get("commands_per_concern", {}).items():
                row(f"&nbsp;&nbsp;&nbsp;&nbsp;commands: {concern}", spread_, unit="", fmt="{:.0f}")
    for name, figures in results.get("proxy", {}).get("figures", {}).items():
        rows.append(f"| {name} | {figures} | | |")
    for figures in results.get("fake", {}).values():
        parallel = figures["parallel"]
        parallelism = "default parallelism" if parallel == "default" else f"--parallel {parallel}"
        if figures.get("shards", 1) > 1:
            parallelism += f" in each of {figures['shards']} slices side by side"
        rows.append(
            f"| pyinfra -y, {figures['hosts']} @fake hosts, 50 ms/command, no-op, {parallelism} "
            f"| {figures['seconds']:.1f} s, "
            f"peak {figures['peak_rss_mib']:.0f} MiB, {figures['changed']} changed | | |"
        )
    return "\n".join(rows)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="bench/run.py")
    parser.add_argument("--repeat", type=int, default=3, help="rounds of fresh hosts (default 3)")
    parser.add_argument("--only", default="fleet,proxy,fake", help="comma list of: fleet, proxy, fake")
    parser.add_argument("--fake-sizes", default="100,500")
    parser.add_argument("--fake-shards", default="2", help="also run the fake fleets over this many slices")
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        print("bench: needs root (it boots lab hosts)", file=sys.stderr)
        return 2
    parts = set(args.only.split(","))
    results: dict = {
        "date": datetime.date.today().isoformat(),
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "kernel": platform.release(),
            "memory_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30),
            "host": socket.gethostname(),
        },
        "repeat": args.repeat,
    }
    if parts & {"fleet", "proxy"}:
        results["fleet"], results["proxy"] = bench_fleet(args.repeat, parts)
    if "fake" in parts:
        results["fake"] = bench_fake(
            [int(s) for s in args.fake_sizes.split(",")], [int(k) for k in args.fake_shards.split(",") if k]
        )
    out = ROOT / "bench" / "results" / f"{results['date']}.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(table(results))
    print(f"\nwritten to {out.relative_to(ROOT)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
