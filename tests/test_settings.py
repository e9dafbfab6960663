"""Settings: every bad value is refused with one line naming it; docs agree with the code."""

import ast
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from operations import settings

ROOT = Path(__file__).resolve().parent.parent
GOOD_HASH = "argon2:$argon2id$v=19$m=10240,t=10,p=8$c2FsdHNhbHRzYWx0$ZGlnZXN0ZGlnZXN0ZGlnZXN0"
ENV = {settings.PASSWORD_ENV: "correct horse"}

BAD = [
    # (setting, value, words the message must contain)
    ("jupyter_port", 99999, "integer from 1 to 65535"),
    ("jupyter_port", 0, "integer from 1 to 65535"),
    ("jupyter_port", "8888", "integer from 1 to 65535"),
    ("jupyter_port", True, "integer from 1 to 65535"),
    ("jupyter_base_url", "jupyter/", "starts and ends with '/'"),
    ("jupyter_base_url", "/jupyter", "starts and ends with '/'"),
    ("jupyter_base_url", "/my notebooks/", "without spaces"),
    ("server_name", "not a host!", "hostname or an IP"),
    ("server_name", "-bad-.example.org", "hostname or an IP"),
    ("jupyter_user", "root", "not root"),
    ("jupyter_user", "Jupyter User", "system user name"),
    ("notebook_dir", "srv/jupyter", "absolute path"),
    ("conda_prefix", "opt/anaconda3", "absolute path"),
    ("notebook_dir", '/srv/"; rm -rf /', "no spaces or quotes"),
    ("conda_prefix", "/opt/$(id)", "no spaces or quotes"),
    ("conda_installer_sha256", "abc123", "64 hexadecimal"),
    ("conda_installer_sha256", "g" * 64, "64 hexadecimal"),
    ("conda_installer_url", "ftp://example.org/x.sh", "http:// or https://"),
    ("conda_jupyter_install", "apt", "'bundled', 'conda', 'pip'"),
    ("conda_accept_tos", "yes", "true or false"),
    ("tls_mode", "letsencrypt-please", "one of 'self-signed', 'letsencrypt'"),
    ("letsencrypt_email", "admin", "an e-mail address"),
    ("acme_directory_url", "http://acme.test/dir", "an https:// URL"),
    ("acme_ca_bundle", "/nonexistent/acme-ca.pem", "readable local PEM file"),
    ("firewall", "on", "true or false"),
    ("jupyter_terminals", 1, "true or false"),
    ("basic_auth_user", "al ice", "user name of letters"),
    ("apache_extra_directives", "Header set X 1", "a list of Apache directive lines"),
    ("apache_extra_directives", ["A\nB"], "a list of Apache directive lines"),
    # Security review: values that reach the vhost, the Jupyter config or root's chown.
    ("server_name", 'fe80::1%"\nCustomLog "|/bin/sh -c id" common', "hostname or an IPv4 address"),
    ("server_name", "fe80::1%eth0", "hostname or an IPv4 address"),
    ("server_name", "2001:db8::1", "IPv6 address is not supported"),
    ("server_name", "2001:DB8:0::1", "IPv6 address is not supported"),
    ("server_name", "::ffff:192.0.2.1", "IPv6 address is not supported"),
    ("notebook_dir", "/", "not '/'"),
    ("notebook_dir", "/srv/../etc", "no '.' or '..' parts"),
    ("notebook_dir", "/srv/./jupyter", "no '.' or '..' parts"),
    ("notebook_dir", "/srv//jupyter", "no '//'"),
    ("notebook_dir", "/srv/jupyter/", "no trailing '/'"),
    ("notebook_dir", "/etc", "not in a system directory"),
    ("notebook_dir", "/etc/ssh", "not in a system directory"),
    ("notebook_dir", "/usr/local/notebooks", "not in a system directory"),
    ("notebook_dir", "/var/lib/jupyter", "not in a system directory"),
    ("notebook_dir", "/var/lib/jupyter/notebooks", "not in a system directory"),
    ("notebook_dir", "/root/notebooks", "not in a system directory"),
    ("notebook_dir", "/home", "not '/', not one of /home"),
    ("notebook_dir", "/srv", "not '/', not one of /home"),
    ("conda_prefix", "/usr", "not in a system directory"),
    ("conda_prefix", "/opt", "not '/', not one of /home"),
    ("notebook_dir", "/home/alice", "not a person's home directory itself"),
    ("max_request_size", "1M", "a size from 2M to 1G"),
    ("max_request_size", "2G", "a size from 2M to 1G"),
    ("max_request_size", 100, "a size from 2M to 1G"),
    # Login ban: the ignore list lands in fail2ban's jail file, one word per network.
    ("login_ban", "yes", "true or false"),
    ("login_ban_max_failures", 0, "a whole number from 1 to 100"),
    ("login_ban_max_failures", "5", "a whole number from 1 to 100"),
    ("login_ban_window", 5, "seconds from 10 to 86400"),
    ("login_ban_seconds", -1, "seconds from 10 to 2592000"),
    ("login_ban_ignore", "203.0.113.7", "a list of IP addresses or CIDR networks"),
    ("login_ban_ignore", ["203.0.113.7\nbanaction = dummy"], "is not one"),
    ("login_ban_ignore", ["203.0.113.7 198.51.100.1"], "is not one"),
    ("login_ban_ignore", ["203.0.113.7/24"], "is not one"),
    ("login_ban_ignore", ["office.example.org"], "is not one"),
    ("login_ban_ignore", ["fe80::1%eth0"], "is not one"),
]

