"""per_person_servers (operations/hub/): its settings' refusals, and what the hub, its proxy,
the people's slice and people's servers are given."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from operations import people, settings
from operations.hub import config, layout
from operations.jupyter import unit as server_unit

ROOT = Path(__file__).resolve().parent.parent
OIDC = {
    "auth": "oidc",
    "oidc_issuer": "https://sso.example.org/",
    "oidc_client_id": "jupyter",
    "oidc_allowed": ["ann@example.org", "bob@example.org", "group:physics"],
}
ENV = {settings.OIDC_CLIENT_SECRET_ENV: "s3cret", settings.PASSWORD_ENV: "x"}
PER_PERSON = {**OIDC, "per_person_servers": True}


def data(**values):
    return SimpleNamespace(**{**settings.DEFAULTS, **PER_PERSON, **values})


def test_per_person_servers_with_oidc_is_accepted():
    assert settings.check_values({**PER_PERSON, "hub_admins": ["ann@example.org"]}, environ=ENV) == []


ARGON2 = "$argon2id$v=19$m=65536,t=3,p=4$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA"


@pytest.mark.parametrize("first_password", [ARGON2, "argon2:" + ARGON2, "$2b$12$" + "a" * 53])
def test_per_person_passwords_are_accepted_with_a_hash_for_each_admin_and_no_shared_password(first_password):
    """auth 'password' with per_person_servers: no OIDC settings, no JUPYTER_PASSWORD."""
    values = {
        "per_person_servers": True,
        "auth": "password",
        "hub_admins": ["Ann@example.org"],
        "hub_admin_password_hashes": {"ann@example.org": first_password},
    }
    assert settings.check_values(values, environ={}) == []


def test_a_password_given_for_an_admin_is_refused_without_being_shown():
    values = {
        "per_person_servers": True,
        "auth": "password",
        "hub_admins": ["ann@example.org"],
        "hub_admin_password_hashes": {"ann@example.org": "correct horse battery"},
    }
    [error] = settings.check_values(values, environ={})
    assert error.startswith("setting hub_admin_password_hashes") and "bcrypt" in error, error
    assert "correct horse" not in error


@pytest.mark.parametrize(
    "values, words",
    [
        ({"auth": "password"}, "setting hub_admins = [] is not allowed with per_person_servers = True and auth"),
        (
            {"auth": "password", "hub_admins": ["ann@example.org"]},
            "setting hub_admin_password_hashes has no hash for hub_admins address 'ann@example.org'",
        ),
        (
            {
                "auth": "password",
                "hub_admins": ["ann@example.org"],
                "hub_admin_password_hashes": {
                    "ann@example.org": "$2b$12$" + "a" * 53,
                    "bob@example.org": "$2b$12$" + "b" * 53,
                },
            },
            "setting hub_admin_password_hashes: 'bob@example.org' is not in hub_admins",
        ),
        (
            {"hub_admins": ["ann@example.org"], "hub_admin_password_hashes": {"ann@example.org": "$2b$12$" + "a" * 53}},
            "setting hub_admin_password_hashes is only used with per_person_servers = True and auth = 'password'",
        ),
        ({"collaboration": True}, "setting collaboration = True is not allowed with per_person_servers = True"),
        ({"hub_admins": ["Ann@Ex..ample"]}, "setting hub_admins"),
        ({"oidc_allowed": ["ann smith@example.org"]}, "setting oidc_allowed"),
        ({"hub_admins": ["caf\u00e9@example.org"]}, "setting hub_admins"),
        ({"shared_data_dir": "/srv/jupyter/shared"}, "setting shared_data_dir = '/srv/jupyter/shared' is not allowed"),
        ({"shared_data_dir": "/opt/anaconda3/share"}, "must not be inside or contain conda_prefix"),
        ({"shared_data_dir": "/home/shared/data"}, "the people's homes ('/home')"),
        ({"jupyter_port": 8081}, "setting jupyter_port = 8081 is not allowed with per_person_servers = True"),
        ({"jupyter_port": 8001}, "8081 and 8001 are the hub's and its proxy's own ports"),
    ],
)
def test_a_setting_per_person_servers_cannot_use_is_refused_in_one_line(values, words):
    errors = settings.check_values({**PER_PERSON, **values}, environ=ENV)
    assert len(errors) == 1 and words in errors[0], errors


@pytest.mark.parametrize(
    "name, value, allowed",
    [
        ("per_person_servers", "yes", "true or false"),
        ("hub_admins", "ann@example.org", "a list of e-mail addresses"),
        ("hub_admins", ["group:staff"], "a list of e-mail addresses"),
        ("people_memory_limit", "99%", "a percentage of the host's RAM from 10% to 95%"),
        ("cull_idle_servers_after", 30, "0 (never) or a whole number of seconds from 60"),
        ("shared_data_dir", "shared", "None or an absolute path"),
        ("shared_data_dir", "/etc/shared", "not in a system directory"),
    ],
)
def test_a_bad_value_is_named_with_what_is_allowed(name, value, allowed):
    errors = settings.check_values({**PER_PERSON, name: value}, environ=ENV)
    assert len(errors) == 1 and name in errors[0] and allowed in errors[0], errors


RESTORE = {"backup_repository": "/srv/backups"}


@pytest.mark.parametrize(
    "values, words",
    [
        ({}, "setting restore_person is None: with per_person_servers, restore.py restores one person's home"),
        (
            {"restore_person": "ann"},
            "setting restore_person = 'ann' is not allowed: must be None or a person",
        ),
        ({"restore_person": "ann smith@example.org"}, "setting restore_person"),
        ({"restore_person": "ann@example.org", "restore_to": "/home/old/restored"}, "the people's homes ('/home')"),
        (
            {"restore_to": "/srv/course/old", "shared_data_dir": "/srv/course"},
            "setting restore_to = '/srv/course/old' is not allowed: must not be inside or contain shared_data_dir",
        ),
        ({"per_person_servers": False, "restore_person": "ann@example.org"}, "needs per_person_servers = True"),
    ],
)
def test_a_restore_that_does_not_fit_the_per_person_mode_is_refused_in_one_line(values, words):
    errors = settings.check_values({**PER_PERSON, **RESTORE, **values}, script="restore")
    assert len(errors) == 1 and words in errors[0], errors


@pytest.mark.parametrize(
    "values",
    [
        {"restore_person": "ann@example.org"},
        {"restore_to": "/srv/restored"},
        {"restore_person": "a@b.org", "restore_to": "/srv/r"},
    ],
)
def test_a_restore_of_one_person_or_of_everything_beside_is_accepted(values):
    assert settings.check_values({**PER_PERSON, **RESTORE, **values}, script="restore") == []


def test_the_single_server_mode_ignores_the_hubs_settings():
    assert (
        settings.check_values(
            {"jupyter_port": 8081, "shared_data_dir": "/srv/shared"}, environ={settings.PASSWORD_ENV: "x"}
        )
        == []
    )


def test_the_hub_config_is_python_and_names_people_by_their_accounts():
    text = config.hub_config(data(hub_admins=["Ann@Example.org"], shared_data_dir="/srv/course"), "nb.example.org")
    ast.parse(text)
    assert "c.GenericOAuthenticator.oauth_callback_url = 'https://nb.example.org/jupyter/hub/oauth_callback'" in text
    allowed = sorted([people.hub_name("ann@example.org"), people.hub_name("bob@example.org")])
    assert f"c.GenericOAuthenticator.allowed_users = {allowed!r}" in text
    assert f"c.GenericOAuthenticator.admin_users = {[people.hub_name('ann@example.org')]!r}" in text
    assert "c.GenericOAuthenticator.allowed_groups = ['physics']" in text
    # Taken off the list: refused at the next sign-in, however often they came before.
    assert "c.Authenticator.allow_existing_users = False" in text
    assert "c.JupyterHub.cleanup_servers = False" in text
    assert "c.ConfigurableHTTPProxy.should_start = False" in text
    assert "accounts.SHARED_DATA_DIR = '/srv/course'" in text
    assert "s3cret" not in text  # the client secret is read from its root-only file


def test_without_groups_the_hub_manages_none():
    text = config.hub_config(data(oidc_allowed=["ann@example.org"]), "nb.example.org")
    assert "allowed_groups" not in text and "'groups'" not in text


def test_the_culler_is_off_with_zero_and_looks_often_enough_otherwise():
    assert "idle-culler" not in config.hub_config(data(cull_idle_servers_after=0), "nb.example.org")
    text = config.hub_config(data(cull_idle_servers_after=120), "nb.example.org")
    assert "--timeout=120" in text and "--cull-every=20" in text
    spawn = json.loads(config.spawn_settings(data(cull_idle_servers_after=120)))
    assert spawn["environment"]["JUPYTERHUB_ACTIVITY_INTERVAL"] == "20"
    # Three delays (busy mark, report, culler's round) stay within half the idle time.
    for after in (60, 600, 3600, 86400):
        assert 3 * config.activity_interval(after) <= after / 2


def test_a_persons_server_has_the_single_servers_sandbox_and_their_own_home_alone():
    properties = config.person_properties("2G", 1.5)
    sandbox = server_unit.sandbox_dropin("x", "/y")
    for key in ("NoNewPrivileges", "ProtectSystem", "PrivateTmp", "SystemCallFilter", "IPAddressDeny", "ProtectProc"):
        assert f"{key}={properties[key]}" in sandbox
    assert properties["ProtectHome"] == "tmpfs"
    assert properties["BindPaths"] == properties["ReadWritePaths"] == "/home/jupyter-{USERNAME}"
    assert properties["MemoryMax"] == "2G" and properties["CPUQuota"] == "150%"
    # The spawner expands {USERNAME} with str.format in every value: nothing else may have braces.
    assert all(
        value.format(USERNAME="u", USERID=1) == value.replace("{USERNAME}", "u") for value in properties.values()
    )


def test_the_slice_caps_every_persons_server_together():
    text = config.slice_unit("90%")
    assert "MemoryMax=90%" in text and "MemoryHigh=81%" in text and "MemorySwapMax=0" in text
    assert "MemoryMax=infinity" in config.slice_unit(None)
    assert str(config.slice_set_property("90%")) == (
        f"systemctl set-property --runtime {layout.SLICE} MemoryHigh=81% MemoryMax=90% MemorySwapMax=0 TasksMax=80%"
    )


def test_the_proxy_listens_where_apache_sends_and_the_hub_drives_it_on_loopback():
    text = config.proxy_unit(data(jupyter_port=8888))
    assert "--ip 127.0.0.1 --port 8888 --api-ip 127.0.0.1 --api-port 8001" in text
    assert f"EnvironmentFile={layout.PROXY_ENV}" in text and "DynamicUser=yes" in text
    hub = config.hub_unit(data())
    assert f"EnvironmentFile={layout.PROXY_ENV}" in hub and f"--config {layout.CONFIG_FILE}" in hub


def test_peoples_servers_load_the_busy_activity_and_activity_extensions():
    loaded = json.loads(config.server_config(data()))
    assert loaded["ServerApp"]["max_body_size"] == settings.size_bytes("100M")
    # Turned on in a file of their own, as every extension does: never in the settings file,
    # where an older jupyter_server lets it replace jupyterhub-singleuser's own.
    assert "jpserver_extensions" not in loaded["ServerApp"]
    assert layout.SERVER_EXTENSIONS_CONFIG.startswith(f"{layout.SERVER_DIR}/jupyter_server_config.d/")
    assert json.loads(config.server_extensions())["ServerApp"]["jpserver_extensions"] == {
        layout.SERVER_EXTENSION_MODULE: True,
        layout.SERVER_ACTIVITY_MODULE: True,
    }


def test_each_persons_memory_display_shows_their_own_limit(tmp_path):
    """MEM_LIMIT (what jupyter-resource-usage shows as the limit) is memory_limit, in bytes; a
    limit in percent is a share of the host's memory, as systemd reads it."""
    assert json.loads(config.spawn_settings(data(memory_limit="2G")))["memory_display_limit"] == 2 * 2**30
    assert config.memory_display_limit("50%") == "50%" and config.memory_display_limit(None) is None
    sys.path.insert(0, str(ROOT / "files"))
    sys.modules.setdefault(layout.PEOPLE_MODULE, people)
    try:
        import jupyterhub_accounts as accounts

        meminfo = tmp_path / "meminfo"
        meminfo.write_text("MemTotal:        4096 kB\nMemFree:  1 kB\n")
        assert accounts.with_memory_limit({"A": "1"}, 2 * 2**30) == {"A": "1", "MEM_LIMIT": str(2 * 2**30)}
        assert accounts.with_memory_limit({}, "50%", str(meminfo))["MEM_LIMIT"] == str(2048 * 1024)
        assert accounts.with_memory_limit({"A": "1"}, None) == {"A": "1"}
    finally:
        sys.path.remove(str(ROOT / "files"))


