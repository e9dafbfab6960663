"""
The fleet page (``python -m smoke --audit --report FILE``, smoke/report.py) for three lab hosts,
each in a state made for the test, opened in Debian's Chromium:

- nb9 (after test_os_updates.py's scenario, with ``reboot_window = None``) owes a reboot
  (``/run/reboot-required``), and its notebook user made every kernel report its kernel release
  as HTML (an IPython startup file, written from a notebook, as anyone with the password can);
- nb2 serves a certificate 10 days from its end (made here, the deploy's own put back after);
- nb3 is down (Apache stopped, started again after).

The page lists them failures first, says each state, shows the HTML as text, and Chromium runs
no script and fetches nothing for it; a screenshot is kept (FIGURES names its directory).
"""

from __future__ import annotations

import contextlib
import io
import shlex

import pytest

import smoke.__main__ as smoke_main
from operations import os_updates
from smoke import advisories
from smoke.client import Jupyter
from smoke.report import COLUMNS
from tests.advisory_feed import Feed, service
from tests.e2e.browser import CHROMIUM, FLAGS
from tests.e2e.scenario import FIGURES, PASSWORD
from tests.test_smoke_report import parsed

REBOOT, EXPIRING, DOWN = "nb9", "nb2", "nb3"
HOSTILE = "<script>alert(1)</script><img src=x onerror=alert(2)><b>6.1-lab</b>"
# The notebook user's own startup file: every new kernel reports this as its kernel release.
PATCH = f"import platform\nplatform.release = lambda: {HOSTILE!r}\n"
STARTUP = (
    "import pathlib\n"
    "from IPython.paths import get_ipython_dir\n"
    "startup = pathlib.Path(get_ipython_dir(), 'profile_default', 'startup')\n"
    "startup.mkdir(parents=True, exist_ok=True)\n"
    f"(startup / '00-fleet-page-test.py').write_text({PATCH!r})\n"
    "print('written')\n"
)
REMOVE_STARTUP = (
    "import pathlib\n"
    "from IPython.paths import get_ipython_dir\n"
    "pathlib.Path(get_ipython_dir(), 'profile_default', 'startup', '00-fleet-page-test.py').unlink(missing_ok=True)\n"
    "print('removed')\n"
)
CERTIFICATE = "/etc/ssl/certs/jupyter-apache.crt"
KEY = "/etc/ssl/private/jupyter-apache.key"


@pytest.fixture(scope="module")
def fleet(deployment, updates_background, lab, tmp_path_factory):
    """The three hosts in their states, the page made for them; every state undone after."""
    updates = updates_background.deployment
    updates_background.ready()
    if "updates" in updates_background.done:
        updates_background.done["updates"].wait()  # nb9's own scenario is over (its tests judge it)
    workdir = tmp_path_factory.mktemp("fleet-page")
    certificates = {name: deployment.ssh(name, f"cat {CERTIFICATE}").stdout for name in (EXPIRING, DOWN)}
    certificates[REBOOT] = updates.ssh(REBOOT, f"cat {CERTIFICATE}").stdout
    address = {name: lab.hosts[name].ip for name in (REBOOT, EXPIRING, DOWN)}

    run = updates.pyinfra(overrides={REBOOT: {"reboot_window": None}})
    assert run.returncode == 0, run.output[-3000:]
    nb9 = workdir / "nb9.pem"
    nb9.write_text(certificates[REBOOT])
    user = Jupyter(f"https://{address[REBOOT]}/jupyter/", ca_file=str(nb9), timeout=30)
    user.login(PASSWORD)
    q = shlex.quote
    try:
        assert user.execute(STARTUP).strip() == "written"
        updates.ssh(REBOOT, f"touch {os_updates.REBOOT_REQUIRED} && systemctl start {os_updates.REBOOT_SERVICE}")
        deployment.ssh(
            EXPIRING,
            f"cp -p {CERTIFICATE} /root/fleet-page.crt && cp -p {KEY} /root/fleet-page.key && "
            "openssl req -x509 -newkey rsa:2048 -nodes -days 10 -subj /CN=short-lived "
            f"-addext subjectAltName=IP:{q(address[EXPIRING])} -keyout {KEY} -out {CERTIFICATE} 2>/dev/null && "
            "apache2ctl configtest 2>/dev/null && systemctl reload apache2",
        )
        certificates[EXPIRING] = deployment.ssh(EXPIRING, f"cat {CERTIFICATE}").stdout
        deployment.ssh(DOWN, "systemctl stop apache2")
        bundle = workdir / "trust.pem"
        bundle.write_text("".join(certificates.values()))
        report = workdir / "fleet.html"
        out = io.StringIO()
        with pytest.MonkeyPatch.context() as patch, contextlib.redirect_stdout(out):
            patch.setenv("JUPYTER_PASSWORD", PASSWORD)
            patch.setattr(advisories, "advisory_service", lambda timeout: service(Feed(), timeout))
            code = smoke_main.main(
                ["--audit", "--report", str(report), "--ca-file", str(bundle), "--timeout", "20"]
                + [address[name] for name in (REBOOT, EXPIRING, DOWN)]
            )
        unified = updates.ssh(
            REBOOT, "test -e /sys/fs/cgroup/system.slice/jupyter.service/memory.current && echo yes || echo no"
        ).stdout.strip()
        yield {
            "code": code,
            "output": out.getvalue(),
            "report": report,
            "address": address,
            "unified memory": unified == "yes",
        }
    finally:
        deployment.ssh(DOWN, "systemctl start apache2", check=False)
        deployment.ssh(
            EXPIRING,
            f"test -e /root/fleet-page.crt && mv /root/fleet-page.crt {CERTIFICATE} && "
            f"mv /root/fleet-page.key {KEY} && apache2ctl configtest 2>/dev/null && systemctl reload apache2",
            check=False,
        )
        user.execute(REMOVE_STARTUP)
        updates.ssh(
            REBOOT, f"rm -f {os_updates.REBOOT_REQUIRED} && systemctl start {os_updates.REBOOT_SERVICE}", check=False
        )


