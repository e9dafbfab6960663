"""Custom operations, from JSON fixtures (pyinfra's own test style, via pyinfra-testing).

Each folder under tests/operations is ``<module>.<operation>`` in ``operations/``; each
file is one case: the facts a host reports, the arguments, and the exact commands the
operation must yield -- none at all (with the no-op message) when the host is converged.
"""

from pathlib import Path

from pyinfra_testing.operations import make_operation_tests

TESTS_BASE = Path(__file__).parent / "operations"

for _op_path in sorted(d.name for d in TESTS_BASE.iterdir() if d.is_dir()):
    locals()[_op_path] = make_operation_tests("operations", _op_path, TESTS_BASE / _op_path)


# -- passwords.password_file with a stored file: its line is downloaded, not read by a fact ---

from pyinfra.api import FileUploadCommand  # noqa: E402
from pyinfra.context import ctx_host, ctx_state  # noqa: E402
from pyinfra_testing.util import FakeState, create_host  # noqa: E402

from operations import passwords  # noqa: E402


def password_file_commands(owner, stored, **kwargs):
    """(commands as text, no-op message) of password_file on a host holding ``stored``."""
    path = kwargs["path"]
    host = create_host(FakeState(), facts={"passwords.PasswordFileOwner": {f"path={path}": owner}})
    downloads = []

    def get_file(remote_filename, filename_or_io, *args, **kw):
        downloads.append(remote_filename)
        filename_or_io.write(stored.encode())
        return True

    host.get_file = get_file
    with ctx_state.use(FakeState()), ctx_host.use(host):
        commands = list(passwords.password_file._inner(**kwargs))
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


def test_the_only_fact_about_a_password_file_reads_nothing_of_its_content():
    command = passwords.PasswordFileOwner().command(path="/etc/jupyter/password_hash")
    assert command == "if [ -f /etc/jupyter/password_hash ]; then stat -c '%U:%G:%a' /etc/jupyter/password_hash; fi"