@pytest.mark.skipif(os.geteuid() != 0, reason="the file must be root's (CI runs as root)")
def test_an_upgrades_check_starts_the_check_accounts_server_from_the_distribution_it_names(tmp_path):
    """files/jupyterhub_accounts.py: while root's file names a directory of conda_prefix.dists,
    the check account's server command and PATH are that distribution's; no file, no change; a
    file anyone else may write, or naming anything else, starts nothing."""
    sys.path.insert(0, str(ROOT / "files"))
    sys.modules.setdefault(layout.PEOPLE_MODULE, people)
    try:
        import jupyterhub_accounts as accounts
        from tornado import web

        prefix = "/opt/anaconda3"
        named = tmp_path / "check-distribution"
        assert accounts.check_distribution(str(named), prefix) is None
        named.write_text(f"{prefix}.dists/0123456789abcdef\n")
        named.chmod(0o644)
        distribution = accounts.check_distribution(str(named), prefix)
        assert distribution == f"{prefix}.dists/0123456789abcdef"
        spawn = json.loads(config.spawn_settings(data()))
        cmd, environment = accounts.from_distribution(spawn["cmd"], spawn["environment"], prefix, distribution)
        assert cmd == [f"{distribution}/bin/jupyterhub-singleuser"]
        assert environment["PATH"].split(":")[0] == f"{distribution}/bin"
        assert {k: v for k, v in environment.items() if k != "PATH"} == {
            k: v for k, v in spawn["environment"].items() if k != "PATH"
        }
        for text in (f"{prefix}.dists/previous", f"{prefix}.dists/../etc", "/usr", f"{prefix}.dists/a/b"):
            named.write_text(text + "\n")
            with pytest.raises(web.HTTPError):
                accounts.check_distribution(str(named), prefix)
        named.write_text(f"{prefix}.dists/0123456789abcdef\n")
        named.chmod(0o666)
        with pytest.raises(web.HTTPError, match="not root's alone"):
            accounts.check_distribution(str(named), prefix)
    finally:
        sys.path.remove(str(ROOT / "files"))