GOOD = [
    ("server_name", "203.0.113.7"),
    ("server_name", "nb1.example.org"),
    ("server_name", "nb1.example.org."),
    ("notebook_dir", "/srv/jupyter"),
    ("notebook_dir", "/home/alice/notebooks"),
    ("notebook_dir", "/data"),
    ("conda_prefix", "/opt/miniforge3"),
    ("login_ban_ignore", ["203.0.113.7", "198.51.100.0/24", "2001:db8::/32", "2001:db8::7"]),
    ("login_ban_max_failures", 1),
    ("login_ban_seconds", 86400),
]


@pytest.mark.parametrize("name,value", GOOD, ids=[f"{n}={v!r}" for n, v in GOOD])
def test_good_value_is_accepted(name, value):
    assert settings.check_values({name: value}, environ=ENV) == []


@pytest.mark.parametrize("value", ["1.2.3.4\n", "01.2.3.4", "1.2.3.4 ", "fe80::1%x", "::FFFF:1.2.3.4"])
def test_only_canonical_addresses_count_as_addresses(value):
    assert not settings.is_ip(value)


@pytest.mark.parametrize(
    "notebook_dir,prefix",
    [
        ("/opt/anaconda3", "/opt/anaconda3"),
        ("/opt/anaconda3/notebooks", "/opt/anaconda3"),
        ("/data", "/data/anaconda3"),
    ],
)
def test_notebook_dir_and_the_prefix_must_not_overlap(notebook_dir, prefix):
    [error] = settings.check_values({"notebook_dir": notebook_dir, "conda_prefix": prefix}, environ=ENV)
    assert error.startswith(f"setting notebook_dir = {notebook_dir!r} is not allowed: must not be conda_prefix")


class _Host:
    def __init__(self, name, data):
        self.name, self.data = (
            name,
            type("Data", (), {"dict": lambda _: data, "get": lambda _, k, d=None: data.get(k, d)})(),
        )


def test_an_ipv6_inventory_name_needs_a_server_name():
    with pytest.raises(settings.SettingsError, match="inventory name '2001:db8::7' is not a hostname or IPv4 address"):
        with pytest.MonkeyPatch.context() as patch:
            patch.setenv(settings.PASSWORD_ENV, "x")
            settings.validate(_Host("2001:db8::7", {}))


@pytest.mark.parametrize("name,value,allowed", BAD, ids=[f"{n}={v!r}" for n, v, _ in BAD])
def test_bad_value_is_named_with_what_is_allowed(name, value, allowed):
    errors = settings.check_values({name: value}, environ=ENV)
    assert len(errors) == 1, errors
    assert errors[0].startswith(f"setting {name} = {value!r} is not allowed: must be ")
    assert allowed in errors[0]


