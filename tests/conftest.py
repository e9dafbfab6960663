# pyinfra's CLI module (imported by pyinfra-testing and the API tests) monkey-patches the
# standard library with gevent; done after `ssl` is imported (by requests, for the e2e
# client), that patch breaks every TLS connection. Patch first, before anything imports ssl.
from gevent import monkey

monkey.patch_all()

# Where tests import from (the deploy directory, tests/, tests/e2e/): pyproject.toml's
# [tool.pytest.ini_options] pythonpath.
