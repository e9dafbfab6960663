"""
Request bodies: the login form gets a few KiB, everything else up to max_request_size (8M
on nb6, 100M by default); bigger ones are refused by Apache before Jupyter buffers them,
and by Jupyter itself behind Apache. Uploads from the UI, which come in 1 MiB chunks, are not affected:
a 50 MiB file goes through.
"""

import base64
import hashlib
import os

import pytest
import requests

from operations import apache, settings
from smoke.client import Jupyter
from tests.e2e.scenario import ENV_DATA, PASSWORD

NAME = "nb6"
LIMIT = settings.size_bytes(ENV_DATA["max_request_size"])
# JupyterLab's (and Notebook 7's) upload chunk: 1 MiB of file, base64 in a JSON body.
CHUNK = 1024 * 1024


@pytest.fixture
def jupyter(deployment, ca_files):
    client = Jupyter(f"https://{deployment.address(NAME)}/jupyter/", ca_file=str(ca_files[NAME]), timeout=60)
    client.login(PASSWORD)
    return client


def test_a_big_login_body_is_refused_by_apache(deployment, ca_files):
    client = Jupyter(f"https://{deployment.address(NAME)}/jupyter/", ca_file=str(ca_files[NAME]))
    client.get("login")
    response = client.session.post(
        client.base + "login",
        verify=client.verify,
        timeout=20,
        allow_redirects=False,
        data={"password": "x" * (apache.LOGIN_REQUEST_BYTES + 1), "_xsrf": client.xsrf()},
    )
    assert response.status_code == 413
    assert "Request Entity Too Large" in response.text  # Apache's page: Jupyter never saw it


def test_a_body_over_max_request_size_is_refused_by_apache(jupyter):
    body = b"{" + b" " * LIMIT + b"}"
    response = jupyter.session.put(
        jupyter.base + "api/contents/too-big.json",
        data=body,
        verify=jupyter.verify,
        headers={"X-XSRFToken": jupyter.xsrf(), "Content-Type": "application/json"},
        timeout=60,
    )
    assert response.status_code == 413
    assert "Request Entity Too Large" in response.text


def test_jupyter_itself_refuses_a_body_over_the_limit(deployment):
    """Behind Apache (from the host itself, say): tornado answers 400 and closes, unread."""
    port = settings.DEFAULTS["jupyter_port"]
    result = deployment.ssh(
        NAME,
        f"head -c {LIMIT + 1} /dev/zero > /tmp/big-body && "
        "curl -s -o /dev/null -w '%{http_code}' -X PUT --data-binary @/tmp/big-body "
        f"http://127.0.0.1:{port}/jupyter/api/contents/x; rm -f /tmp/big-body",
        check=False,
    )
    # An accepted body would get Jupyter's 403 for the missing login instead.
    assert result.stdout.strip() == "400", result.stdout


def test_a_50_mib_upload_in_chunks_goes_through(deployment, jupyter):
    data = os.urandom(50 * CHUNK)
    path = "contents/upload-50mib.bin"
    chunks = [data[i : i + CHUNK] for i in range(0, len(data), CHUNK)]
    try:
        for number, chunk in enumerate(chunks, start=1):
            model = {
                "type": "file",
                "format": "base64",
                "name": "upload-50mib.bin",
                "path": "upload-50mib.bin",
                "chunk": -1 if number == len(chunks) else number,
                "content": base64.b64encode(chunk).decode(),
            }
            jupyter.api("PUT", path, json=model)
        stored = deployment.ssh(NAME, "sha256sum /srv/jupyter/upload-50mib.bin").stdout.split()[0]
        assert stored == hashlib.sha256(data).hexdigest()
    finally:
        try:
            jupyter.api("DELETE", path)
        except requests.HTTPError:
            pass
