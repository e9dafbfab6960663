"""
    python -m smoke [--base-url /jupyter/] [--ca-file FILE] [--timeout S] [--resolve NAME:ADDRESS]
                    [--ssh-user USER] [--ssh-key FILE] [--ssh-known-hosts FILE]
                    [--audit [--ignore-vuln ID ...]] [--report FILE] HOST [HOST ...]

HOST is a server name or address (``https://HOST/jupyter/`` is checked) or a full
https:// URL. The password comes from $JUPYTER_PASSWORD; with an Apache Basic-auth
layer, also set $JUPYTER_BASIC_AUTH_USER and $JUPYTER_BASIC_AUTH_PASSWORD.
Certificates are verified against the system's CAs, or only against --ca-file.
--resolve NAME:ADDRESS (repeatable) connects to ADDRESS for HOST NAME instead of what DNS
says, keeping NAME for SNI, Host and the certificate check (like curl's --resolve).
A single sign-on host (auth 'oidc': its page sends the browser to the provider) needs no
password: it is checked from outside, and its cell runs on the host itself over SSH
(--ssh-user, root by default, --ssh-key, --ssh-known-hosts: the deploy's own SSH access).
A host with per-person servers (JupyterHub) is checked through Apache with the hub's
smoke-check token, read over SSH the same way: the check account's server is started, runs
the cell and is stopped.
--audit also reports each host's distribution, Python and the versions of notebook,
jupyter-server, jupyterlab, tornado and jupyter-resource-usage the server runs (and what is
installed, when a restart is owed), with every published advisory for them (pip-audit's PyPI
look-up). A host with an advisory fails, unless its ID or an alias is given to --ignore-vuln.
On a host with per-person servers it reports the distribution (as the check account's server
runs it) and, over SSH, each person's running server: what it runs, what is installed instead
while its restart is owed, and the advisories for what it runs.
--report FILE also writes the fleet page (smoke/report.py): one self-contained HTML page, a row
per host (answered, OS release, kernel and a reboot owed, updates pending, the server's Python
and packages, advisories with --audit, certificate days, last backup, a Jupyter restart owed,
memory), failures first; the hosts are asked which versions they run, as --audit does.
Exit code: 0 all hosts passed, 1 any host failed, 2 usage error.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlsplit

from . import (
    HUB_SMOKE_TOKEN,
    PEOPLE_ANSWERS_COMMAND,
    Verdict,
    audit,
    base_url,
    cell_check_command,
    check,
    check_per_person,
    check_single_sign_on,
    is_per_person,
    is_single_sign_on,
    over_ssh,
)

EPILOG = """\
environment:
  JUPYTER_PASSWORD             the notebook password (hosts with auth 'password')
  JUPYTER_BASIC_AUTH_USER      with an Apache Basic-auth layer in front: its user
  JUPYTER_BASIC_AUTH_PASSWORD  ... and its password

