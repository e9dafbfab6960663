"""Rendered templates: Apache accepts the vhost, Jupyter's config is modern and safe."""

import ast
import configparser
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from operations import apache, jupyter, letsencrypt, login_ban, settings, sign_in, tls
from operations.render import FILES
from tests import apache_local

ROOT = Path(__file__).resolve().parent.parent

needs_apache = pytest.mark.skipif(not apache_local.available(), reason="apache2-bin is installed by .ci/run")


@pytest.fixture(scope="module")
def keypair(tmp_path_factory):
    return apache_local.keypair(tmp_path_factory.mktemp("tls"))


def configtest(tmp_path, vhost: str, modules) -> subprocess.CompletedProcess:
    """`apache2 -t` on a self-contained server config holding our hardening conf and vhost."""
    return apache_local.configtest(apache_local.server_config(tmp_path, vhost, modules))


@needs_apache
def test_vhost_passes_apache_configtest(tmp_path, keypair):
    cert, key = keypair
    vhost = apache_local.vhost("nb.test", cert, key)
    result = configtest(tmp_path, vhost, apache_local.VHOST_MODULES)
    assert result.returncode == 0, result.stderr
    assert "Syntax OK" in result.stderr


@needs_apache
def test_vhost_with_basic_auth_passes_apache_configtest(tmp_path, keypair):
    cert, key = keypair
    vhost = apache_local.vhost("nb.test", cert, key, basic_auth_user="alice")
    assert "AuthUserFile /etc/apache2/jupyter.htpasswd" in vhost and "Require valid-user" in vhost
    result = configtest(
        tmp_path, vhost.replace(apache.HTPASSWD, str(tmp_path / "users")), apache.needed_modules(basic_auth=True)
    )
    assert result.returncode == 0, result.stderr


@needs_apache
def test_vhost_for_letsencrypt_serves_the_challenge_over_plain_http(tmp_path, keypair):
    cert, key = keypair
    vhost = apache_local.vhost("nb.test", cert, key, tls_mode="letsencrypt")
    port80 = vhost.split("<VirtualHost *:443>")[0]
    assert f"\n    Alias /.well-known/acme-challenge/ {letsencrypt.WEBROOT}/.well-known/acme-challenge/\n" in port80
    assert "RewriteCond %{REQUEST_URI} !^/\\.well-known/acme-challenge/" in port80
    result = configtest(tmp_path, vhost, apache_local.VHOST_MODULES)
    assert result.returncode == 0, result.stderr
    plain = apache_local.vhost("nb.test", cert, key)
    assert "Alias" not in plain


def test_renewal_hook_serves_the_deploys_certificate_and_reloads_only_after_configtest(tmp_path):
    text = letsencrypt.deploy_hook("nb.test")
    assert text.startswith("#!/bin/sh\n") and f"{tls.live_dir('nb.test')}/fullchain.pem {tls.SERVED_CERT}" in text
    # Run for real, on paths of its own, with stand-ins for apache2ctl and systemctl.
    lineage, served_cert, served_key, stamp = (tmp_path / n for n in ("live-nb", "served.crt", "served.key", "stamp"))
    hook = tmp_path / "hook"
    hook.write_text(
        apache.render(
            "certbot-deploy-hook.sh.j2",
            lineage=lineage,
            served_cert=served_cert,
            served_key=served_key,
            reload_stamp=stamp,
        )
    )
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, body in (("apache2ctl", 'exit "${CONFIGTEST_EXIT:-0}"'), ("systemctl", 'echo "$*" >> "$0.calls"')):
        (bin_dir / name).write_text(f"#!/bin/sh\n{body}\n")
        (bin_dir / name).chmod(0o755)

    def run(renewed: str, configtest_exit: str = "0") -> subprocess.CompletedProcess:
        env = {"PATH": f"{bin_dir}:/usr/bin:/bin", "RENEWED_LINEAGE": renewed, "CONFIGTEST_EXIT": configtest_exit}
        return subprocess.run(["sh", str(hook)], env=env, capture_output=True, text=True)

    served_cert.symlink_to("/etc/ssl/certs/self-signed.crt")
    assert run("/etc/letsencrypt/live/another-site").returncode == 0
    assert served_cert.readlink() == Path("/etc/ssl/certs/self-signed.crt")  # not the deploy's lineage
    assert run(str(lineage)).returncode == 0
    assert (served_cert.readlink(), served_key.readlink()) == (lineage / "fullchain.pem", lineage / "privkey.pem")
    assert (bin_dir / "systemctl.calls").read_text() == "reload apache2\n" * 2 and stamp.exists()
    stamp.unlink()
    refused = run(str(lineage), configtest_exit="1")
    assert refused.returncode == 1 and "NOT reloaded" in refused.stderr
    assert (bin_dir / "systemctl.calls").read_text() == "reload apache2\n" * 2 and not stamp.exists()


