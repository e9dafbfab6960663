"""
python -m lab up [NAME:RELEASE ...] [--files DIR]   boot hosts and leave them running
python -m lab down                                   remove every lab host, proxy, bridge
"""

import argparse
import sys
from pathlib import Path

from . import Lab


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lab")
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="boot hosts and leave them running")
    up.add_argument("machines", nargs="*", default=["nb1:bookworm"], help="NAME:RELEASE, e.g. nb1:bookworm")
    up.add_argument("--files", type=Path, help="directory to serve to the hosts over HTTP")
    sub.add_parser("down", help="tear everything down")
    args = parser.parse_args(argv)
    if args.command == "up":
        lab = Lab([tuple(m.split(":", 1)) for m in args.machines], files=args.files)
        lab.start()
        for host in lab.hosts.values():
            print(f"{host.name} {host.ip} {host.release}")
        print(f"ssh -i {lab.key} -o UserKnownHostsFile={lab.known_hosts} root@ADDRESS", file=sys.stderr)
    else:
        Lab([]).close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
