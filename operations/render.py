"""Render the project's Jinja2 templates (one environment for every template); where its static files are."""

from __future__ import annotations

import shlex
from pathlib import Path

import jinja2

TEMPLATES = Path(__file__).resolve().parent.parent / "templates"
# Static files and scripts, uploaded as they are.
FILES = TEMPLATES.parent / "files"

_ENV = jinja2.Environment(
    loader=jinja2.FileSystemLoader(str(TEMPLATES)),
    undefined=jinja2.StrictUndefined,
    keep_trailing_newline=True,
    trim_blocks=True,
    lstrip_blocks=True,
    autoescape=False,
)
# Values that land in shell files (sourced by the deploy's scripts) are quoted.
_ENV.filters["shell_quote"] = lambda value: shlex.quote(str(value))


def _python(value) -> str:
    """A value as a Python literal (strings, numbers, lists, dicts) for a Python config file."""
    if isinstance(value, jinja2.Undefined):
        value._fail_with_undefined_error()
    return repr(value)


# Values that land in Python config files are Python literals.
_ENV.filters["python"] = _python


def render(template: str, **variables) -> str:
    return _ENV.get_template(template).render(**variables)
