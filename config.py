# pyinfra reads this file before anything else. The operations here use the
# pyinfra 3.x API (packaged deploys, `_if` callables, the 3.10 `@fake` connector).
REQUIRE_PYINFRA_VERSION = ">=3.10,<4"
