"""Packaged pyinfra deploys, facts and operations: one module per concern."""