def test_defaults_are_valid():
    assert settings.check_values({}, environ=ENV) == []
    assert settings.check_values({"jupyter_password_hash": GOOD_HASH}, environ={}) == []


@pytest.mark.parametrize("secret", ["hunter2", "sha1:abcd:0123456789abcdef", "$argon2id$v=19$m=1,t=1,p=1$x$y"])
def test_password_hash_that_is_not_one_is_refused_without_echoing_it(secret):
    [error] = settings.check_values({"jupyter_password_hash": secret}, environ=ENV)
    assert "jupyter_password_hash" in error
    assert secret not in error
    assert "(value hidden)" in error


def test_plaintext_in_the_hash_setting_says_where_it_belongs():
    [error] = settings.check_values({"jupyter_password_hash": "hunter2"}, environ=ENV)
    assert "plaintext" in error and settings.PASSWORD_ENV in error


def test_basic_auth_without_its_password_is_refused():
    [error] = settings.check_values({"basic_auth_user": "alice"}, environ=ENV)
    assert "basic_auth_user = 'alice'" in error and settings.BASIC_AUTH_PASSWORD_ENV in error
    assert (
        settings.check_values({"basic_auth_user": "alice"}, environ={**ENV, settings.BASIC_AUTH_PASSWORD_ENV: "x"})
        == []
    )


def test_no_password_at_all_is_refused():
    [error] = settings.check_values({}, environ={})
    assert "jupyter_password_hash" in error and settings.PASSWORD_ENV in error


@pytest.mark.parametrize(
    "typo,meant",
    [
        ("jupyter_prot", "jupyter_port"),
        ("notebookdir", "notebook_dir"),
        ("conda_installer_sha", "conda_installer_sha256"),
        ("tls_mod", "tls_mode"),
    ],
)
def test_typo_of_a_setting_name_suggests_the_real_one(typo, meant):
    [error] = settings.check_values({typo: 1}, environ=ENV)
    assert error == f"unknown setting {typo!r}: did you mean {meant!r}?"


def test_pyinfra_own_data_is_not_taken_for_a_typo():
    assert (
        settings.check_values({"ssh_user": "root", "ssh_port": 22, "ssh_key": "/k", "_sudo": True}, environ=ENV) == []
    )


def run_cli(*data, env_password="correct horse"):
    env = dict(os.environ, PYINFRA_FAKE_DELAY="0", PYINFRA_FAKE_DELAY_JITTER="0")
    env[settings.PASSWORD_ENV] = env_password
    args = [sys.executable, "-m", "pyinfra", "-y", "@fake", "deploy.py", "--data", "server_name=nb.test"]
    for item in data:
        args += ["--data", item]
    return subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize(
    "data,message",
    [
        ("jupyter_port=70000", "setting jupyter_port = 70000 is not allowed: must be an integer from 1 to 65535"),
        ("jupyter_base_url=jupyter", "setting jupyter_base_url = 'jupyter' is not allowed"),
        ("jupyter_password_hash=hunter2", "setting jupyter_password_hash = (value hidden) is not allowed"),
        ("jupyter_prot=8888", "unknown setting 'jupyter_prot': did you mean 'jupyter_port'?"),
        ("memory_limt=600M", "unknown setting 'memory_limt': did you mean 'memory_limit'?"),
        ("kernel_memory=600M", "unknown setting 'kernel_memory' given with --data: this version has no such setting"),
        ('pip_packages=["numpy; rm -rf /"]', "setting pip_packages = ['numpy; rm -rf /'] is not allowed"),
        ("memory_limit=100M", "setting memory_limit = '100M' is not allowed"),
    ],
)
def test_cli_refuses_bad_input_before_any_operation(data, message):
    result = run_cli(data)
    assert result.returncode != 0
    output = result.stdout + result.stderr
    assert message in output
    assert "Starting operation" not in output and "Beginning operation run" not in output
    assert "hunter2" not in output
    error_lines = [line for line in output.splitlines() if "is not allowed" in line or "unknown setting" in line]
    assert len(error_lines) == 1


def test_cli_without_any_password_is_refused():
    result = run_cli(env_password="")
    assert result.returncode != 0
    assert "jupyter_password_hash is not set and JUPYTER_PASSWORD is empty" in result.stdout + result.stderr


