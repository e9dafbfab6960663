"""
Single sign-on against a real OpenID Connect provider: LemonLDAP::NG on a lab host of its own
(lab/idp.py), over HTTPS from a lab CA. Its demo users stand in for alice (let in as a member
of the group timelords), bob (not let in) and carol (let in by her address).

nb7 is deployed with auth 'oidc' and collaboration on, in a run of its own with -vvv --diff
(its output is searched for the secrets) while the provider installs; a rerun changes nothing.
People sign in in headless Chromium, as they would; API, kernel and terminal checks use the
session a browser got. Last, auth 'password' again: the password works, the sign-on is gone
and a rerun changes nothing.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
import uuid

import pytest
import requests
import websocket

from lab import standin
from lab.idp import PEOPLE
from smoke.client import Jupyter, _run_cell
from tests.e2e.browser import chromium_signing_in_at
from tests.e2e.scenario import (
    FIGURES,
    LAB_DATA,
    OIDC_CLIENT_ID,
    OIDC_CLIENT_SECRET,
    PASSWORD,
    ROOT,
    TIMINGS,
    Deployment,
    run_smoke,
)

NAME = "nb7"
BASE_PATH = "/jupyter/"
CLIENT_ID, CLIENT_SECRET = OIDC_CLIENT_ID, OIDC_CLIENT_SECRET
ALLOWED = ["group:timelords", PEOPLE["carol"].email]
FORGED = {"X-Jupyter-User": PEOPLE["alice"].email, "X-Jupyter-User-Name": "Forged", "X-Jupyter-Proxy-Secret": "guess"}
ENV = {"JUPYTER_OIDC_CLIENT_SECRET": CLIENT_SECRET}
CERT = "/etc/ssl/certs/jupyter-apache.crt"
RELOAD = "Apache reverse proxy | Reload Apache (after configtest)"
ROUND_TRIPS = 20


@pytest.fixture(scope="module")
def sso(lab, standin_installer, oidc_provider, tmp_path_factory):
    """nb7 deployed (-vvv --diff) while the provider installs; then a rerun."""
    path, digest = standin_installer
    workdir = tmp_path_factory.mktemp("sso")
    address = lab.hosts[NAME].ip
    deployment = Deployment(
        lab,
        workdir,
        lab.url(standin.url_path(path)),
        digest,
        names=[NAME],
        data={
            NAME: {
                "auth": "oidc",
                "oidc_issuer": oidc_provider.provider.issuer,
                "oidc_client_id": CLIENT_ID,
                "oidc_allowed": ALLOWED,
                "oidc_ca_bundle": str(oidc_provider.provider.ca),
                "collaboration": True,
            }
        },
    )
    first = deployment.runs["first"] = deployment.pyinfra("-vvv", "--diff", env=ENV)
    provider = oidc_provider.ready()
    assert first.returncode == 0, first.output[-6000:]
    deployment.runs["second"] = deployment.pyinfra(env=ENV)
    for run in ("first", "second"):
        TIMINGS[f"single sign-on: {run} run (nb7)"] = deployment.runs[run].seconds
    provider.resolve_on(lab.hosts[NAME])
    cert = workdir / "nb7.pem"
    cert.write_text(deployment.ssh(NAME, "cat /etc/ssl/certs/jupyter-apache.crt").stdout)
    deployment.base = f"https://{address}{BASE_PATH}"
    deployment.cert = str(cert)
    deployment.provider = provider
    return deployment


@pytest.fixture(scope="module")
def browser(sso, tmp_path_factory):
    """Chromium trusting exactly nb7's certificate and the provider's CA, finding the provider
    at its lab host."""
    with chromium_signing_in_at(sso.provider, tmp_path_factory.mktemp("sso-browser-home"), NAME, sso.cert) as chromium:
        yield chromium


def sign_in(browser, sso, who: str, path: str = ""):
    """A new browser context: open the site, sign in at the provider as ``who``; the page where
    that lands, with ``seconds`` from opening the site to there."""
    person = PEOPLE[who]
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    context.set_default_timeout(30_000)
    page = context.new_page()
    started = time.monotonic()
    page.goto(sso.base + path)
    page.wait_for_url(f"{sso.provider.issuer}/**")
    page.fill("input[name=user]", person.login)
    page.fill("input[name=password]", person.password)
    page.click("button[type=submit]")
    page.wait_for_url(f"{sso.base}**")
    page.wait_for_load_state("load")
    page.seconds = time.monotonic() - started
    return page


def client_from(page, sso) -> Jupyter:
    """A script's client holding the browser's cookies (Apache's session, Jupyter's _xsrf)."""
    client = Jupyter(sso.base, ca_file=sso.cert)
    for cookie in page.context.cookies(sso.base):
        client.session.cookies.set(cookie["name"], cookie["value"], domain=cookie["domain"], path=cookie["path"])
    return client


def in_page(page, path: str) -> int:
    """The status a script of the page gets for ``path`` (a fetch, as the notebook UI makes)."""
    return page.evaluate(f"fetch({json.dumps(BASE_PATH + path)}).then(r => r.status)")


def round_trip_ms(client: Jupyter) -> float:
    """The median time of a cell ``pass`` in one kernel, over its websocket through Apache."""
    kernel = client.start_kernel()
    try:
        ws = client.websocket(f"api/kernels/{kernel}/channels")
        try:
            _run_cell(ws, "pass", client.timeout)
            times = []
            for _ in range(ROUND_TRIPS):
                started = time.monotonic()
                _run_cell(ws, "pass", client.timeout)
                times.append((time.monotonic() - started) * 1000)
            return statistics.median(times)
        finally:
            ws.close()
    finally:
        client.api("DELETE", f"kernels/{kernel}")


def test_the_first_run_deploys_and_a_rerun_changes_nothing(sso):
    assert sso.runs["second"].returncode == 0, sso.runs["second"].output[-3000:]
    assert sso.runs["second"].changed().get(sso.address(NAME), []) == []
    enabled = sso.ssh(NAME, "ls /etc/apache2/mods-enabled/").stdout.split()
    assert "auth_openidc.load" in enabled
    assert sso.ssh(NAME, "test -e /etc/jupyter/password_hash", check=False).returncode != 0


def test_without_a_session_pages_go_to_the_provider_and_scripts_get_401(sso):
    page = requests.get(sso.base, headers={"Accept": "text/html"}, verify=sso.cert, allow_redirects=False, timeout=20)
    assert page.status_code == 302
    assert page.headers["Location"].startswith(f"{sso.provider.issuer}/oauth2/authorize?")
    assert f"client_id={CLIENT_ID}" in page.headers["Location"]
    api = requests.get(sso.base + "api/contents", verify=sso.cert, allow_redirects=False, timeout=20)
    assert api.status_code == 401
    with pytest.raises(websocket.WebSocketBadStatusException) as refused:
        websocket.create_connection(
            sso.base.replace("https://", "wss://") + f"api/kernels/{uuid.uuid4()}/channels",
            sslopt={"ca_certs": sso.cert},
            timeout=20,
        )
    assert refused.value.status_code == 401


def test_alice_signs_in_lands_in_the_tree_named_and_runs_a_cell_and_a_terminal(browser, sso):
    page = sign_in(browser, sso, "alice")
    page.wait_for_url(f"{sso.base}tree**")
    FIGURES["sign-in round trip (site -> provider -> tree)"] = f"{page.seconds:.2f} s"
    page.goto(sso.base + "lab")
    # Her initials in the top bar, her name on her user icon.
    page.locator("#jp-top-bar").get_by_text("DW", exact=True).first.wait_for()
    page.locator(f"[title='{PEOPLE['alice'].name}']").first.wait_for(state="attached")
    # Apache's session cookie: for the notebook's path only, never over plain HTTP or to scripts.
    [session] = [c for c in page.context.cookies(sso.base) if c["name"] == "mod_auth_openidc_session"]
    assert (session["path"], session["secure"], session["httpOnly"], session["sameSite"]) == (
        BASE_PATH,
        True,
        True,
        "Lax",
    )
    client = client_from(page, sso)
    identity = client.api("GET", "me").json()["identity"]
    assert (identity["username"], identity["name"]) == (PEOPLE["alice"].email, PEOPLE["alice"].name)
    assert client.execute("print(6 * 7)").strip() == "42"
    assert "42" in client.terminal_echo("echo $((6 * 7)) $(id -un)", "42")
    client.websocket("api/events/subscribe").close()
    sso.oidc_round_trip_ms = round_trip_ms(client)
    page.context.close()


def test_bob_signs_in_at_the_provider_but_is_not_let_in(browser, sso):
    page = sign_in(browser, sso, "bob")
    assert "Forbidden" in page.content()
    assert in_page(page, "api/contents") == 403
    page.context.close()


def test_a_forged_user_header_is_refused_from_clients_and_from_the_host(browser, sso):
    page = sign_in(browser, sso, "carol")
    client = client_from(page, sso)
    seen = client.session.get(sso.base + "api/me", headers=FORGED, verify=sso.cert, timeout=20)
    assert seen.json()["identity"]["username"] == PEOPLE["carol"].email
    page.context.close()
    anonymous = requests.get(sso.base + "api/me", headers=FORGED, verify=sso.cert, timeout=20)
    assert anonymous.status_code == 401
    # On the host, past Apache: as root and as another user, straight to Jupyter's port.
    probe = (
        "python3 -c 'import urllib.request, urllib.error, json, sys\n"
        'request = urllib.request.Request("http://127.0.0.1:8888/jupyter/api/me", headers=json.loads(sys.argv[1]))\n'
        "try:\n    print(urllib.request.urlopen(request).status)\n"
        "except urllib.error.HTTPError as error:\n    print(error.code)' "
    )
    headers = json.dumps(FORGED).replace("'", "")
    for user in ("root", "nobody"):
        answered = sso.ssh(NAME, f"runuser -u {user} -- {probe}'{headers}'").stdout.strip()
        assert answered == "403", (user, answered)


def test_logout_ends_the_session(browser, sso):
    page = sign_in(browser, sso, "carol")
    client = client_from(page, sso)
    assert client.get("api/contents").status_code == 200
    page.goto(sso.base + "logout")
    # Apache's session ends at once; the provider asks before it ends its own.
    assert client.get("api/contents", allow_redirects=False).status_code == 401
    page.wait_for_url(f"{sso.provider.issuer}/**")
    page.get_by_role("button", name="Accept").click()
    # Back at the notebook, which sends her to the provider's sign-in form: its session ended
    # too (else it would sign her in again at once).
    page.locator("input[name=user]").wait_for()
    page.context.close()


def test_two_people_edit_one_notebook_and_see_each_others_text_and_name(browser, sso):
    alice, carol = sign_in(browser, sso, "alice", "lab"), sign_in(browser, sso, "carol", "lab")
    notebook = f"together-{uuid.uuid4().hex[:8]}.ipynb"
    kernelspec = {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"}
    cell = {"cell_type": "code", "source": "", "metadata": {}, "outputs": [], "execution_count": None}
    content = {"cells": [cell], "metadata": {"kernelspec": kernelspec}, "nbformat": 4, "nbformat_minor": 5}
    client_from(alice, sso).api("PUT", f"contents/{notebook}", json={"type": "notebook", "content": content})
    for page in (alice, carol):
        page.goto(f"{sso.base}lab/tree/{notebook}")
        page.locator(".jp-Cell .cm-content").first.wait_for()
    seconds = {}
    for writer, reader, text, name in (
        (alice, carol, "alice_typed = 1", PEOPLE["alice"].name),
        (carol, alice, "carol_typed = 2", PEOPLE["carol"].name),
    ):
        writer.locator(".jp-Cell .cm-content").first.click()
        writer.keyboard.press("End")
        writer.keyboard.type(f" ; {text}")
        started = time.monotonic()
        reader.locator(".jp-Cell .cm-content", has_text=text).first.wait_for(timeout=2000)
        seconds[text] = time.monotonic() - started
        # The writer's cursor in the reader's notebook, flagged with the writer's name.
        reader.locator(".jp-remote-userFlag-name", has_text=name).first.wait_for(state="attached", timeout=5000)
    FIGURES["collaboration: the other's text seen after"] = ", ".join(f"{s:.2f} s" for s in seconds.values())
    for page in (alice, carol):
        page.context.close()


def test_a_session_outlives_a_rerun_that_changes_the_vhost_a_reload_and_a_certificate_renewal(browser, sso, tmp_path):
    """Apache keeps sessions in files (encrypted with the kept passphrase), not in memory a
    reload drops: a signed-in person is still signed in after each of these."""
    page = sign_in(browser, sso, "carol")
    client = client_from(page, sso)
    page.context.close()

    def me() -> int:
        answer = client.get("api/me", allow_redirects=False)
        if answer.status_code == 200:
            assert answer.json()["identity"]["username"] == PEOPLE["carol"].email
        return answer.status_code

    assert me() == 200
    seen = {}
    # A rerun that lets one more person in: the vhost changes and Apache reloads.
    wider = sso.pyinfra(overrides={NAME: {"oidc_allowed": [*ALLOWED, "someone.else@example.org"]}}, env=ENV)
    assert wider.returncode == 0, wider.output[-3000:]
    assert RELOAD in wider.changed()[sso.address(NAME)], wider.changed()
    seen["after a rerun that changed the vhost"] = me()
    sso.ssh(NAME, "systemctl reload apache2")
    seen["after systemctl reload apache2"] = me()
    # A certificate 10 days from its end: the next run renews it (and reloads Apache).
    sso.ssh(
        NAME,
        "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 10 -subj /CN=short "
        f"-addext subjectAltName=IP:{sso.address(NAME)} -keyout /etc/ssl/private/jupyter-apache.key "
        f"-out {CERT} 2>/dev/null",
    )
    renewed = sso.pyinfra(env=ENV)
    assert renewed.returncode == 0, renewed.output[-3000:]
    assert RELOAD in renewed.changed()[sso.address(NAME)], renewed.changed()
    new_cert = tmp_path / "renewed.pem"
    new_cert.write_text(sso.ssh(NAME, f"cat {CERT}").stdout)
    assert sso.ssh(NAME, f"openssl x509 -in {CERT} -noout -checkend {300 * 86400}", check=False).returncode == 0
    client.verify = str(new_cert)
    seen["after a certificate renewal"] = me()
    sso.cert = str(new_cert)
    assert seen == dict.fromkeys(seen, 200), seen
    # The sessions are Apache's alone, and nothing of them is readable as text.
    listing = sso.ssh(NAME, "stat -c '%U %a' /var/cache/apache2/jupyter-sign-in; ls /var/cache/apache2/jupyter-sign-in")
    assert listing.stdout.splitlines()[0] == "www-data 700" and len(listing.stdout.splitlines()) > 1
    plain = sso.ssh(NAME, f"grep -rlF {PEOPLE['carol'].email} /var/cache/apache2/jupyter-sign-in | wc -l").stdout
    assert plain.strip() == "0", "a session file holds the person's address in the clear"


def test_the_smoke_check_checks_a_single_sign_on_host_from_outside_and_over_ssh(sso, lab):
    """python -m smoke: no password; the page goes to the provider, the API gets 401, and the
    cell runs on the host over SSH (through Jupyter on loopback, as Apache would ask)."""
    kernels = "ls /var/lib/jupyter/.local/share/jupyter/runtime/ | grep -c '^kernel-' || true"
    before = sso.ssh(NAME, kernels).stdout.strip()
    result = run_smoke(lab, sso.base, sso.cert, timeout=180)
    assert result.returncode == 0, result.stdout + result.stderr
    line = result.stdout.strip()
    assert line.startswith(f"ok    {sso.base}  sign-in redirect ") and "cell on the host" in line, line
    assert "certificate " in line and "days left" in line
    FIGURES["smoke check of a single sign-on host"] = line
    # The check's kernel is gone again.
    assert sso.ssh(NAME, kernels).stdout.strip() == before


def test_a_canary_of_a_single_sign_on_host_with_a_broken_server_stops_the_rollout(sso, lab, tmp_path):
    """scripts/ci-deploy --canary 1 over [nb7, nb2]: nb7's kernels cannot start (ipykernel moved
    away, which no deploy puts back), so its smoke check fails and nb2 is never connected to."""
    other = lab.hosts["nb2"].ip
    inventory = lab.write_inventory(
        tmp_path / "canary.py",
        {
            sso.address(NAME): {
                "conda_installer_url": sso.installer_url,
                "conda_installer_sha256": sso.installer_sha256,
                **LAB_DATA,
                **sso.data[NAME],
            },
            # Deployed as the main run deploys it, had the canary passed.
            other: {
                "conda_installer_url": sso.installer_url,
                "conda_installer_sha256": sso.installer_sha256,
                **LAB_DATA,
            },
        },
    )
    site = "$(echo /opt/anaconda3/lib/python3*/site-packages)"
    sso.ssh(NAME, f"mv {site}/ipykernel /root/ipykernel.aside")
    try:
        env = {**os.environ, **ENV, "PATH": os.environ["PATH"]}
        env.pop("JUPYTER_PASSWORD", None)
        stopped = subprocess.run(
            [sys.executable, "-m", "scripts.ci_deploy", "--canary", "1", str(inventory)],
            cwd=ROOT,
            capture_output=True,
            text=True,
            env=env,
            timeout=600,
        )
    finally:
        sso.ssh(NAME, f"mv /root/ipykernel.aside {site}/ipykernel")
    assert stopped.returncode == 1, stopped.stdout[-3000:] + stopped.stderr[-3000:]
    assert f"FAIL  {sso.address(NAME)}  on the host: " in stopped.stdout, stopped.stdout
    assert "**Canary failed: the other 1 host(s) were not deployed.**" in stopped.stdout
    assert f"[{other}]" not in stopped.stderr, "the other host was deployed"
    FIGURES["canary of a broken single sign-on host"] = next(
        line for line in stopped.stdout.splitlines() if line.startswith("FAIL")
    )


def test_no_secret_is_in_the_run_output_units_journal_or_process_list(sso):
    stored = sso.ssh(NAME, "cat /etc/apache2/jupyter-sign-in/host-secrets.conf").stdout
    passphrase = stored.split("OIDCCryptoPassphrase", 1)[1].split('"')[1]
    proxy_secret = sso.ssh(NAME, "cat /etc/apache2/jupyter-sign-in/proxy-secret").stdout.strip()
    assert len(passphrase) == len(proxy_secret) == 64
    places = {
        "run output (-vvv --diff, then a rerun)": sso.runs["first"].output + sso.runs["second"].output,
        "units": sso.ssh(NAME, "systemctl cat jupyter.service apache2.service").stdout,
        "journal": sso.ssh(NAME, "journalctl --no-pager -o verbose", timeout=120).stdout,
        "process list": sso.ssh(NAME, "ps -eww -o args").stdout,
        "Jupyter's config": sso.ssh(NAME, "cat /etc/jupyter/jupyter_server_config.py").stdout,
    }
    for place, text in places.items():
        for name, secret in (("client secret", CLIENT_SECRET), ("passphrase", passphrase), ("proxy", proxy_secret)):
            assert secret not in text, f"the {name} is in the {place}"


def test_back_to_the_password_the_sign_on_is_gone_and_a_rerun_changes_nothing(sso):
    overrides = {NAME: {"auth": "password"}}
    back = sso.pyinfra(overrides=overrides)
    assert back.returncode == 0, back.output[-4000:]
    again = sso.pyinfra(overrides=overrides)
    assert again.changed().get(sso.address(NAME), []) == []
    assert sso.ssh(NAME, "test -e /etc/apache2/jupyter-sign-in", check=False).returncode != 0
    assert "auth_openidc.load" not in sso.ssh(NAME, "ls /etc/apache2/mods-enabled/").stdout.split()
    assert "OIDC" not in sso.ssh(NAME, "cat /etc/apache2/sites-available/jupyter.conf").stdout
    client = Jupyter(sso.base, ca_file=sso.cert)
    client.login(PASSWORD)
    assert client.execute("print(6 * 7)").strip() == "42"
    password_ms = round_trip_ms(client)
    oidc_ms = getattr(sso, "oidc_round_trip_ms", None)
    FIGURES["kernel round trip (median of 20), oidc vs password"] = (
        f"{oidc_ms:.1f} ms vs {password_ms:.1f} ms" if oidc_ms else f"password {password_ms:.1f} ms"
    )