@needs_apache
def test_configtest_catches_a_broken_vhost(tmp_path, keypair):
    """The check above can fail: an unknown directive is rejected with Apache's own message."""
    cert, key = keypair
    vhost = apache_local.vhost("nb.test", cert, key, apache_extra_directives=["NotADirective on"])
    assert "    NotADirective on\n" in vhost
    result = configtest(tmp_path, vhost, apache_local.VHOST_MODULES)
    assert result.returncode != 0
    assert "Invalid command 'NotADirective'" in result.stderr


def test_vhost_fixes_the_2017_guide():
    vhost = apache_local.vhost("nb.example.org", jupyter_base_url="/lab/", jupyter_port=8890)
    assert "ProxyPass /lab/ http://127.0.0.1:8890/lab/ upgrade=websocket" in vhost
    assert "ProxyPassReverse /lab/ http://127.0.0.1:8890/lab/" in vhost
    assert "ProxyPreserveHost On" in vhost
    assert 'RequestHeader set X-Forwarded-Proto "https"' in vhost
    assert "${APACHE_LOG_DIR}/" in vhost and "${APACHE_LOG_DIR}." not in vhost
    assert "wss://" not in vhost and "ws://" not in vhost
    directives = [line.strip() for line in vhost.splitlines() if line.strip() and not line.strip().startswith("#")]
    assert not [d for d in directives if "Origin" in d]  # never rewritten
    assert "RewriteCond %{REQUEST_URI} !^/\\.well-known/acme-challenge/" in vhost
    assert "RewriteRule ^ https://nb.example.org%{REQUEST_URI} [R=301,L]" in vhost
    assert 'Strict-Transport-Security "max-age=63072000"' in vhost
    assert "proxy_https" not in apache_local.VHOST_MODULES
    assert "proxy_wstunnel" not in apache_local.VHOST_MODULES


def test_security_headers_and_request_body_limits():
    vhost = apache_local.vhost("nb.example.org", jupyter_base_url="/lab/", jupyter_port=8890, max_request_size="64M")
    https = vhost.split("<VirtualHost *:443>")[1]
    assert 'Header always set Referrer-Policy "same-origin"' in https
    assert f"RewriteCond %{{HTTP:Content-Length}} -gt{apache.LOGIN_REQUEST_BYTES} [OR]\n" in https
    assert "RewriteRule ^/lab/login$ - [R=413,L]" in https
    assert f"RewriteCond %{{HTTP:Content-Length}} -gt{64 * 2**20}\n    RewriteRule ^ - [R=413,L]" in https
    # The size checks come after the Host check and before anything is proxied.
    assert https.index("RewriteRule ^ - [F]") < https.index("[R=413,L]") < https.index("\n    ProxyPass /lab/")
    assert apache.LOGIN_REQUEST_BYTES <= 16384


@pytest.mark.parametrize("version", [(2, 4, 41), (2, 4, 46)])
def test_apache_older_than_2_4_47_is_refused(version):
    """Its websockets needed `RewriteRule ... ws://... [P]`, the CVE-2023-25690 pattern."""
    with pytest.raises(apache.ApacheTooOld, match=r"nb.test: Apache 2\.4\.4\d is older than 2\.4\.47"):
        apache.check_version("nb.test", version)