def test_inventory_name_that_is_no_hostname_needs_server_name(monkeypatch):
    class Host:
        name = "@fake"
        data = type("Data", (), {"dict": lambda self: {}})()

    monkeypatch.setenv(settings.PASSWORD_ENV, "x")
    with pytest.raises(settings.SettingsError, match="set server_name"):
        settings.validate(Host())


def test_the_settings_table_and_group_data_are_what_the_registry_makes_of_them():
    result = subprocess.run(
        [sys.executable, "-m", "scripts.settings_docs", "--check"], capture_output=True, text=True, cwd=ROOT
    )
    assert result.returncode == 0, result.stderr


def test_group_data_offers_every_setting_commented_out_with_its_default_and_meaning():
    text = (ROOT / "group_data" / "all.py").read_text()
    namespace = {}
    exec(compile(text, "all.py", "exec"), namespace)
    assert not [name for name in namespace if name in settings.BY_NAME], "group_data sets values itself"
    lines = text.splitlines()
    for setting in settings.SETTINGS:
        example = f"# {setting.name} = {setting.default!r}"
        at = lines.index(example)
        assert lines[at - 1] == f"# {setting.meaning}", setting.name
        # Uncommenting the line gives the default.
        assert ast.literal_eval(example.split(" = ", 1)[1]) == setting.default


def test_a_user_who_uncomments_a_line_keeps_it_and_the_docs_check_still_passes(tmp_path):
    from scripts import settings_docs

    edited = (ROOT / "group_data" / "all.py").read_text().replace("# jupyter_port = 8888", "jupyter_port = 9999")
    assert settings_docs.group_data(edited) == edited
    # A stale settings table is caught.
    page = (ROOT / "docs" / "settings.md").read_text()
    assert settings_docs.settings_page(page) == page
    assert (
        settings_docs.settings_page(page.replace("| `jupyter_port` | `8888` |", "| `jupyter_port` | `8000` |")) == page
    )


def test_the_settings_page_lists_every_setting_with_its_default():
    page = (ROOT / "docs" / "settings.md").read_text()
    rows = dict(re.findall(r"^\| `(\w+)` \| (.+?) \|", page, flags=re.M))
    for setting in settings.SETTINGS:
        assert setting.name in rows, f"docs/settings.md lacks {setting.name}"
        assert rows[setting.name] == f"`{setting.default!r}`", setting.name
    assert set(rows) <= set(settings.BY_NAME), "docs/settings.md documents settings that do not exist"


def test_acme_ca_bundle_must_be_certificates_only(tmp_path):
    good = tmp_path / "ca.pem"
    good.write_text("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n")
    assert settings.check_values({"acme_ca_bundle": str(good)}, environ=ENV) == []
    with_key = tmp_path / "ca-and-key.pem"
    with_key.write_text(good.read_text() + "-----BEGIN PRIVATE KEY-----\nMIIB\n-----END PRIVATE KEY-----\n")
    [error] = settings.check_values({"acme_ca_bundle": str(with_key)}, environ=ENV)
    assert "(no private keys)" in error


class FakeData(dict):
    def dict(self):
        return dict(self)


