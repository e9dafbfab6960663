"""
Smoke check for deployed notebook servers: what a user does first, from outside.

    JUPYTER_PASSWORD=... python -m smoke nb1.example.org 203.0.113.7

For each host: log in through Apache with the password, start a fresh kernel, run one
cell over its websocket, delete the kernel. One line per host with timings; the exit
code is non-zero when any host fails. ``scripts/ci-deploy`` runs it after every deploy,
and the real-host tests use the same client (``smoke/client.py``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from .client import Jupyter

# The cell run on every host: its output proves a kernel really executed it.
CELL = "print(6 * 7)"
EXPECTED = "42"


@dataclass
class Verdict:
    target: str
    ok: bool
    timings: dict[str, float] = field(default_factory=dict)
    error: str = ""

    def line(self) -> str:
        spent = "  ".join(f"{what} {seconds:.2f} s" for what, seconds in self.timings.items())
        if self.ok:
            return f"ok    {self.target}  {spent}"
        return f"FAIL  {self.target}  {self.error}" + (f"  (after: {spent})" if spent else "")


def base_url(target: str, path: str = "/jupyter/") -> str:
    """``nb1.example.org`` -> ``https://nb1.example.org/jupyter/``; a full https:// URL is kept."""
    if target.startswith("https://"):
        return target if target.endswith("/") else target + "/"
    if target.startswith("http://"):
        raise ValueError(f"{target}: the smoke check only talks HTTPS")
    return f"https://{target}{path}"


def check(target: str, password: str, path: str = "/jupyter/", ca_file: str | bool = True,
          timeout: float = 30, basic_auth=None, connect_to: str | None = None) -> Verdict:
    """Log in, run one cell in a fresh kernel, clean up; never raises.

    ``connect_to``: the address to send everything to (the one SSH verified), instead of
    what DNS says ``target`` is; the name still goes in SNI and Host and must match the
    certificate."""
    verdict = Verdict(target, ok=False)
    started = time.monotonic()

    def step(name, action):
        began = time.monotonic()
        result = action()
        verdict.timings[name] = time.monotonic() - began
        return result

    try:
        jupyter = Jupyter(base_url(target, path), ca_file=ca_file, timeout=timeout, basic_auth=basic_auth,
                          connect_to=connect_to)
        step("login", lambda: jupyter.login(password))
        kernel = step("kernel", jupyter.start_kernel)
        try:
            output = step("cell", lambda: jupyter.execute_in(kernel, CELL))
        finally:
            jupyter.api("DELETE", f"kernels/{kernel}")
        if output.strip() != EXPECTED:
            verdict.error = f"the cell printed {output.strip()!r}, not {EXPECTED!r}"
            return verdict
        verdict.ok = True
    except Exception as error:  # one line per host, whatever went wrong
        verdict.error = f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"[:300]
    finally:
        verdict.timings["total"] = time.monotonic() - started
    return verdict
