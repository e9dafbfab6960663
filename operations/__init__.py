"""Packaged pyinfra deploys, their operations and what they read of a host: one module per concern.

Importing the package changes nothing: the files you run install pyinfra's cheaper planning
(``planning``) themselves, through ``config.py``, which pyinfra reads first.
"""