def test_unknown_name_in_inventory_data_is_a_warning_naming_it(tmp_path):
    inventory = tmp_path / "inventory.py"
    inventory.write_text('notebooks = [("@fake", {"server_name": "nb.test", "course_name": "physics 101"})]\n')
    env = dict(os.environ, PYINFRA_FAKE_DELAY="0", PYINFRA_FAKE_DELAY_JITTER="0", **{settings.PASSWORD_ENV: "x"})
    result = subprocess.run(
        [sys.executable, "-m", "pyinfra", "-y", "--dry", str(inventory), "deploy.py"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    output = result.stdout + result.stderr
    assert "host data 'course_name' is not a setting of this deploy and is ignored" in output
    assert "physics 101" not in output


@pytest.mark.parametrize(
    "keys,unknown",
    [
        ({"ssh_user", "ssh_file_transfer_protocol", "_sudo", "fake_responses", "memory_limit"}, []),
        ({"memory_limit", "kernel_memory"}, ["kernel_memory"]),
    ],
)
def test_only_names_that_are_neither_ours_nor_pyinfras_are_unknown(keys, unknown):
    assert settings.unknown_names(keys) == unknown


@pytest.mark.parametrize(
    "name,value",
    [
        ("pip_packages", ["requests>=2.31,<3", "tabulate==0.9.0", "jupyterlab-git", "black[jupyter]~=24.1"]),
        ("conda_packages", ["numpy", "scipy>=1.11", "conda-forge::xarray", "python=3.11", "pytorch=2.1=*cpu*"]),
        ("memory_limit", "2G"),
        ("memory_limit", "80%"),
        ("memory_limit", None),
        ("cpu_limit", 1.5),
        ("cpu_limit", 2),
        ("cull_idle_kernels_after", 0),
        ("cull_idle_kernels_after", 3600),
        ("apache_proxy_timeout", 60),
    ],
)
def test_good_environment_values_are_accepted(name, value):
    assert settings.check_values({name: value}, environ=ENV) == []


@pytest.mark.parametrize(
    "name,value",
    [
        ("pip_packages", ["numpy pandas"]),
        ("pip_packages", ["numpy;rm -rf /"]),
        ("pip_packages", ["x @ https://e.org/x.whl"]),
        ("pip_packages", ["https://e.org/x.whl"]),
        ("pip_packages", ["-e ."]),
        ("pip_packages", ["$(id)"]),
        ("pip_packages", "numpy"),
        ("pip_packages", ["numpy", "numpy"]),
        ("conda_packages", ["numpy 1.2"]),
        ("conda_packages", ["numpy`id`"]),
        ("memory_limit", "100M"),
        ("memory_limit", "99%"),
        ("memory_limit", "2GB"),
        ("memory_limit", 2),
        ("cpu_limit", 0),
        ("cpu_limit", "1.5"),
        ("cull_idle_kernels_after", 5),
        ("cull_idle_kernels_after", -1),
        ("apache_proxy_timeout", 1),
    ],
)
def test_bad_environment_values_are_refused(name, value):
    [error] = settings.check_values({name: value}, environ=ENV)
    assert error.startswith(f"setting {name} = {value!r} is not allowed: must be ")


def test_requirements_file_is_checked_on_the_control_machine(tmp_path):
    good = tmp_path / "good.txt"
    good.write_text("# course pins\ntabulate==0.9.0\n\nrequests>=2.31  # http\n")
    assert settings.check_values({"pip_requirements": str(good)}, environ=ENV) == []
    bad = tmp_path / "bad.txt"
    bad.write_text("tabulate\n--index-url https://evil.example/simple\n")
    [error] = settings.check_values({"pip_requirements": str(bad)}, environ=ENV)
    assert "line 2 is '--index-url https://evil.example/simple'" in error
    [error] = settings.check_values({"pip_requirements": str(tmp_path / "missing.txt")}, environ=ENV)
    assert "readable local requirements file" in error


class FakeHost:
    def __init__(self, name, **data):
        self.name, self.data = name, FakeData(data)


@pytest.mark.parametrize("name,server_name", [("203.0.113.7", None), ("nb1", "203.0.113.7"), ("nb1", None)])
def test_letsencrypt_needs_a_dns_name(monkeypatch, name, server_name):
    monkeypatch.setenv(settings.PASSWORD_ENV, "x")
    host = FakeHost(name, tls_mode="letsencrypt", server_name=server_name)
    with pytest.raises(settings.SettingsError) as error:
        settings.validate(host)
    shown = server_name or name
    assert f"setting tls_mode = 'letsencrypt' needs a DNS name, not {shown!r}" in str(error.value)
    settings.validate(FakeHost(name, tls_mode="letsencrypt", server_name="nb1.example.org"))


def test_config_py_and_pyproject_pin_the_same_pyinfra_range():
    namespace = {}
    exec((ROOT / "config.py").read_text(), namespace)
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert f'"pyinfra{namespace["REQUIRE_PYINFRA_VERSION"]}"' in pyproject


# A value of each string setting that is accepted (files: made by the test).
STRING_EXAMPLES = {
    "server_name": "nb.example.org",
    "jupyter_password_hash": GOOD_HASH,
    "basic_auth_user": "alice",
    "backup_repository": "/srv/backups/jupyter",
    "backup_schedule": "daily",
    "restore_to": "/srv/restored",
    "letsencrypt_email": "you@example.org",
}


def string_settings(tmp_path) -> dict[str, str]:
    ca = tmp_path / "ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n")
    requirements = tmp_path / "requirements.txt"
    requirements.write_text("tabulate==0.9.0\n")
    key = tmp_path / "key"
    key.write_text("key\n")
    files = {
        "acme_ca_bundle": str(ca),
        "oidc_ca_bundle": str(ca),
        "pip_requirements": str(requirements),
        "backup_ssh_key": str(key),
    }
    values = {s.name: s.default for s in settings.SETTINGS if isinstance(s.default, str) and s.default}
    return {**values, **STRING_EXAMPLES, **files}


def test_every_string_setting_refuses_a_trailing_newline(tmp_path):
    """`re.match(...$)` lets 'x\n' through: every check matches the whole value."""
    env = {**ENV, settings.BACKUP_PASSWORD_ENV: "y", settings.BASIC_AUTH_PASSWORD_ENV: "z"}
    examples = string_settings(tmp_path)
    assert set(examples) >= {s.name for s in settings.SETTINGS if isinstance(s.default, str)}
    for name, value in examples.items():
        assert settings.check_values({name: value}, environ=env) == [], name
        errors = settings.check_values({name: value + "\n"}, environ=env)
        assert errors and all(f"setting {name} = " in error for error in errors), (name, errors)
    for name, value in [("pip_packages", "tabulate"), ("conda_packages", "numpy"), ("login_ban_ignore", "203.0.113.7")]:
        assert settings.check_values({name: [value]}, environ=env) == []
        assert settings.check_values({name: [value + "\n"]}, environ=env), name


@pytest.mark.parametrize(
    "repository",
    ["/var/backups/jupyter", "/var/lib/jupyter-restic", "/var/lib/nb/restic"],
)
def test_a_local_repository_may_be_where_debian_keeps_backups(repository):
    env = {**ENV, settings.BACKUP_PASSWORD_ENV: "y"}
    assert settings.check_values({"backup_repository": repository}, environ=env) == []


@pytest.mark.parametrize(
    "repository,allowed",
    [
        ("/var/lib/jupyter-backup", "not one this deploy keeps its state in"),
        ("/var/lib/jupyter-apache-deploy/r", "not one this deploy keeps its state in"),
        ("/var/lib/jupyter", "must not be inside or contain what it backs up"),
        ("/var/log/restic", "a directory of its own in /var/backups or /var/lib"),
        ("/var/backups/../log", "a normalised path"),
    ],
)
def test_a_local_repository_is_never_one_of_the_deploys_own_directories(repository, allowed):
    [error] = settings.check_values({"backup_repository": repository}, environ={**ENV, "JUPYTER_BACKUP_PASSWORD": "y"})
    assert allowed in error, error


def test_a_repository_password_in_a_url_is_never_printed_and_never_sent_in_clear():
    secret = "s3cret-pw"
    assert settings.shown_repository(f"rest:https://user:{secret}@backup.example.org:8000/nb1") == (
        "rest:https://***@backup.example.org:8000/nb1"
    )
    # The password is missing from the environment: the message names the repository, not its password.
    url = f"rest:https://user:{secret}@h.example.org/nb1"
    [missing] = settings.check_values({"backup_repository": url}, environ=ENV)
    assert "needs a password" in missing and secret not in missing and "***@h.example.org" in missing
    # A bad value with credentials in it: refused, and shown without them.
    [bad] = settings.check_values({"backup_repository": f"rest:https://user:{secret}@h/x y"}, environ=ENV)
    assert secret not in bad and "user:" not in bad and "***@h/x y" in bad
    # Over plain http they would travel in clear.
    env = {**ENV, settings.BACKUP_PASSWORD_ENV: "y"}
    [clear] = settings.check_values({"backup_repository": f"rest:http://user:{secret}@h.example.org/nb1"}, environ=env)
    assert "over https://" in clear and secret not in clear
    assert settings.check_values({"backup_repository": "rest:http://h.example.org/nb1"}, environ=env) == []


def test_restore_to_is_never_inside_what_the_notebook_user_can_write():
    for target in ("/srv/jupyter/restored", "/srv/jupyter", "/srv/jupyter/a/b"):
        [error] = settings.check_values({"restore_to": target}, environ=ENV)
        assert f"setting restore_to = {target!r} is not allowed" in error and "notebook user" in error, error
    assert settings.check_values({"restore_to": "/srv/restored"}, environ=ENV) == []


# --- Single sign-on -------------------------------------------------------------------------

OIDC = {
    "auth": "oidc",
    "oidc_issuer": "https://login.example.org/realms/lab",
    "oidc_client_id": "jupyter",
    "oidc_allowed": ["ada@example.org", "group:physics"],
}
OIDC_ENV = {settings.OIDC_CLIENT_SECRET_ENV: "s3cret-from-the-provider"}


def test_oidc_settings_are_accepted_without_a_jupyter_password():
    assert settings.check_values(OIDC, environ=OIDC_ENV) == []


@pytest.mark.parametrize(
    "missing, words",
    [
        ("oidc_issuer", "needs setting oidc_issuer"),
        ("oidc_client_id", "needs setting oidc_client_id"),
        ("oidc_allowed", "needs setting oidc_allowed (a non-empty list"),
    ],
)
def test_oidc_needs_its_issuer_client_and_who_is_allowed(missing, words):
    values = {**OIDC, missing: [] if missing == "oidc_allowed" else None}
    errors = settings.check_values(values, environ=OIDC_ENV)
    assert len(errors) == 1 and words in errors[0], errors


def test_oidc_needs_the_client_secret_in_the_environment_and_never_echoes_it():
    errors = settings.check_values(OIDC, environ={})
    assert len(errors) == 1 and settings.OIDC_CLIENT_SECRET_ENV in errors[0], errors


@pytest.mark.parametrize(
    "name, value, words",
    [
        ("auth", "saml", "one of 'password', 'oidc'"),
        ("oidc_issuer", "http://login.example.org", "https:// URL"),
        ("oidc_client_id", "my client", "no spaces or quotes"),
        ("oidc_client_id", 'a"b', "no spaces or quotes"),
        ("oidc_allowed", ["ada"], "e-mail addresses and 'group:NAME'"),
        ("oidc_allowed", ["group:two words"], "e-mail addresses and 'group:NAME'"),
        ("oidc_allowed", "ada@example.org", "a list of"),
        ("oidc_ca_bundle", "/nonexistent/ca.pem", "readable local PEM file"),
        ("collaboration", "yes", "true or false"),
    ],
)
def test_bad_single_sign_on_values_are_refused_with_one_line(name, value, words):
    errors = settings.check_values({**OIDC, name: value}, environ=OIDC_ENV)
    assert any(f"setting {name} = " in e and words in e for e in errors), errors


def test_basic_auth_cannot_guard_the_same_path_as_oidc():
    errors = settings.check_values(
        {**OIDC, "basic_auth_user": "alice"}, environ={**OIDC_ENV, settings.BASIC_AUTH_PASSWORD_ENV: "x"}
    )
    assert len(errors) == 1 and "basic_auth_user = 'alice' is not allowed with auth = 'oidc'" in errors[0]


def test_each_setting_is_read_by_a_module_its_group_names():
    """The registry's pointer from a setting to the code that reads it (shown in group_data and
    the settings page) is right: one of its group's modules (a directory: a file in it) names it."""
    from operations.settings import registry

    root = Path(__file__).resolve().parent.parent
    wrong = []
    for group in registry.GROUPS:
        places = [root / place.strip() for place in group.modules.split(",")]
        texts = [
            path.read_text()
            for place in places
            for path in (sorted(place.rglob("*.py")) if place.is_dir() else [place])
            if path.exists()
        ]
        assert texts, f"{group.title}: {group.modules} names no file"
        wrong += [
            f"{setting.name} ({group.modules})"
            for setting in group.settings
            if not any(re.search(rf"\b{setting.name}\b", text) for text in texts)
        ]
    assert wrong == []
