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


def render(template: str, **variables) -> str:
    return _ENV.get_template(template).render(**variables)
