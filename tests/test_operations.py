"""Custom operations, from JSON fixtures (pyinfra's own test style, via pyinfra-testing).

Each folder under tests/operations is ``<module>.<operation>`` in ``operations/`` (the module
dotted when it is in a package, e.g. ``jupyter.collaboration``); each
file is one case: what the host reports, the arguments, and the exact commands the
operation must yield -- none at all (with the no-op message) when the host is converged.

An operation that decides from its concern's snapshot (``state``) is fed the snapshot's
own output: ``snapshot`` names how the concern builds it (``of``: its function, ``args``)
or lists its paths, ``host`` holds the lines ``snapshot.HostSnapshot`` reads on the host.
The others (facts of their own) are pyinfra-testing's ``facts``.
"""

import json
from importlib import import_module
from pathlib import Path

import pytest
from pyinfra.context import ctx_host, ctx_state
from pyinfra_testing.operations import make_operation_tests, parse_commands
from pyinfra_testing.util import FakeState, create_host

from operations import snapshot

TESTS_BASE = Path(__file__).parent / "operations"
FOLDERS = sorted(d.name for d in TESTS_BASE.iterdir() if d.is_dir())


def _uses_snapshot(folder: str) -> bool:
    return any("snapshot" in json.loads(case.read_text()) for case in (TESTS_BASE / folder).glob("*.json"))


for _op_path in FOLDERS:
    if not _uses_snapshot(_op_path):
        locals()[_op_path] = make_operation_tests("operations", _op_path, TESTS_BASE / _op_path)


def fed_snapshot(spec: dict, host_lines: list[str]) -> snapshot.Snapshot:
    """The snapshot ``spec`` describes, holding what ``HostSnapshot`` makes of ``host_lines``."""
    if "of" in spec:
        module, function = spec["of"].rsplit(".", 1)
        state = getattr(import_module(f"operations.{module}"), function)(*spec.get("args", []))
    else:
        state = snapshot.Snapshot(**spec)
    state._state = snapshot.HostSnapshot().process(host_lines)
    return state


SNAPSHOT_CASES = [
    (folder, case)
    for folder in FOLDERS
    if _uses_snapshot(folder)
    for case in sorted((TESTS_BASE / folder).glob("*.json"))
]


@pytest.mark.parametrize("folder,case", SNAPSHOT_CASES, ids=[f"{f}/{c.stem}" for f, c in SNAPSHOT_CASES])
def test_operation_deciding_from_its_snapshot(folder, case):
    data = json.loads(case.read_text())
    module, name = folder.rsplit(".", 1)
    operation = getattr(import_module(f"operations.{module}"), name)
    host = create_host(FakeState(), facts={})
    state = fed_snapshot(data["snapshot"], data["host"])
    with ctx_state.use(FakeState()), ctx_host.use(host):
        commands = parse_commands(list(operation._inner(**data["kwargs"], state=state)))
    assert commands == data["commands"]
    if not commands:
        assert host.noop_description == data["noop_description"]


# -- passwords.password_file with a stored file: its line is downloaded, not read by a fact ---

from pyinfra.api import FileUploadCommand  # noqa: E402

from operations import passwords  # noqa: E402


def password_file_commands(owner, stored, **kwargs):
    """(commands as text, no-op message) of password_file on a host holding ``stored``."""
    path = kwargs["path"]
    user, group, mode = owner.split(":")
    state = fed_snapshot({"secret_paths": [path]}, [f"P\t{path}\tfile\t{mode}\t{user}\t{group}\t100.0\t"])
    host = create_host(FakeState(), facts={})
    downloads = []

    def get_file(remote_filename, filename_or_io, *args, **kw):
        downloads.append(remote_filename)
        filename_or_io.write(stored.encode())
        return True

    host.get_file = get_file
    with ctx_state.use(FakeState()), ctx_host.use(host):
        commands = list(passwords.password_file._inner(**kwargs, state=state))
    assert downloads == [path]
    shown = [f"upload {c.src.getvalue()}" if isinstance(c, FileUploadCommand) else str(c) for c in commands]
    return shown, getattr(host, "noop_description", None)


def test_same_password_is_a_noop():
    stored = passwords.hash_password("pw")
    commands, noop = password_file_commands(
        "root:jupyter:640",
        passwords.file_content(stored),
        path="/etc/jupyter/password_hash",
        password="pw",
        group="jupyter",
    )
    assert commands == [] and noop == "/etc/jupyter/password_hash already holds the hash of this password"


def test_same_password_wrong_mode_fixes_only_the_mode():
    stored = passwords.hash_password("pw")
    commands, _ = password_file_commands(
        "root:root:644",
        passwords.file_content(stored),
        path="/etc/jupyter/password_hash",
        password="pw",
        group="jupyter",
    )
    assert commands == ["chown root:jupyter /etc/jupyter/password_hash && chmod 640 /etc/jupyter/password_hash"]


