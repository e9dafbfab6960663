"""
What the deploy owns is put back when it drifts, and the run says what it repaired (on nb2).

`sed -i` on the enabled vhost replaces a2ensite's link with an edited copy, which stays
enabled and live; an edit of the vhost itself (and its mode) is another way. Each is repaired
by the next run, with a line naming the path and what had changed, and Apache serves the
deploy's vhost again (its Referrer-Policy header, which the edits drop, is back).
"""

from __future__ import annotations

import pytest
import requests

from smoke.client import Jupyter
from tests.e2e.scenario import PASSWORD

NAME = "nb2"
AVAILABLE = "/etc/apache2/sites-available/jupyter.conf"
ENABLED = "/etc/apache2/sites-enabled/jupyter.conf"
# The edits drop the header that keeps a notebook's path out of other sites' logs.
DROP = r"sed -i '/Referrer-Policy/d'"
SET_ASIDE = "/var/lib/jupyter-apache-deploy/set-aside"


def referrer_policy(deployment, ca_files) -> str | None:
    answer = requests.get(f"https://{deployment.address(NAME)}/jupyter/login", verify=str(ca_files[NAME]), timeout=20)
    return answer.headers.get("Referrer-Policy")


@pytest.fixture(scope="module")
def drifted(deployment, ca_files):
    one = deployment.only(NAME)
    seen: dict = {"deployed": deployment.ssh(NAME, f"sha256sum < {AVAILABLE}").stdout}
    # 1. The enabled link replaced by an edited copy (what `sed -i` on it does), made live.
    deployment.ssh(NAME, f"{DROP} {ENABLED} && apache2ctl configtest && systemctl reload apache2")
    seen["edited copy live"] = referrer_policy(deployment, ca_files)
    seen["copy run"] = one.pyinfra()
    seen["link after"] = deployment.ssh(NAME, f"readlink {ENABLED} || echo not a link").stdout.strip()
    seen["set aside"] = deployment.ssh(NAME, f"ls {SET_ASIDE} 2>/dev/null || true").stdout.split()
    seen["header after copy run"] = referrer_policy(deployment, ca_files)
    seen["copy rerun"] = one.pyinfra()
    # 2. The vhost itself edited in place, and its mode changed, made live.
    deployment.ssh(NAME, f"{DROP} {AVAILABLE} && chmod 666 {AVAILABLE} && systemctl reload apache2")
    seen["edited vhost live"] = referrer_policy(deployment, ca_files)
    seen["vhost run"] = one.pyinfra()
    seen["vhost after"] = deployment.ssh(NAME, f"sha256sum < {AVAILABLE}; stat -c %a {AVAILABLE}").stdout
    seen["header after vhost run"] = referrer_policy(deployment, ca_files)
    seen["vhost rerun"] = one.pyinfra()
    jupyter = Jupyter(f"https://{deployment.address(NAME)}/jupyter/", ca_file=str(ca_files[NAME]))
    jupyter.login(PASSWORD)
    seen["cell"] = jupyter.execute("print(6 * 7)")
    deployment.ssh(NAME, f"rm -rf {SET_ASIDE}")
    return seen


def test_an_edited_copy_in_place_of_the_enabled_link_is_repaired_and_said(drifted):
    assert drifted["edited copy live"] is None, "the edit did not take effect: nothing tested"
    run = drifted["copy run"]
    assert run.returncode == 0, run.output[-3000:]
    assert (
        f"Repairing {ENABLED}: a file stood where the deploy's link belongs (outside the deploy); "
        "put back as the deploy makes it"
    ) in run.output, run.output[-3000:]
    assert drifted["link after"] == "../sites-available/jupyter.conf"
    # The edited copy is kept, not deleted.
    assert [name.rsplit(".", 2)[0] for name in drifted["set aside"]] == ["etc_apache2_sites-enabled_jupyter.conf"]
    assert drifted["header after copy run"] == "same-origin"
    assert drifted["copy rerun"].changed() == {}, drifted["copy rerun"].output[-3000:]


def test_the_vhost_edited_in_place_is_repaired_and_said(drifted):
    assert drifted["edited vhost live"] is None, "the edit did not take effect: nothing tested"
    run = drifted["vhost run"]
    assert run.returncode == 0, run.output[-3000:]
    assert (
        f"Repairing {AVAILABLE}: its content was changed, its mode was 666, not 644 (outside the deploy); "
        "put back as the deploy makes it"
    ) in run.output, run.output[-3000:]
    digest, mode = drifted["vhost after"].split("\n")[:2]
    assert digest == drifted["deployed"].strip() and mode == "644"
    assert drifted["header after vhost run"] == "same-origin"
    assert drifted["vhost rerun"].changed() == {}, drifted["vhost rerun"].output[-3000:]
    assert drifted["cell"] == "42\n"