A self-signed host is checked with --ca-file and its certificate, /etc/ssl/certs/jupyter-apache.crt
on the host. A single sign-on host (auth 'oidc') needs no password: its cell runs on the host
over SSH (--ssh-user, --ssh-key, --ssh-known-hosts). Exit code: 0 all passed, 1 any failed, 2 usage.
"""


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m smoke",
        description="Log in and run one cell on each host, as a user would, and check its certificate and backups.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("hosts", nargs="+", metavar="HOST")
    parser.add_argument("--base-url", default="/jupyter/", help="URL path of the notebook (default /jupyter/)")
    parser.add_argument(
        "--ca-file", help="PEM file of the CAs (or self-signed certificates) to trust instead of the system's"
    )
    parser.add_argument("--timeout", type=float, default=30, help="seconds per request (default 30)")
    parser.add_argument(
        "--resolve",
        action="append",
        default=[],
        metavar="NAME:ADDRESS",
        help="connect to ADDRESS for host NAME (SNI, Host and certificate stay NAME)",
    )
    parser.add_argument("--ssh-user", default="root", help="single sign-on hosts: the SSH user (default root)")
    parser.add_argument("--ssh-key", help="single sign-on hosts: the SSH private key (default: ssh's own)")
    parser.add_argument("--ssh-known-hosts", help="single sign-on hosts: the known_hosts file to check host keys with")
    parser.add_argument(
        "--audit", action="store_true", help="also look up published advisories for the server each host runs"
    )
    parser.add_argument(
        "--ignore-vuln",
        action="append",
        default=[],
        metavar="ID",
        help="with --audit: an advisory ID (or alias) that does not fail a host (repeatable)",
    )
    parser.add_argument(
        "--report",
        metavar="FILE",
        help="also write the fleet page: one self-contained HTML page, a row per host, failures first",
    )
    args = parser.parse_args(argv)
    if args.ignore_vuln and not args.audit:
        parser.error("--ignore-vuln goes with --audit")
    if args.audit and importlib.util.find_spec("pip_audit") is None:
        print("smoke: --audit needs pip-audit: .venv/bin/pip install '.[audit]'", file=sys.stderr)
        return 2
    if any(":" not in item for item in args.resolve):
        parser.error("--resolve takes NAME:ADDRESS")
    addresses = dict(item.split(":", 1) for item in args.resolve)
    password = os.environ.get("JUPYTER_PASSWORD", "")
    basic_auth = None
    if os.environ.get("JUPYTER_BASIC_AUTH_USER"):
        basic_auth = (os.environ["JUPYTER_BASIC_AUTH_USER"], os.environ.get("JUPYTER_BASIC_AUTH_PASSWORD", ""))
    ca_file = args.ca_file or True
    # The fleet page shows what each server runs: asked as the audit asks it.
    versions = args.audit or bool(args.report)

    def one(host: str) -> Verdict:
        connect_to = addresses.get(host)
        if not basic_auth and is_per_person(host, args.base_url, ca_file, args.timeout, connect_to):
            address = connect_to or urlsplit(base_url(host, args.base_url)).hostname
            token = over_ssh(
                address,
                f"cat {HUB_SMOKE_TOKEN}",
                args.ssh_user,
                args.ssh_key,
                args.ssh_known_hosts,
                timeout=args.timeout,
            )
            people = None
            if versions:
                people = over_ssh(
                    address,
                    PEOPLE_ANSWERS_COMMAND,
                    args.ssh_user,
                    args.ssh_key,
                    args.ssh_known_hosts,
                    timeout=4 * args.timeout,
                )
            return check_per_person(
                host, token, args.base_url, ca_file, args.timeout, connect_to, people_on_host=people
            )
        if not basic_auth and is_single_sign_on(host, args.base_url, ca_file, args.timeout, connect_to):
            address = connect_to or urlsplit(base_url(host, args.base_url)).hostname
            on_host = over_ssh(
                address,
                cell_check_command(args.base_url),
                args.ssh_user,
                args.ssh_key,
                args.ssh_known_hosts,
                timeout=4 * args.timeout,
            )
            return check_single_sign_on(host, on_host, args.base_url, ca_file, args.timeout, connect_to)
        if not password:
            return Verdict(host, ok=False, error="set JUPYTER_PASSWORD to this host's notebook password")
        return check(host, password, args.base_url, ca_file, args.timeout, basic_auth, connect_to, audit=versions)

    with ThreadPoolExecutor(max_workers=min(16, len(args.hosts))) as pool:
        verdicts = list(pool.map(one, args.hosts))
    if args.audit:
        audit(verdicts, set(args.ignore_vuln), args.timeout)
    for verdict in verdicts:
        print(verdict.line(), flush=True)
    if args.report:
        from .report import page

        with open(args.report, "w", encoding="utf-8") as report:
            report.write(page(verdicts))
        print(f"smoke: the fleet page is {args.report}", file=sys.stderr)
    failed = [v for v in verdicts if not v.ok]
    print(f"smoke: {len(verdicts) - len(failed)} of {len(verdicts)} hosts passed", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
