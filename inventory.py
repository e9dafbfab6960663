"""
The hosts to deploy to: `pyinfra -y inventory.py deploy.py`.

Where they come from (the run's first lines say which source it used):

- LINODE_TOKEN set: every running Linode tagged LINODE_TAG (default "jupyter"), named by
  its label, so `--limit LABEL` picks one (see linode_inventory.py). Nothing else is used.
- Otherwise the static list `notebooks` below, plus any hosts in JUPYTER_HOSTS (comma
  separated). Per-host settings go in the dict beside a host; shared ones in
  group_data/all.py (every host) or group_data/notebooks.py (this group).

JUPYTER_SHARD=I/K keeps one slice of those hosts, the I-th of K (1 <= I <= K), chosen by a
hash of each host's name: the same host is in the same slice on every run, whatever the
others. K processes (`scripts/ci-deploy --shards K`) or K CI jobs deploy a fleet past what
one control machine's core can plan.

Every module-level list here is a pyinfra group: private names start with "_".
"""

import os as _os
import sys as _sys

notebooks = [
    # ("203.0.113.7", {"server_name": "nb1.example.org", "tls_mode": "letsencrypt"}),
    # ("nb2.example.org", {"jupyter_base_url": "/lab/"}),
]


def _say(message: str) -> None:
    # stderr: stdout stays pure JSON under `pyinfra --json`.
    print(f"inventory: {message}", file=_sys.stderr)


if _os.environ.get("LINODE_TOKEN"):
    from linode_inventory import API_URL as _API_URL
    from linode_inventory import DEFAULT_TAG as _DEFAULT_TAG
    from linode_inventory import InventoryError as _InventoryError
    from linode_inventory import tagged_linodes as _tagged_linodes

    _tag = _os.environ.get("LINODE_TAG") or _DEFAULT_TAG
    try:
        notebooks, _skipped = _tagged_linodes(
            _os.environ["LINODE_TOKEN"], _tag, _os.environ.get("LINODE_API_URL") or _API_URL
        )
    except _InventoryError as _error:
        raise SystemExit(f"inventory: {_error}") from None
    _say(
        f"{len(notebooks)} running Linodes tagged {_tag!r} from the Linode API"
        + (f"; left out: {', '.join(_skipped)}" if _skipped else "")
    )
    if not notebooks:
        raise SystemExit(f"inventory: no running Linode is tagged {_tag!r}: tag yours (or set LINODE_TAG)")
else:
    _static = len(notebooks)
    notebooks += [_name.strip() for _name in _os.environ.get("JUPYTER_HOSTS", "").split(",") if _name.strip()]
    _say(f"{_static} hosts from the static list in inventory.py, {len(notebooks) - _static} from JUPYTER_HOSTS")
    if not notebooks:
        raise SystemExit(
            "inventory: no hosts: add yours to `notebooks` in inventory.py, set JUPYTER_HOSTS=host1,host2, "
            "or set LINODE_TOKEN to deploy to your Linodes tagged 'jupyter'"
        )


if _os.environ.get("JUPYTER_SHARD"):
    from shards import parse as _parse
    from shards import slice_of as _slice_of

    try:
        _index, _count = _parse(_os.environ["JUPYTER_SHARD"])
    except ValueError as _error:
        raise SystemExit(f"inventory: JUPYTER_SHARD = {_error}") from None
    _all = len(notebooks)
    notebooks = [
        _host for _host in notebooks if _slice_of(_host[0] if isinstance(_host, tuple) else _host, _count) == _index
    ]
    _say(f"shard {_index}/{_count}: {len(notebooks)} of the {_all} hosts")
    if not notebooks:
        # Nothing to do in this slice (a small fleet, many shards): not a failure.
        raise SystemExit(0)