def rows(fleet) -> dict[str, dict[str, str]]:
    table = parsed(fleet["report"].read_text())
    return {row[0]: dict(zip(COLUMNS, row, strict=True)) for row in table.rows}


def test_the_page_lists_failures_first_and_says_each_hosts_state(fleet):
    assert fleet["code"] == 1, fleet["output"]
    address = fleet["address"]
    table = parsed(fleet["report"].read_text())
    order = [row[0] for row in table.rows]
    # Failing hosts first (by name), then the one that owes a reboot.
    assert order == sorted([address[DOWN], address[EXPIRING]]) + [address[REBOOT]], order
    assert table.row_classes == ["failed", "failed", "owes"]
    seen = rows(fleet)
    down = seen[address[DOWN]]
    assert down["Answered"] == "no" and down["Check"].startswith("FAIL: "), down
    expiring = seen[address[EXPIRING]]
    assert expiring["Certificate"] in ("9 days left", "10 days left"), expiring
    assert "the certificate expires in" in expiring["Check"] and expiring["Answered"].startswith("yes"), expiring
    owes = seen[address[REBOOT]]
    assert owes["Check"] == "ok" and owes["Reboot"].startswith("owed for "), owes
    assert "never by itself (reboot_window None)" in owes["Reboot"], owes
    assert owes["OS release"] == "Debian GNU/Linux 12 (bookworm)", owes
    assert "notebook " in owes["Jupyter server (Python and packages running)"], owes
    assert owes["Advisories"] == "none published" and down["Advisories"] == "—", (owes, down)
    # The server unit's memory where its cgroup says it (version 2); a lab host's version 1
    # memory hierarchy shows only the container's root, not the unit: nothing is shown then.
    unified = fleet["unified memory"]
    memory = owes["Memory (server's unit)"]
    assert memory.endswith("MiB)") if unified else memory == "—", (unified, memory)


def test_a_hosts_html_is_text_on_the_page(fleet):
    text = fleet["report"].read_text()
    assert rows(fleet)[fleet["address"][REBOOT]]["Kernel"] == HOSTILE
    assert "<script" not in text and "<img" not in text and "&lt;script&gt;alert(1)&lt;/script&gt;" in text


def test_chromium_shows_each_state_runs_no_script_and_fetches_nothing(fleet, tmp_path_factory):
    from playwright.sync_api import sync_playwright

    shots = tmp_path_factory.mktemp("fleet-page-screenshot")
    requests, dialogs = [], []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=FLAGS, env={"PATH": "/usr/bin:/bin"})
        try:
            page = browser.new_page(viewport={"width": 1600, "height": 700})
            page.on("request", lambda request: requests.append(request.url))
            page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
            page.goto(fleet["report"].as_uri())
            page.wait_for_load_state("load")
            page.screenshot(path=str(shots / "fleet.png"), full_page=True)
            kernel = page.locator("tr.owes td").nth(COLUMNS.index("Kernel")).inner_text()
            elements = page.evaluate(
                "() => ['script', 'img', 'td b'].map(selector => document.querySelectorAll(selector).length)"
            )
            colours = page.evaluate(
                "() => [...document.querySelectorAll('tbody tr')]"
                ".map(row => getComputedStyle(row.cells[0]).backgroundColor)"
            )
        finally:
            browser.close()
    FIGURES["fleet page screenshot (3 lab hosts)"] = str(shots / "fleet.png")
    assert kernel == HOSTILE
    assert elements == [0, 0, 0] and dialogs == []
    assert requests == [fleet["report"].as_uri()], requests
    # Failing rows red, the owing one amber: two colours, neither white.
    assert colours[0] == colours[1] != colours[2] and "255, 255, 255" not in "".join(colours), colours