@pytest.mark.parametrize("version", [(2, 4, 47), (2, 4, 71), None])
def test_apache_from_2_4_47_on_is_accepted(version):
    apache.check_version("nb.test", version)


@pytest.mark.parametrize("options", [{}, {"basic_auth_user": "alice"}, {"tls_mode": "letsencrypt"}])
def test_no_rewrite_rule_feeds_the_proxy(options):
    vhost = apache_local.vhost("nb.test", **options)
    rules = [line.strip() for line in vhost.splitlines() if line.strip().startswith("RewriteRule")]
    assert rules and not [rule for rule in rules if re.search(r"\[[^]]*\bP\b", rule)], rules
    assert "ws://" not in vhost and "ProxyPassMatch" not in vhost


class _Config:
    """Stands in for traitlets' config object: records every `c.Section.name = value`."""

    def __init__(self):
        self.values = {}

    def __getattr__(self, section):
        values = self.values

        class Section:
            def __setattr__(self, name, value):
                values[f"{section}.{name}"] = value

            def __getattr__(self, name):
                # `c.Section.name.update({...})`: traitlets merges it into the value.
                return values.setdefault(f"{section}.{name}", {})

        return Section()


def load_server_config(tmp_path, server_name="nb.example.org", **data):
    """The Jupyter config of a host with the settings' defaults but ``data``, executed (the
    password hash and the memory limit it reads are files in ``tmp_path``)."""
    password_file = tmp_path / "password_hash"
    password_file.write_text("argon2:$argon2id$v=19$m=10240,t=10,p=8$c2FsdA$ZGlnZXN0\n")
    source = jupyter.server_config({**settings.DEFAULTS, **data}, server_name)
    source = source.replace(jupyter.PASSWORD_FILE, str(password_file))
    assert jupyter.layout.MEMORY_MAX_FILE in source
    source = source.replace(jupyter.layout.MEMORY_MAX_FILE, str(tmp_path / "memory_max"))
    ast.parse(source)
    config = _Config()
    path = list(sys.path)
    try:
        exec(compile(source, "jupyter_server_config.py", "exec"), {"get_config": lambda: config})
        config.values["sys.path added"] = sys.path[len(path) :]
    finally:
        sys.path[:] = path
    return source, config.values


def test_jupyter_config_is_valid_python_with_modern_names_only(tmp_path):
    source, values = load_server_config(tmp_path)
    code = [line for line in source.splitlines() if not line.lstrip().startswith("#")]
    assert not [line for line in code if "NotebookApp" in line]
    assert "notebook_dir" not in "".join(values) and "ServerApp.password" not in values
    assert all(
        key.split(".")[0]
        in {
            "sys",
            "ServerApp",
            "IdentityProvider",
            "PasswordIdentityProvider",
            "NotebookNotary",
            "MappingKernelManager",
            "ResourceUseDisplay",
        }
        for key in values
    )


def test_the_memory_display_shows_the_limit_root_wrote_and_follows_it(tmp_path):
    _, values = load_server_config(tmp_path)
    memory_max = values["ResourceUseDisplay.mem_limit"]
    assert values["ResourceUseDisplay.enable_prometheus_metrics"] is False
    assert memory_max(rss=1, pss=1) == 0  # nothing written yet: no limit shown
    (tmp_path / "memory_max").write_text("734003200\n")
    assert memory_max() == 734003200
    (tmp_path / "memory_max").write_text("infinity\n")  # memory_limit = None
    assert memory_max() == 0


