"""
A stand-in for PyPI's vulnerability data, served to pip-audit's own ``PyPIService``.

PyPI answers ``/pypi/NAME/VERSION/json`` with a ``vulnerabilities`` list; the audit reads it
through pip-audit. The CI machine cannot reach those per-version answers (PyPI's mirror here
answers 404 for them), so the tests mount this feed on pip-audit's HTTP session: pip-audit's
request, parsing and filtering all run, only the answers are ours.

The record below is a stand-in written for these tests, in PyPI's shape: the ID and fixed
release of a published jupyter-server advisory; the affected releases are whatever
``ADVISORIES`` says, not a copy of the real record.
"""

from __future__ import annotations

import json
import re

import requests
from packaging.version import Version
from pip_audit._service import PyPIService

GHSA = "GHSA-c3mw-737p-c7g2"
# name -> [(first fixed release, the record PyPI would list for releases before it)]
ADVISORIES = {
    "jupyter-server": [
        (
            "2.21.0",
            {
                "id": GHSA,
                "aliases": ["PYSEC-STANDIN-0001"],
                "summary": "A token in the Referer of a request that fails is written to the server log",
                "details": "Stand-in record for the deploy's tests.",
                "fixed_in": ["2.21.0"],
                "link": f"https://osv.dev/vulnerability/{GHSA}",
                "source": "osv",
                "withdrawn": None,
            },
        ),
        # A withdrawn advisory is listed by PyPI and dropped by pip-audit.
        (
            "2.99.0",
            {
                "id": "PYSEC-STANDIN-WITHDRAWN",
                "aliases": [],
                "fixed_in": ["2.99.0"],
                "withdrawn": "2026-01-01T00:00:00Z",
            },
        ),
    ],
}
URL = re.compile(r"^https://pypi\.org/pypi/(?P<name>[^/]+)/(?P<version>[^/]+)/json$")


class Feed(requests.adapters.BaseAdapter):
    """Answers pip-audit's per-version requests; ``missing`` names (name, version) PyPI does not know."""

    def __init__(self, missing: set[tuple[str, str]] = frozenset()):
        super().__init__()
        self.missing = set(missing)
        self.asked: list[tuple[str, str]] = []

    def send(self, request, **kwargs):
        match = URL.match(request.url)
        response = requests.Response()
        response.request, response.url = request, request.url
        if not match:
            response.status_code = 404
            return response
        name, version = match["name"], match["version"]
        self.asked.append((name, version))
        if (name, version) in self.missing:
            response.status_code = 404
            return response
        vulnerabilities = [record for fixed, record in ADVISORIES.get(name, []) if Version(version) < Version(fixed)]
        body = {"info": {"name": name, "version": version}, "vulnerabilities": vulnerabilities}
        response.status_code = 200
        response.headers["Content-Type"] = "application/json"
        response._content = json.dumps(body).encode()
        return response

    def close(self):
        pass


def service(feed: Feed, timeout: float = 30) -> PyPIService:
    """pip-audit's PyPI service, talking to ``feed`` instead of pypi.org."""
    pypi = PyPIService(timeout=int(timeout))
    pypi.session.mount("https://pypi.org/", feed)
    return pypi
