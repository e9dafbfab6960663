"""Where the lab lives: addresses, ports and directories (overridable by environment)."""

import os
from pathlib import Path

# Cached base images and the lab's SSH key: outside the checkout, kept between runs.
CACHE = Path(os.environ.get("LAB_CACHE", "/var/cache/jupyter-deploy-lab"))
# Per-run state (overlays, pid files, known_hosts); removed on teardown.
STATE = Path(os.environ.get("LAB_STATE", "/run/jupyter-deploy-lab"))
MIRROR = os.environ.get("LAB_MIRROR", "http://deb.debian.org/debian")

# A link-local bridge: the hosts get no default route and no DNS, only this network.
BRIDGE = "jdlab0"
BRIDGE_IP = "169.254.77.1"
PREFIX_LEN = 24
# Not apt-cacher-ng's usual 3142, so a packaged daemon (if one runs) never collides with ours.
PROXY_PORT = 3143
FILES_PORT = 8000
# Where clouds answer metadata requests (Linode's service too): the lab runs a stand-in.
METADATA_IP = "169.254.169.254"
# Linode's Metadata API answers over IPv6 as well: the stand-in holds these too.
METADATA_IPV6 = ("fd00:a9fe:a9fe::1", "fe80::a9fe:a9fe")
# The hosts' IPv6 addresses on the bridge (host N: ...::(10 + N)), so they reach the
# stand-in's ULA address as a Linode reaches Linode's.
LAB_IPV6_PREFIX = "fd77:77::"
# Client addresses a test puts on the bridge may sit in other /64s of this /48 (an IPv6 client
# is banned as its /64): every host reaches the whole /48 on the bridge.
LAB_IPV6_NETWORK = "fd77:77::/48"
# Host N gets 169.254.77.(10 + N).
FIRST_HOST = 11