def test_jupyter_config_is_locked_down(tmp_path):
    _, values = load_server_config(tmp_path, jupyter_terminals=False)
    assert values["ServerApp.ip"] == "127.0.0.1"
    assert values["ServerApp.port"] == 8888
    assert values["ServerApp.base_url"] == "/jupyter/"
    assert values["ServerApp.root_dir"] == "/srv/jupyter"
    assert values["ServerApp.trust_xheaders"] is True
    assert values["ServerApp.allow_remote_access"] is False
    assert values["ServerApp.jpserver_extensions"] == {"jupyter_activity": True}
    assert "nb.example.org" in values["ServerApp.local_hostnames"]
    assert values["ServerApp.allow_remote_access"] is False
    assert values["ServerApp.allow_root"] is False
    assert values["ServerApp.allow_origin"] == ""
    assert values["ServerApp.disable_check_xsrf"] is False
    assert values["ServerApp.terminals_enabled"] is False
    assert values["ServerApp.cookie_options"]["secure"] is True
    assert values["ServerApp.tornado_settings"]["xsrf_cookie_kwargs"] == {"secure": True, "samesite": "Strict"}
    assert values["IdentityProvider.token"] == ""
    assert values["PasswordIdentityProvider.hashed_password"].startswith("argon2:")
    # Jupyter's defaults are 512 MiB for both: one request would buffer that much.
    assert values["ServerApp.max_body_size"] == values["ServerApp.max_buffer_size"] == 100 * 2**20


def test_login_form_checks_passwords_off_the_event_loop(tmp_path):
    """The config loads files/jupyter_login_handler.py from where the deploy puts it."""
    _, values = load_server_config(tmp_path)
    module, _, name = values["PasswordIdentityProvider.login_handler_class"].rpartition(".")
    assert values["sys.path added"] == [jupyter.CONFIG_DIR]
    assert jupyter.LOGIN_HANDLER_FILE == f"{jupyter.CONFIG_DIR}/{module}.py"
    tree = ast.parse((FILES / f"{module}.py").read_text())
    handler = next(node for node in tree.body if isinstance(node, ast.ClassDef) and node.name == name)
    assert [base.id for base in handler.bases] == ["LoginFormHandler"]
    post = next(node for node in handler.body if getattr(node, "name", "") == "post")
    # An async post that hands the check to the fair queue (as a function, never called
    # inline), which runs it on an executor.
    assert isinstance(post, ast.AsyncFunctionDef)
    awaited = [node.value for node in ast.walk(post) if isinstance(node, ast.Await)]
    assert [ast.unparse(call.func) for call in awaited] == ["CHECKS.run"]
    [check] = [arg for arg in awaited[0].args if isinstance(arg, ast.Lambda)]
    assert "process_login_form" in ast.unparse(check)
    outside = [node for node in ast.walk(post) if isinstance(node, ast.Lambda)]
    assert sum("process_login_form" in ast.unparse(node) for node in outside) == 1
    queue = next(node for node in tree.body if isinstance(node, ast.ClassDef) and node.name == "FairChecks")
    assert "run_in_executor" in ast.unparse(queue)


def test_ip_server_name_relies_on_apache_host_check(tmp_path):
    """Jupyter accepts no IP but loopback as a local host, so Apache must refuse foreign Hosts."""
    _, values = load_server_config(tmp_path, server_name="203.0.113.7")
    assert values["ServerApp.allow_remote_access"] is True
    vhost = apache_local.vhost("203.0.113.7")
    assert "RewriteCond %{HTTP_HOST} !^203\\.0\\.113\\.7(:443)?$ [NC]\n    RewriteRule ^ - [F]" in vhost


def test_unit_runs_jupyter_unprivileged_and_hardened():
    unit = jupyter.unit_file("jupyter", "/opt/anaconda3", "/srv/jupyter", "/jupyter/", 8888)
    sandbox = jupyter.sandbox_dropin("jupyter", "/srv/jupyter")
    assert "ExecStart=/opt/anaconda3/bin/python -I -m notebook\n" in unit
    assert "User=jupyter\n" in unit
    assert "Environment=SHELL=/bin/bash" in unit
    assert "Environment=JUPYTER_CONFIG_DIR=/etc/jupyter" in unit
    assert "/dev/tcp/127.0.0.1/8888" in unit
    assert jupyter.SANDBOX_DROPIN in unit
    assert "RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6 AF_NETLINK" in sandbox
    assert "NoNewPrivileges=yes" in sandbox and "ProtectSystem=strict" in sandbox
    assert "ReadWritePaths=/srv/jupyter /var/lib/jupyter" in sandbox
    # Linode's metadata service, over IPv4 and IPv6.
    assert "\nIPAddressDeny=169.254.169.254 fd00:a9fe:a9fe::1 fe80::a9fe:a9fe\n" in sandbox
    assert "IPAddressAllow" not in sandbox + unit
    # Only the sandbox's directives there: files/conda-switch hands each line to systemd-run.
    directives = [line for line in sandbox.splitlines() if line and not line.startswith(("#", "["))]
    assert all(re.fullmatch(r"[A-Z][A-Za-z]+=[^\n]*", line) for line in directives), directives
    assert not {"ExecStart", "User", "Environment", "WorkingDirectory"} & {d.split("=")[0] for d in directives}


