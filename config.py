# pyinfra reads this file before anything else. The operations here use the
# pyinfra 3.10 API (packaged deploys, `_if` callables, the `@fake` connector); the same
# range as pyproject.toml, where a test keeps it.
REQUIRE_PYINFRA_VERSION = ">=3.10,<3.11"

# pyinfra's planning, made cheaper (operations/planning.py): for every file pyinfra runs here
# (deploy.py, restore.py, rollback.py, uninstall.py), installed before any of them is read.
from operations import planning  # noqa: E402

planning.install()
