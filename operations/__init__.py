"""Packaged pyinfra deploys, facts and operations: one module per concern.

Importing the package first makes pyinfra's planning cheaper (``planning``): every file that
calls an operation of ours (deploy.py, restore.py, uninstall.py) imports it.
"""

from . import planning

planning.install()
