"""
The notebook the way users use it: headless Chromium (Debian's, driven by Playwright) opens
https://HOST/jupyter/, logs in, creates a notebook from the UI, runs `6*7` and sees 42, then
opens a terminal from the UI and runs a command in it as the notebook user. Screenshots of each step are saved
(path printed in the session summary).

The browser trusts exactly the host's self-signed certificate (added to a throwaway NSS
database), so a certificate problem would fail here rather than be clicked through.
"""

from __future__ import annotations

import re
import time
import uuid

import pytest

from tests.e2e.browser import CHROMIUM, FLAGS, trusting_home
from tests.e2e.scenario import FIGURES, PASSWORD


@pytest.fixture(scope="module")
def browser_home(deployment, ca_files, tmp_path_factory):
    """A HOME whose NSS database trusts nb1's certificate."""
    return trusting_home(tmp_path_factory.mktemp("browser-home"), [("nb1", "P,,", str(ca_files["nb1"]))])


@pytest.fixture(scope="module")
def page(deployment, browser_home, tmp_path_factory):
    from playwright.sync_api import sync_playwright

    shots = tmp_path_factory.mktemp("screenshots")
    FIGURES["browser screenshots"] = str(shots)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=FLAGS, env={"HOME": str(browser_home), "PATH": "/usr/bin:/bin"}
        )
        context = browser.new_context(viewport={"width": 1280, "height": 800})
        context.set_default_timeout(30_000)
        page = context.new_page()
        page.shots = shots
        yield page
        context.close()
        browser.close()


def open_from_new_menu(page, item: str):
    """The file browser's "New" menu -> ``item``; returns the tab it opens."""
    page.bring_to_front()
    with page.context.expect_page() as new_tab:
        page.locator("[data-jp-item-name='new-dropdown']").click()
        page.get_by_role("menuitem", name=item).click()
    opened = new_tab.value
    opened.shots = page.shots
    return opened


def memory_shown(page, timeout: float = 30) -> tuple[str, str, str]:
    """(use, limit, unit) as the page's memory display shows them ("Mem: 120 / 19661 MB")."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        match = re.search(r"Mem:\s*([\d.]+)\s*/\s*([\d.]+)\s*(B|KB|MB|GB)", page.locator("body").inner_text())
        if match:
            return match.groups()
        time.sleep(1)
    shot(page, "memory-display-missing")
    pytest.fail("no memory display (Mem: USE / LIMIT) on the notebook page")


def shot(page, name: str) -> None:
    page.screenshot(path=str(page.shots / f"{name}.png"), full_page=True)


def test_browser_logs_in_creates_a_notebook_and_runs_a_cell(deployment, page):
    base = f"https://{deployment.address('nb1')}/jupyter/"
    page.goto(base)
    assert "/jupyter/login" in page.url
    page.fill("input[type=password]", PASSWORD)
    page.click("button[type=submit], input[type=submit]")
    page.wait_for_url("**/jupyter/tree**")
    page.locator("[data-jp-item-name='new-dropdown']").wait_for()
    shot(page, "1-tree")

    notebook = open_from_new_menu(page, "Python 3")  # the notebook's kernel, as the menu lists it
    notebook.wait_for_url("**/jupyter/notebooks/Untitled*.ipynb")
    editor = notebook.locator(".jp-Cell .cm-content").first
    editor.click()
    notebook.keyboard.type("6*7")
    notebook.keyboard.press("Shift+Enter")
    output = notebook.locator(".jp-OutputArea-output").first
    output.wait_for(timeout=60_000)
    assert output.inner_text().strip() == "42"
    shot(notebook, "2-notebook-42")
    # The memory display (jupyter-resource-usage) shows use against the unit's MemoryMax.
    memory_max = int(deployment.ssh("nb1", "systemctl show -p MemoryMax --value jupyter").stdout)
    shown = memory_shown(notebook)
    FIGURES["browser memory display (nb1)"] = f"Mem: {shown[0]} / {shown[1]} {shown[2]} (MemoryMax {memory_max})"
    # In the unit of the use, with no decimals for MB and GB (as the display rounds).
    assert abs(float(shown[1]) - memory_max / 1024 ** ["B", "KB", "MB", "GB"].index(shown[2])) <= 0.5
    notebook.close()
    deployment.ssh("nb1", "rm -f /srv/jupyter/Untitled*.ipynb")


def test_browser_opens_a_terminal_that_runs_commands(deployment, page):
    marker = f"browser-{uuid.uuid4().hex[:8]}"
    base = f"https://{deployment.address('nb1')}/jupyter/"
    page.goto(base + "tree")
    terminal = open_from_new_menu(page, "Terminal")
    terminal.wait_for_url("**/jupyter/terminals/**")
    terminal.locator(".xterm").first.click()
    # xterm.js may draw on a canvas: the command leaves a file to check instead of screen text.
    terminal.keyboard.type(f"touch ~/{marker} && echo done\n")
    found = None
    for _ in range(100):
        found = deployment.ssh("nb1", f"stat -c %U /var/lib/jupyter/{marker} 2>/dev/null", check=False).stdout.strip()
        if found:
            break
        terminal.wait_for_timeout(200)
    shot(terminal, "3-terminal")
    assert found == "jupyter", "the command typed into the browser terminal never ran (as jupyter_user)"
    deployment.ssh("nb1", f"rm -f /var/lib/jupyter/{marker}")
    terminal.close()