def test_the_hub_config_loads_in_jupyterhub_with_the_deploys_modules(tmp_path, clean_modules):
    """The rendered config, executed by JupyterHub's own loader, with files/jupyterhub_accounts.py
    and operations/people.py beside it (paths moved into ``tmp_path``): the hub, the
    authenticator and the spawner take every value, and a person's name is what the deploy
    computes."""
    from jupyterhub.app import JupyterHub
    from oauthenticator.generic import GenericOAuthenticator

    endpoints = {name: f"https://sso.example.org/{name}" for name in ("authorization_endpoint", "token_endpoint")}
    endpoints["userinfo_endpoint"] = "https://sso.example.org/userinfo"
    # The provider cannot be reached here: the kept copy of its discovery document is used.
    (tmp_path / "state").mkdir()
    (tmp_path / "state" / "provider-discovery.json").write_text(json.dumps(endpoints))
    values = {"oidc_issuer": "https://127.0.0.1:9/", "hub_admins": ["ann@example.org"], "memory_limit": "1G"}
    loaded, _ = load_hub_config(tmp_path, {**values, "shared_data_dir": "/srv/course"})
    hub = JupyterHub(config=loaded)
    assert (hub.bind_url, hub.hub_bind_url, hub.base_url) == (
        "http://127.0.0.1:8888/jupyter/",
        "http://127.0.0.1:8081",
        "/jupyter/",
    )
    assert hub.cleanup_servers is False and hub.spawner_class.__name__ == "CheckedSystemdSpawner"
    signing_in = GenericOAuthenticator(config=loaded)
    assert signing_in.authorize_url == "https://sso.example.org/authorization_endpoint"
    assert signing_in.user_info_to_username({"email": "Ann@Example.org"}) == people.hub_name("ann@example.org")
    assert signing_in.admin_users == {people.hub_name("ann@example.org")}
    assert signing_in.allow_existing_users is False and signing_in.auto_login is True
    spawner_config = loaded.SystemdSpawner
    assert spawner_config.slice == layout.SLICE
    assert spawner_config.unit_extra_properties["ProtectHome"] == "tmpfs"
    assert loaded.Spawner.environment["MEM_LIMIT"] == str(2**30)
    assert loaded.Spawner.cmd == [settings.DEFAULTS["conda_prefix"] + "/bin/jupyterhub-singleuser"]
    # The restarts' service: it starts and stops people's servers, nothing else.
    [restarting] = [s for s in hub.services if s["name"] == layout.RESTART_SERVICE]
    assert restarting["api_token"] == "r3start"
    [role] = [r for r in hub.load_roles if r["name"] == layout.RESTART_SERVICE]
    assert role["scopes"] == ["servers", "read:servers"]
    # The smoke check's service: the check account's server and nothing else.
    [service] = [s for s in hub.services if s["name"] == layout.SMOKE_SERVICE]
    assert service["api_token"] == "t0ken"
    [role] = [r for r in hub.load_roles if r["name"] == layout.SMOKE_SERVICE]
    assert all(scope.endswith(f"!user={layout.CHECK_NAME}") for scope in role["scopes"])
    assert "idle-culler" in [s["name"] for s in hub.services]


