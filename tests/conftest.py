# pyinfra's CLI module (imported by pyinfra-testing and the API tests) monkey-patches the
# standard library with gevent; done after `ssl` is imported (by requests, for the e2e
# client), that patch breaks every TLS connection. Patch first, before anything imports ssl.
from gevent import monkey

monkey.patch_all()

import sys  # noqa: E402 -- after the gevent patch, on purpose
from pathlib import Path  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
# The deploy directory is what pyinfra puts on sys.path; tests import it the same way.
sys.path.insert(0, str(ROOT))
# Shared test helpers (apache_local) are imported by plain module name.
sys.path.insert(0, str(ROOT / "tests"))
# The e2e helpers (client, conftest constants) import each other by plain module name.
sys.path.insert(0, str(ROOT / "tests" / "e2e"))