def test_new_password_gets_a_fresh_salt():
    stored = passwords.hash_password("old")
    commands, _ = password_file_commands(
        "root:jupyter:640",
        passwords.file_content(stored),
        path="/etc/jupyter/password_hash",
        password="new",
        group="jupyter",
    )
    [upload] = [c for c in commands if c.startswith("upload ")]
    line = upload.removeprefix("upload ").strip()
    assert passwords.rehash_with(line, "new") == line and line.split("$")[4] != stored.split("$")[4]


def test_htpasswd_same_password_is_a_noop_and_another_user_is_not():
    stored = passwords.file_content(passwords.htpasswd_line("alice", "pw"))
    common = dict(path="/etc/apache2/jupyter.htpasswd", password="pw", group="www-data")
    assert password_file_commands("root:www-data:640", stored, htpasswd_user="alice", **common)[0] == []
    commands, _ = password_file_commands("root:www-data:640", stored, htpasswd_user="bob", **common)
    assert [c for c in commands if c.startswith("upload bob:$2y$10$")]


def test_a_second_line_added_to_the_file_is_replaced():
    """The old code compared the whole file's checksum: so does this (an extra htpasswd user is a login)."""
    stored = passwords.file_content(passwords.htpasswd_line("alice", "pw")) + "mallory:$2y$10$" + "x" * 53 + "\n"
    commands, _ = password_file_commands(
        "root:www-data:640",
        stored,
        path="/etc/apache2/jupyter.htpasswd",
        password="pw",
        group="www-data",
        htpasswd_user="alice",
    )
    [upload] = [c for c in commands if c.startswith("upload ")]
    assert "mallory" not in upload and upload.startswith("upload alice:$2y$10$")


def test_given_hash_is_compared_with_the_stored_line():
    given = passwords.hash_password("pw")
    common = dict(path="/etc/jupyter/password_hash", password_hash=given, group="jupyter")
    assert password_file_commands("root:jupyter:640", passwords.file_content(given), **common)[0] == []
    other = passwords.file_content(passwords.hash_password("pw"))
    assert len(password_file_commands("root:jupyter:640", other, **common)[0]) == 3


def test_the_snapshot_reads_nothing_of_a_password_files_content():
    command = snapshot.HostSnapshot().command(secret_paths=["/etc/jupyter/password_hash"])
    assert "sha256sum" not in command and "cat" not in command and "stat --printf" in command


# -- sign_in.client_secret: the stored file is downloaded and compared, the secret uploaded ---

from operations import sign_in  # noqa: E402


def client_secret_commands(stored: str | None, secret: str):
    path = sign_in.CLIENT_SECRET_CONF
    lines = [f"P\t{path}\tfile\t600\troot\troot\t100.0\t"] if stored is not None else []
    state = fed_snapshot({"of": "sign_in.sign_in_snapshot"}, lines)
    host = create_host(FakeState(), facts={})
    host.get_file = lambda remote, buffer, *a, **k: buffer.write((stored or "").encode()) or True
    with ctx_state.use(FakeState()), ctx_host.use(host):
        commands = list(sign_in.client_secret._inner(secret=secret, state=state))
    return commands, getattr(host, "noop_description", None)


def test_the_same_client_secret_is_a_noop_and_a_new_one_is_uploaded_never_on_a_command_line():
    commands, noop = client_secret_commands(sign_in.client_secret_conf("s3cret"), "s3cret")
    assert commands == [] and noop == f"{sign_in.CLIENT_SECRET_CONF} holds this client secret"
    for stored in (None, sign_in.client_secret_conf("old")):
        commands, _ = client_secret_commands(stored, 'new"s3cret')
        uploads = [c for c in commands if isinstance(c, FileUploadCommand)]
        assert [u.src.getvalue() for u in uploads] == ['OIDCClientSecret "new\\"s3cret"\n']
        assert not any("s3cret" in str(c) for c in commands if not isinstance(c, FileUploadCommand))
        assert "install -m 600 -o root -g root /dev/null" in str(commands[0])


def test_the_host_secrets_script_makes_both_once_root_only_and_the_same_proxy_secret(tmp_path):
    import stat
    import subprocess

    conf, proxy = tmp_path / "host-secrets.conf", tmp_path / "proxy-secret"
    script = Path(__file__).parent.parent / "files" / "sign-in-secrets"
    subprocess.run([str(script), str(conf), str(proxy), sign_in.SECRET_HEADER], check=True)
    first = (conf.read_text(), proxy.read_text())
    secret = proxy.read_text().strip()
    assert len(secret) == 64 and f'RequestHeader set {sign_in.SECRET_HEADER} "{secret}"' in first[0]
    passphrase = first[0].split("OIDCCryptoPassphrase", 1)[1].split('"')[1]
    assert len(passphrase) == 64 and passphrase != secret
    assert all(stat.S_IMODE(p.stat().st_mode) == 0o600 for p in (conf, proxy))
    subprocess.run([str(script), str(conf), str(proxy), sign_in.SECRET_HEADER], check=True)
    assert (conf.read_text(), proxy.read_text()) == first