@pytest.mark.skipif(not shutil.which("systemd-analyze"), reason="systemd-analyze is installed by .ci/run")
def test_unit_file_verifies(tmp_path):
    path = tmp_path / "jupyter.service"
    unit = jupyter.unit_file("jupyter", "/bin", "/srv/jupyter", "/jupyter/", 8888).replace(
        "/bin/python -I -m notebook", "/bin/true"
    )
    # The drop-ins' [Service] lines (sandbox, limits), checked in the same pass.
    sandbox = jupyter.sandbox_dropin("jupyter", "/srv/jupyter").split("[Service]\n", 1)[1]
    limits = jupyter.limits_dropin("2G", 1.5).split("[Service]\n", 1)[1]
    path.write_text(unit.replace("[Install]", sandbox + limits + "\n[Install]"))
    result = subprocess.run(["systemd-analyze", "verify", "--man=no", str(path)], capture_output=True, text=True)
    assert "Unknown key" not in result.stderr and "Unknown section" not in result.stderr, result.stderr


@pytest.mark.parametrize(
    "limit,expected",
    [
        ("80%", ("80%", "72%")),
        ("2G", ("2G", str(2 * 2**30 * 9 // 10))),
        ("1536M", ("1536M", str(1536 * 2**20 * 9 // 10))),
        (None, (None, None)),
    ],
)
def test_memory_limit_becomes_memory_max_with_memory_high_below_it(limit, expected):
    assert jupyter.memory_limits(limit) == expected


def test_limits_dropin_caps_memory_without_swap_cpu_and_tasks():
    dropin = jupyter.limits_dropin("2G", 1.5)
    assert "MemoryMax=2G\n" in dropin and "MemorySwapMax=0\n" in dropin and "MemoryHigh=" in dropin
    assert "CPUQuota=150%\n" in dropin and f"TasksMax={jupyter.TASKS_MAX}\n" in dropin
    unlimited = jupyter.limits_dropin(None, None)
    assert "MemoryMax=infinity\n" in unlimited and "CPUQuota=\n" in unlimited
    assert jupyter.limits_values(None, None)["CPUQuota"] == ""
    assert jupyter.limits_values("80%", 2)["CPUQuota"] == "200%"


def test_unit_makes_jupyter_the_oom_killers_first_choice_and_isolates_the_server():
    unit = jupyter.unit_file("jupyter", "/opt/anaconda3", "/srv/jupyter", "/jupyter/", 8888)
    sandbox = jupyter.sandbox_dropin("jupyter", "/srv/jupyter")
    assert f"OOMScoreAdjust={jupyter.OOM_SCORE_ADJUST}\n" in sandbox and jupyter.OOM_SCORE_ADJUST > 0
    assert "Environment=JUPYTER_DATA_DIR=/etc/jupyter/data\n" in unit
    assert "Environment=PATH=/usr/local/lib/jupyter-deploy/bin:/opt/anaconda3/bin:" in unit
    assert "Environment=CONDA_EXE=/usr/local/lib/jupyter-deploy/bin/conda\n" in unit
    assert "Memory" not in "".join(line for line in unit.splitlines() if not line.startswith("#"))


def test_server_culls_only_idle_unconnected_kernels_and_pings_within_the_proxy_timeout(tmp_path):
    _, values = load_server_config(tmp_path, cull_idle_kernels_after=30, apache_proxy_timeout=6)
    assert values["MappingKernelManager.cull_idle_timeout"] == 30
    assert values["MappingKernelManager.cull_interval"] == 3
    assert values["MappingKernelManager.cull_connected"] is False and values["MappingKernelManager.cull_busy"] is False
    assert values["ServerApp.tornado_settings"]["ws_ping_interval"] == 2000
    _, defaults = load_server_config(tmp_path)
    assert defaults["MappingKernelManager.cull_idle_timeout"] == settings.DEFAULTS["cull_idle_kernels_after"]
    assert defaults["ServerApp.tornado_settings"]["ws_ping_interval"] == 30000
    _, never = load_server_config(tmp_path, cull_idle_kernels_after=0)
    assert not any(key.startswith("MappingKernelManager") for key in never)
    assert jupyter.cull_interval(86400) == 300


def test_server_lists_the_users_kernels_and_terminals_get_the_users_data_dir(tmp_path):
    _, values = load_server_config(tmp_path)
    unit = jupyter.unit_file("jupyter", "/opt/anaconda3", "/srv/jupyter", "/jupyter/", 8888)
    assert "Environment=JUPYTER_PATH=/etc/jupyter/data:/etc/jupyter/user\n" in unit
    assert values["NotebookNotary.data_dir"] == "/var/lib/jupyter/.local/share/jupyter"
    assert values["ServerApp.terminado_settings"]["shell_command"] == [
        "/usr/bin/env",
        "-u",
        "JUPYTER_DATA_DIR",
        "/bin/bash",
    ]
    spec = json.loads(jupyter.kernel_spec("/opt/anaconda3", "jupyter"))
    assert spec["argv"][0] == "/opt/anaconda3/bin/python" and "{connection_file}" in spec["argv"]
    assert spec["env"] == {"JUPYTER_DATA_DIR": "/var/lib/jupyter/.local/share/jupyter"}


def test_proxy_timeout_is_apaches_timeout_for_requests_and_websocket_tunnels():
    vhost = apache_local.vhost("nb.test", apache_proxy_timeout=6)
    assert "\n    Timeout 6\n" in vhost
    assert "upgrade=websocket timeout=6\n" in vhost
    assert jupyter.ws_ping_interval_ms(6) == 2000 and jupyter.ws_ping_interval_ms(300) == 30000


@needs_apache
def test_apache_refuses_big_bodies_before_they_reach_jupyter(tmp_path, keypair):
    """Served for real on loopback: LimitRequestBody would not do, Apache skips it for proxied requests."""
    import requests
    import urllib3

    urllib3.disable_warnings()
    backend = apache_local.Backend()
    cert, key = keypair
    vhost = apache_local.vhost("127.0.0.1", cert, key, jupyter_port=backend.port, max_request_size="2M")
    vhost = vhost[vhost.index("<VirtualHost *:443>") :].replace("<VirtualHost *:443>", "<VirtualHost 127.0.0.1:18444>")
    vhost = vhost.replace("(:443)?", "(:18444)?")
    config = apache_local.server_config(tmp_path, vhost, apache_local.VHOST_MODULES, listen=["127.0.0.1:18444"])
    base = "https://127.0.0.1:18444/jupyter/"
    with apache_local.LoopbackApache(config):

        def status(method, path, body):
            return requests.request(method, base + path, data=body, verify=False, timeout=20).status_code

        assert status("POST", "login", b"password=" + b"x" * 200) == 200
        assert status("POST", "login", b"password=" + b"x" * apache.LOGIN_REQUEST_BYTES) == 413
        assert status("POST", "login", iter([b"password=x"])) == 413  # chunked: no length to check
        assert status("PUT", "api/contents/a", b"x" * (2 * 2**20 - 100)) == 200
        assert status("PUT", "api/contents/a", b"x" * (2 * 2**20 + 1)) == 413
    assert [length for _, _, length in backend.seen] == [209, 2 * 2**20 - 100]


def _jails(text: str) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(interpolation=None)
    parser.read_string(text)
    return parser


def test_login_ban_jail_bans_at_the_web_ports_only_and_never_ssh():
    jails = _jails(login_ban.jail_config(settings.DEFAULTS))
    assert jails.sections() == ["sshd", "jupyter-login"]
    assert jails["sshd"]["enabled"] == "false"
    jail = jails["jupyter-login"]
    assert (jail["enabled"], jail["filter"], jail["maxretry"], jail["findtime"], jail["bantime"]) == (
        "true",
        "jupyter-login",
        "5",
        "600",
        "3600",
    )
    # Apache's log of the login form, which only Apache writes: never Jupyter's journal,
    # which kernels and terminals write to as well.
    assert (jail["backend"], jail["logpath"]) == ("polling", apache.LOGIN_LOG)
    assert "journalmatch" not in jail
    assert (jail["banaction"], jail["port"], jail["protocol"]) == (login_ban.ACTION_NAME, "http,https", "tcp")
    # fail2ban's nftables action, with sets that hold prefixes (an IPv6 client's /64).
    action = configparser.ConfigParser(interpolation=None)
    action.read_string((ROOT / "files" / "fail2ban-jupyter-ban.conf").read_text())
    assert action["INCLUDES"]["before"] == "nftables.conf" and action["Definition"]["type"] == "multiport"
    assert "flags interval" in action["Definition"]["_nft_add_set"]
    assert jail["ignoreip"].split() == ["127.0.0.1/8", "::1"]


def test_login_ban_jail_takes_the_settings_and_adds_basic_auth_when_it_is_on():
    data = {
        "login_ban_max_failures": 3,
        "login_ban_window": 60,
        "login_ban_seconds": 120,
        "login_ban_ignore": ["203.0.113.7", "2001:db8::/32"],
        "basic_auth_user": "alice",
    }
    jails = _jails(login_ban.jail_config({**settings.DEFAULTS, **data}))
    assert jails.sections() == ["sshd", "jupyter-login", "jupyter-basic-auth"]
    for name in ("jupyter-login", "jupyter-basic-auth"):
        jail = jails[name]
        assert (jail["maxretry"], jail["findtime"], jail["bantime"]) == ("3", "60", "120")
        assert jail["ignoreip"].split() == ["127.0.0.1/8", "::1", "203.0.113.7", "2001:db8::/32"]
        assert jail["port"] == "http,https"
    basic = jails["jupyter-basic-auth"]
    assert (basic["filter"], basic["logpath"]) == ("apache-auth", apache.HTTPS_ERROR_LOG)
    # The paths the vhost really logs to.
    vhost = apache_local.vhost("nb.example.org")
    assert "ErrorLog ${APACHE_LOG_DIR}/" + apache.HTTPS_ERROR_LOG.rsplit("/", 1)[1] in vhost
    assert apache.LOGIN_LOG == f"{apache.LOG_DIR}/{apache.LOGIN_LOG_NAME}"
    assert f"CustomLog ${{APACHE_LOG_DIR}}/{apache.LOGIN_LOG_NAME} jupyter_login" in vhost


# --- Single sign-on (auth 'oidc') and collaboration ------------------------------------------

SSO = {
    "auth": "oidc",
    "oidc_issuer": "https://login.example.org/realms/lab",
    "oidc_client_id": "jupyter",
    "oidc_allowed": ["ada@example.org", "group:physics"],
    "oidc_ca_bundle": "/tmp/provider-ca.pem",
}


@needs_apache
def test_vhost_with_single_sign_on_passes_apache_configtest(tmp_path, keypair):
    cert, key = keypair
    vhost = apache_local.vhost("nb.test", cert, key, **SSO)
    for path, content in (
        (sign_in.CLIENT_SECRET_CONF, 'OIDCClientSecret "x"\n'),
        (sign_in.HOST_SECRETS_CONF, 'OIDCCryptoPassphrase "y"\nRequestHeader set X-Jupyter-Proxy-Secret "z"\n'),
        (sign_in.CA_BUNDLE, "not read by configtest\n"),
    ):
        local = tmp_path / path.rsplit("/", 1)[1]
        local.write_text(content)
        vhost = vhost.replace(path, str(local))
    # The sessions' directory must exist (the sign-in concern makes it before Apache's turn).
    assert f"OIDCCacheType file\n    OIDCCacheDir {sign_in.CACHE_DIR}\n" in vhost
    (tmp_path / "sessions").mkdir()
    vhost = vhost.replace(sign_in.CACHE_DIR, str(tmp_path / "sessions"))
    modules = apache.needed_modules(basic_auth=False, single_sign_on=True)
    assert sign_in.MODULE in modules
    result = configtest(tmp_path, vhost, modules)
    assert result.returncode == 0, result.stderr


def test_single_sign_on_lets_in_only_the_allowed_and_names_them_to_jupyter_itself():
    vhost = apache_local.vhost("nb.test", **SSO)
    location = vhost.split("<Location /jupyter/>", 1)[1].split("</Location>", 1)[0]
    assert "AuthType openid-connect" in location
    assert "Require claim email:ada@example.org" in location and "Require claim groups:physics" in location
    assert "valid-user" not in location
    # Set by Apache, so whatever a client sends under these names is replaced.
    assert 'RequestHeader set X-Jupyter-User "expr=%{REMOTE_USER}"' in vhost
    assert 'RequestHeader set X-Jupyter-User-Name "expr=%{reqenv:OIDC_CLAIM_name}"' in vhost
    assert f"Include {sign_in.HOST_SECRETS_CONF}" in vhost and f"Include {sign_in.CLIENT_SECRET_CONF}" in vhost
    # The module's own endpoint is never passed on; everything else is, websockets included.
    assert vhost.index("ProxyPass /jupyter/oidc-redirect !") < vhost.index("ProxyPass /jupyter/ http://")
    assert "OIDCRedirectURI https://nb.test/jupyter/oidc-redirect" in vhost
    assert 'OIDCScope "openid email profile groups"' in vhost
    assert f"OIDCCABundlePath {sign_in.CA_BUNDLE}" in vhost
    assert "OIDCCookiePath /jupyter/" in vhost and "OIDCCookieHTTPOnly On" in vhost
    assert "OIDCClientSecret" not in vhost and "OIDCCryptoPassphrase" not in vhost
    password_vhost = apache_local.vhost("nb.test")
    assert "OIDC" not in password_vhost and "X-Jupyter-User" not in password_vhost


def test_jupyter_in_single_sign_on_mode_has_no_password_and_takes_the_person_from_apache(tmp_path):
    source, values = load_server_config(tmp_path, **SSO, collaboration=True)
    assert values["ServerApp.identity_provider_class"] == "jupyter_sign_in.ApacheIdentityProvider"
    assert values["ApacheIdentityProvider.credential"] == sign_in.CREDENTIAL
    assert values["ApacheIdentityProvider.logout_url"] == (
        "/jupyter/oidc-redirect?logout=https%3A%2F%2Fnb.example.org%2Fjupyter%2F"
    )
    assert "PasswordIdentityProvider.hashed_password" not in values
    assert values["IdentityProvider.token"] == ""
    assert values["BaseFileIdManager.db_path"].startswith(settings.home_of("jupyter"))
    unit = jupyter.unit_file("jupyter", "/opt/anaconda3", "/srv/jupyter", "/jupyter/", 8888, single_sign_on=True)
    assert f"LoadCredential={sign_in.CREDENTIAL}:{sign_in.PROXY_SECRET}" in unit
    assert "LoadCredential" not in jupyter.unit_file("jupyter", "/opt/anaconda3", "/srv/jupyter", "/jupyter/", 8888)


def test_the_servers_identity_provider_reads_the_headers_apache_sets():
    source = (apache.FILES / "jupyter_sign_in.py").read_text()
    for name in ("USER_HEADER", "NAME_HEADER", "SECRET_HEADER"):
        assert f'{name} = "{getattr(sign_in, name)}"' in source
    # Constant-time comparison of the secret; no secret, nobody.
    assert "hmac.compare_digest(sent, expected)" in source and "if not expected or" in source
