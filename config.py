# pyinfra reads this file before anything else. The operations here use the
# pyinfra 3.10 API (packaged deploys, `_if` callables, the `@fake` connector); the same
# range as pyproject.toml, where a test keeps it.
REQUIRE_PYINFRA_VERSION = ">=3.10,<3.11"