def _verify(path: Path) -> str:
    result = subprocess.run(["systemd-analyze", "verify", "--man=no", str(path)], capture_output=True, text=True)
    return result.stderr


def test_the_hubs_units_and_a_persons_server_unit_verify(tmp_path):
    """systemd-analyze takes every key of the hub's and the proxy's units, the slice, and the
    properties the spawner hands systemd-run for a person's server (as a unit file)."""
    hub_unit = config.hub_unit(data()).replace(f"{layout.PREFIX}/bin/jupyterhub --config", "/bin/true --config")
    proxy_unit = config.proxy_unit(data()).replace(layout.PROXY_BINARY, "/bin/true")
    person = "\n".join(
        f"{key}={value.format(USERNAME='ann-438c4c7a')}" for key, value in config.person_properties("2G", 1.5).items()
    )
    person_unit = (
        "[Unit]\nDescription=a person's server\n[Service]\nExecStart=/bin/true\nUser=nobody\n"
        f"Slice={layout.SLICE}\n{person}\n"
    )
    for name, text in (
        (layout.HUB_UNIT, hub_unit),
        (layout.PROXY_UNIT, proxy_unit),
        (layout.SLICE, config.slice_unit("90%")),
        ("jupyter-ann-438c4c7a.service", person_unit),
    ):
        (tmp_path / name).write_text(text)
        said = _verify(tmp_path / name)
        assert "Unknown key" not in said and "Unknown section" not in said and "Failed" not in said, (name, said)


