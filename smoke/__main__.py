"""
    python -m smoke [--base-url /jupyter/] [--ca-file FILE] [--timeout S] [--resolve NAME:ADDRESS] HOST [HOST ...]

HOST is a server name or address (``https://HOST/jupyter/`` is checked) or a full
https:// URL. The password comes from $JUPYTER_PASSWORD; with an Apache Basic-auth
layer, also set $JUPYTER_BASIC_AUTH_USER and $JUPYTER_BASIC_AUTH_PASSWORD.
Certificates are verified against the system's CAs, or only against --ca-file.
--resolve NAME:ADDRESS (repeatable) connects to ADDRESS for HOST NAME instead of what DNS
says, keeping NAME for SNI, Host and the certificate check (like curl's --resolve).
Exit code: 0 all hosts passed, 1 any host failed, 2 usage error.
"""

from __future__ import annotations

import argparse
import os
import sys
from concurrent.futures import ThreadPoolExecutor

from . import check


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m smoke", description="Log in and run one cell on each host.")
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
    args = parser.parse_args(argv)
    if any(":" not in item for item in args.resolve):
        parser.error("--resolve takes NAME:ADDRESS")
    addresses = dict(item.split(":", 1) for item in args.resolve)
    password = os.environ.get("JUPYTER_PASSWORD", "")
    if not password:
        print("smoke: set JUPYTER_PASSWORD to the notebook password", file=sys.stderr)
        return 2
    basic_auth = None
    if os.environ.get("JUPYTER_BASIC_AUTH_USER"):
        basic_auth = (os.environ["JUPYTER_BASIC_AUTH_USER"], os.environ.get("JUPYTER_BASIC_AUTH_PASSWORD", ""))
    ca_file = args.ca_file or True
    with ThreadPoolExecutor(max_workers=min(16, len(args.hosts))) as pool:
        verdicts = list(
            pool.map(
                lambda host: check(
                    host, password, args.base_url, ca_file, args.timeout, basic_auth, connect_to=addresses.get(host)
                ),
                args.hosts,
            )
        )
    for verdict in verdicts:
        print(verdict.line(), flush=True)
    failed = [v for v in verdicts if not v.ok]
    print(f"smoke: {len(verdicts) - len(failed)} of {len(verdicts)} hosts passed", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
