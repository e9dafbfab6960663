"""
The manual and the docs name files, tests and code: every one they name exists.

Read from the README, docs/*.md and bench/README.md: each `path` (a file or folder of the
repository), each `path::test_name` (the test is defined in that file), each bare `test_name`
(defined in some test file) and each `module.name` of the deploy (``jupyter.CONFIG_FILE``,
``settings.validate``, ``checks.check_seconds``: the module has it). Links to other documents
resolve too.
"""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = [ROOT / "README.md", ROOT / "bench" / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
TOP = ("tests", "operations", "files", "templates", "lab", "scripts", "bench", "smoke", "docs", "group_data")
# Modules a doc may cite as `module.name`, and where they live.
MODULES = {
    **{p.stem: f"operations.{p.stem}" for p in (ROOT / "operations").glob("*.py") if p.stem != "__init__"},
    "jupyter": "operations.jupyter",
    **{
        p.stem: f"operations.jupyter.{p.stem}"
        for p in (ROOT / "operations" / "jupyter").glob("*.py")
        if p.stem not in ("__init__", "layout", "server")  # not pyinfra's server.shell
    },
    "settings": "operations.settings",
    **{p.stem: f"operations.settings.{p.stem}" for p in (ROOT / "operations" / "settings").glob("*.py")},
}
CODE = re.compile(r"`([^`\n]+)`")
LINK = re.compile(r"\]\(([^)#\s]+)\)")
TEST_NAME = re.compile(r"test_[a-z0-9_]+")


def cited(doc: Path) -> list[str]:
    return CODE.findall(doc.read_text())


def defined_test_names() -> set[str]:
    return {
        name
        for path in (ROOT / "tests").rglob("*.py")
        for name in re.findall(r"^\s*def (test_[a-z0-9_]+)", path.read_text(), re.M)
    }


@pytest.mark.parametrize("doc", DOCS, ids=[str(d.relative_to(ROOT)) for d in DOCS])
def test_every_path_and_test_a_document_names_exists(doc):
    defined = defined_test_names()
    missing = []
    for text in cited(doc):
        for token in text.split():
            path, _, test = token.strip(".,;:()").partition("::")
            if path.split("/")[0] in TOP and "/" in path and not any(c in path for c in "*<>{}$"):
                if not (ROOT / path.rstrip("/")).exists():
                    missing.append(path)
                elif test and not re.search(rf"^\s*def {re.escape(test)}\b", (ROOT / path).read_text(), re.M):
                    missing.append(token)
            elif TEST_NAME.fullmatch(token) and token not in defined:
                missing.append(token)
    assert missing == [], f"{doc.relative_to(ROOT)} names what does not exist: {missing}"


@pytest.mark.parametrize("doc", DOCS, ids=[str(d.relative_to(ROOT)) for d in DOCS])
def test_every_name_of_the_code_a_document_cites_exists(doc):
    missing = []
    for text in cited(doc):
        match = re.fullmatch(r"(\w+)\.(\w+)(\(.*\))?", text)
        if match and match.group(1) in MODULES and match.group(2) not in ("py", "md"):
            module = importlib.import_module(MODULES[match.group(1)])
            if not hasattr(module, match.group(2)):
                missing.append(text)
    assert missing == [], f"{doc.relative_to(ROOT)} cites names the code does not have: {missing}"


@pytest.mark.parametrize("doc", DOCS, ids=[str(d.relative_to(ROOT)) for d in DOCS])
def test_every_link_to_another_document_resolves(doc):
    links = [link for link in LINK.findall(doc.read_text()) if "://" not in link]
    assert [link for link in links if not (doc.parent / link).exists()] == []


def test_the_docs_say_where_three_settings_are_defined_rendered_and_tested():
    """What a newcomer looks up first: the architecture names the files for these."""
    text = (ROOT / "docs" / "architecture.md").read_text()
    for setting in ("memory_limit", "login_ban_seconds", "backup_repository"):
        [row] = [line for line in text.splitlines() if line.startswith(f"| `{setting}` |")]
        defined, rendered, tested = row.split(" | ")[1:4]
        assert "operations/settings/registry.py" in defined
        assert "templates/" in rendered and "tests/" in tested, row