def load_hub_config(tmp_path, values: dict):
    """The rendered hub config for ``values``, loaded by JupyterHub's own loader with the
    deploy's modules beside it (paths moved into ``tmp_path``): (its config, the accounts module)."""
    from traitlets.config import PyFileConfigLoader

    for directory in ("state", "secrets"):
        (tmp_path / directory).mkdir(exist_ok=True)
    for name, text in (("oidc-client-secret", "s3cret"), ("smoke-token", "t0ken"), ("restart-token", "r3start")):
        (tmp_path / "secrets" / name).write_text(text + "\n")
    host_data = data(**values)
    (tmp_path / "spawn.json").write_text(config.spawn_settings(host_data))
    (tmp_path / "secrets" / "admin-passwords.json").write_text(config.admin_passwords(host_data))
    text = config.hub_config(host_data, "nb.example.org")
    text = text.replace(layout.STATE_DIR, str(tmp_path / "state")).replace(layout.CONFIG_DIR, str(tmp_path))
    (tmp_path / "jupyterhub_config.py").write_text(text)
    (tmp_path / f"{layout.PEOPLE_MODULE}.py").write_text(Path(people.__file__).read_text())
    (tmp_path / f"{layout.ACCOUNTS_MODULE}.py").write_text((ROOT / "files" / "jupyterhub_accounts.py").read_text())
    loaded = PyFileConfigLoader("jupyterhub_config.py", path=str(tmp_path)).load_config()
    return loaded, sys.modules[layout.ACCOUNTS_MODULE]


