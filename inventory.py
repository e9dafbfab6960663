"""
The hosts to deploy to: `pyinfra -y inventory.py deploy.py`.

Put your Linodes' addresses or DNS names in `notebooks`, with per-host settings in
the dict beside each (shared settings go in group_data/all.py). Or, without editing
this file, list them in JUPYTER_HOSTS (comma separated): they join the same group.
"""

import os

notebooks = [
    # ("203.0.113.7", {"server_name": "nb1.example.org"}),
    # ("nb2.example.org", {"jupyter_base_url": "/lab/"}),
]

notebooks += [name.strip() for name in os.environ.get("JUPYTER_HOSTS", "").split(",") if name.strip()]

if not notebooks:
    raise SystemExit("inventory.py lists no hosts: add yours to `notebooks`, or set JUPYTER_HOSTS=host1,host2")