BCRYPT_OF_ANN = "$2b$04$" + "N" * 53  # a bcrypt hash's shape: nobody signs in here


@pytest.fixture
def clean_modules():
    path, modules = list(sys.path), set(sys.modules)
    yield
    sys.path[:] = path
    for name in set(sys.modules) - modules:
        if name in (layout.PEOPLE_MODULE, layout.ACCOUNTS_MODULE):
            del sys.modules[name]


PASSWORDS = {
    "auth": "password",
    "oidc_issuer": None,
    "oidc_client_id": None,
    "oidc_allowed": [],
    "hub_admins": ["ann@example.org"],
}


def test_with_passwords_the_hub_config_loads_with_the_deploys_authenticator(tmp_path, clean_modules):
    from jupyterhub.app import JupyterHub

    loaded, accounts = load_hub_config(
        tmp_path, {**PASSWORDS, "hub_admin_password_hashes": {"Ann@example.org": BCRYPT_OF_ANN}}
    )
    hub = JupyterHub(config=loaded)
    assert hub.authenticator_class is accounts.PersonAuthenticator
    assert loaded.NativeAuthenticator.open_signup is False and loaded.NativeAuthenticator.check_common_password
    assert loaded.Authenticator.admin_users == [people.hub_name("ann@example.org")]
    assert "auto_login" not in loaded.Authenticator and "GenericOAuthenticator" not in loaded
    assert accounts.ADMIN_PASSWORDS == str(tmp_path / "secrets" / "admin-passwords.json")
    # Their addresses are the deploy's normalized ones; the hub reads the file as it is.
    assert json.loads((tmp_path / "secrets" / "admin-passwords.json").read_text()) == {"ann@example.org": BCRYPT_OF_ANN}
    # People's servers ask the hub again about a sign-in within a minute.
    server = json.loads(config.server_config(data(**PASSWORDS)))
    assert server["HubOAuth"]["cache_max_age"] == config.SIGN_IN_CACHE_SECONDS == 60


def test_apache_logs_the_hubs_sign_in_form_for_the_login_ban():
    """With per-person servers the form people type a password into is the hub's: Apache's login
    log (what the login ban reads) and the small-body limit are on its path, not the single
    server's."""
    from operations import apache

    values = {**settings.DEFAULTS, **PASSWORDS, "per_person_servers": True}
    vhost = apache.vhost(values, "nb.example.org")
    assert vhost.count("%{REQUEST_URI} == '/jupyter/hub/login'") == 2
    assert "RewriteRule ^/jupyter/hub/login$ - [R=413,L]" in vhost
    single = apache.vhost({**settings.DEFAULTS}, "nb.example.org")
    assert single.count("%{REQUEST_URI} == '/jupyter/login'") == 2 and "hub/login" not in single
