"""
operations/snapshot.py: the one-command host state of a concern, and the operations that
decide from it. The fact's command runs here for real against a scratch directory (it is
plain sh and coreutils); systemd's part is fed canned ``systemctl show`` output.
"""

import hashlib
import os
import subprocess

import pytest
from pyinfra.api import FileUploadCommand, FunctionCommand
from pyinfra.context import ctx_host, ctx_state
from pyinfra_testing.util import FakeState, create_host

from operations import apache, jupyter, records, snapshot


def read_for_real(**kwargs):
    fact = snapshot.HostSnapshot()
    out = subprocess.run(["sh", "-c", fact.command(**kwargs)], capture_output=True, text=True, check=True)
    return fact.process(out.stdout.splitlines())


def test_the_command_reports_files_dirs_links_absent_paths_and_probes(tmp_path):
    odd = tmp_path / "odd 'name' $HOME"
    odd.write_text("hello\n")
    os.chmod(odd, 0o640)
    (tmp_path / "dir").mkdir(mode=0o750)
    os.chmod(tmp_path / "dir", 0o750)
    (tmp_path / "link").symlink_to("/some where")
    secret = tmp_path / "secret"
    secret.write_text("argon2:...")
    state = read_for_real(
        paths=[str(odd), str(tmp_path / "dir"), str(tmp_path / "link"), str(tmp_path / "missing")],
        secret_paths=[str(secret)],
        probes={"lines": "printf 'a b\\nc\\n'"},
    )
    paths = state["paths"]
    assert paths[str(odd)].kind == "file" and paths[str(odd)].mode == "640"
    assert paths[str(odd)].detail == hashlib.sha256(b"hello\n").hexdigest()
    assert paths[str(odd)].mtime == pytest.approx(odd.stat().st_mtime, abs=1e-3)
    assert (paths[str(tmp_path / "dir")].kind, paths[str(tmp_path / "dir")].mode) == ("dir", "750")
    assert (paths[str(tmp_path / "link")].kind, paths[str(tmp_path / "link")].detail) == ("link", "/some where")
    assert paths[str(tmp_path / "missing")].kind is None
    # A secret file: its owner and mode, nothing derived from its content.
    assert paths[str(secret)].kind == "file" and paths[str(secret)].detail == ""
    assert state["probes"] == {"lines": ["a b", "c"]}


def test_units_are_parsed_from_systemctl_show():
    output = [
        "U\tjupyter.service\tMainPID=812",
        "U\tjupyter.service\tActiveState=active",
        "U\tjupyter.service\tUnitFileState=enabled",
        "U\tjupyter.service\tNeedDaemonReload=no",
        "U\tjupyter.service\tExecMainStartTimestamp=Wed 2026-12-02 12:00:00.250000 UTC",
        "U\tfail2ban.service\tActiveState=failed",
        "U\tfail2ban.service\tUnitFileState=disabled",
        "U\tfail2ban.service\tNeedDaemonReload=yes",
        "U\tfail2ban.service\tMainPID=0",
        "U\tfail2ban.service\tExecMainStartTimestamp=",
    ]
    units = snapshot.HostSnapshot().process(output)["units"]
    assert units["jupyter.service"] == snapshot.UnitState("active", "enabled", False, 812, 1796212800.25)
    assert units["fail2ban.service"] == snapshot.UnitState("failed", "disabled", True, 0, 0.0)


class Canned(snapshot.Snapshot):
    """A snapshot whose state is given, not read."""

    def __init__(self, paths=None, units=None, probes=None, made=None):
        super().__init__(paths=list(paths or {}), units=list(units or {}), probes={k: "true" for k in probes or {}})
        self._state = {"paths": paths or {}, "units": units or {}, "probes": probes or {}, "made": made or {}}


def run(op, **kwargs):
    host = create_host(FakeState())
    with ctx_state.use(FakeState()), ctx_host.use(host):
        commands = list(op._inner(**kwargs))
    shown = [
        f"upload {c.src.getvalue().decode()} to {c.dest}" if isinstance(c, FileUploadCommand) else str(c)
        for c in commands
    ]
    return shown, getattr(host, "noop_description", None)


CONTENT = "c = 1\n"
SUM = hashlib.sha256(CONTENT.encode()).hexdigest()


def test_put_same_content_and_owner_is_a_noop_and_otherwise_only_what_differs_is_mended():
    def args():
        return {"src": snapshot.text(CONTENT), "dest": "/etc/x y", "user": "root", "group": "jupyter", "mode": "640"}

    same = Canned({"/etc/x y": snapshot.PathState("file", "640", "root", "jupyter", 1.0, SUM)})
    assert run(snapshot.put, state=same, **args()) == ([], "/etc/x y is up to date")
    made = records.made("/etc/x y", SUM, "root:jupyter", "640")
    wrong_mode = Canned({"/etc/x y": snapshot.PathState("file", "644", "root", "jupyter", 1.0, SUM)})
    assert run(snapshot.put, state=wrong_mode, **args())[0] == ["chmod 640 '/etc/x y'", made]
    changed = Canned({"/etc/x y": snapshot.PathState("file", "640", "root", "jupyter", 1.0, "0" * 64)})
    assert run(snapshot.put, state=changed, **args())[0] == [
        "upload c = 1\n to /etc/x y.pyinfra-new",
        "chown root:jupyter '/etc/x y.pyinfra-new' && chmod 640 '/etc/x y.pyinfra-new' && "
        "mv -f '/etc/x y.pyinfra-new' '/etc/x y' && " + made,
    ]


def test_with_diff_a_changed_file_shows_what_changes_as_files_put_does(caplog):
    state = FakeState()
    state.config.DIFF = True
    host = create_host(state, facts={"files.FileContents": {"path=/etc/x": ["c = 0"]}})
    host.log = lambda message, log_func: log_func(message)  # what pyinfra's Host does
    canned = Canned({"/etc/x": snapshot.PathState("file", "640", "root", "root", 1.0, "0" * 64)})
    with caplog.at_level("INFO"), ctx_state.use(state), ctx_host.use(host):
        commands = list(snapshot.put._inner(snapshot.text(CONTENT), "/etc/x", "root", "root", "640", canned))
    shown = "\n".join(record.getMessage() for record in caplog.records)
    assert "Will modify" in shown and "- c = 0" in shown and "+ c = 1" in shown
    assert len(commands) == 2  # the upload and the move


def test_directory_link_absent_and_service_decide_from_the_snapshot():
    state = Canned(
        {
            "/d": snapshot.PathState("dir", "755", "root", "root"),
            "/l": snapshot.PathState("link", "777", "root", "jupyter", 0, "/old"),
            "/gone": snapshot.PathState(None),
        },
        units={"f.service": snapshot.UnitState("inactive", "enabled")},
    )
    assert run(snapshot.directory, path="/d", user="root", group="root", mode="755", state=state)[0] == []
    assert run(snapshot.directory, path="/d", user="jupyter", group="root", mode="750", state=state)[0] == [
        "chown jupyter:root /d",
        "chmod 750 /d",
        records.made("/d", "dir", "jupyter:root", "750"),
    ]
    assert run(snapshot.link, path="/l", target="/new", user="root", group="jupyter", state=state)[0] == [
        "ln -sfn /new /l",
        "chown -h root:jupyter /l && " + records.made("/l", "link:/new", "root:jupyter", "-"),
    ]
    assert run(snapshot.link, path="/l", target="/old", user="root", group="jupyter", state=state)[0] == []
    assert run(snapshot.absent, path="/gone", state=state) == ([], "/gone is absent")
    assert run(snapshot.absent, path="/l", state=state)[0] == ["rm -rf /l"]
    assert run(snapshot.service, service="f.service", state=state)[0] == ["systemctl start f.service"]


def test_service_restarts_reloads_and_reloads_systemd_only_when_called_for():
    running = Canned(units={"f.service": snapshot.UnitState("active", "enabled")})
    assert run(snapshot.service, service="f.service", state=running) == ([], "f.service is running and enabled")
    restarted = run(snapshot.service, service="f.service", restarted=True, state=running)[0]
    assert restarted == ["systemctl restart f.service"]
    assert run(snapshot.service, service="f.service", restarted=lambda: False, state=running)[0] == []
    checked = run(
        snapshot.service,
        service="f.service",
        reloaded=lambda: True,
        daemon_reload=True,
        check_command="f --test",
        ready_command="f --wait",
        state=running,
    )[0]
    assert checked == ["systemctl daemon-reload", "f --test", "systemctl reload-or-restart f.service", "f --wait"]
    # systemd itself says a unit file changed (an interrupted run): reloaded whatever else.
    stale = Canned(units={"f.service": snapshot.UnitState("active", "enabled", needs_daemon_reload=True)})
    assert run(snapshot.service, service="f.service", state=stale)[0] == ["systemctl daemon-reload"]
    # A stopped unit is started (with what it reads now), never restarted too.
    stopped = Canned(units={"f.service": snapshot.UnitState("inactive", "disabled")})
    assert run(snapshot.service, service="f.service", restarted=True, state=stopped)[0] == [
        "systemctl start f.service",
        "systemctl enable f.service",
    ]


def test_a_path_or_unit_two_operations_would_decide_is_refused_while_the_run_is_planned():
    state = Canned({"/d": snapshot.PathState("dir", "755", "root", "root")}, units={"f.service": snapshot.UnitState()})
    state.claim("/d", "Notebook directory")
    state.claim("f.service", "f running")
    with pytest.raises(ValueError, match=r"/d is decided by two operations: 'Notebook directory' and 'Other'"):
        state.claim("/d", "Other")
    with pytest.raises(ValueError, match=r"f.service is decided by two operations"):
        state.claim("f.service", "f restarted")
    with pytest.raises(AssertionError, match="is not in this snapshot"):
        state.claim("/elsewhere", "x")


@pytest.mark.parametrize(
    "script, data, wanted",
    [
        ("deploy.py", {}, {jupyter.CONFIG_FILE, jupyter.UNIT, apache.SITE_PATH, "fail2ban.service"}),
        ("rollback.py", {}, {jupyter.layout.RESTART_SCRIPT}),
        ("restore.py", {"backup_repository": "/srv/backups/nb"}, set()),
        ("uninstall.py", {}, set()),
    ],
)
def test_every_deploy_file_claims_each_path_and_unit_once(monkeypatch, script, data, wanted):
    """Each file you run, planned for a fresh and a converged host: claims are made while the
    run is planned, once each per host whatever concern makes them (a second raises, and the
    run fails), and those the deploy is known to make are among them."""
    from tests.fake_hosts import FRESH, converged_responses
    from tests.test_fake_deploy import run_deploy

    claims: dict[str, set[str]] = {}
    original = snapshot.Snapshot.claim

    def recording(self, what, by):
        original(self, what, by)
        claims.setdefault(script, set()).add(what)

    monkeypatch.setattr(snapshot.Snapshot, "claim", recording)
    for responses in (FRESH, converged_responses()):
        run_deploy(
            monkeypatch,
            [("@fake/nb1", {"server_name": "nb.test", "fake_responses": responses, **data})],
            script=script,
        )
    assert wanted <= claims.get(script, set())


def test_restart_pending_names_files_newer_than_the_running_process():
    state = Canned(
        {
            "/etc/jupyter/c.py": snapshot.PathState("file", "640", "root", "jupyter", 200.0, SUM),
            "/etc/jupyter/p": snapshot.PathState("file", "640", "root", "jupyter", 50.0),
        },
        units={"jupyter.service": snapshot.UnitState("active", "enabled", True, 812, 100.0)},
    )
    paths = ["/etc/jupyter/c.py", "/etc/jupyter/p"]
    assert jupyter.restart_pending(state, "jupyter.service", paths) == ["/etc/jupyter/c.py"]
    stopped = Canned(state._state["paths"], units={"jupyter.service": snapshot.UnitState("inactive", "enabled")})
    assert jupyter.restart_pending(stopped, "jupyter.service", paths) == []


def test_apache_reload_is_pending_for_anything_newer_than_its_last_reload():
    def state(stamp, cert):
        paths = {
            p: snapshot.PathState("file", "644", "root", "root", 10.0) for p in apache.served_by_apache("self-signed")
        }
        paths[apache.RELOAD_STAMP] = (
            snapshot.PathState("file", "644", "root", "root", stamp) if stamp else snapshot.PathState(None)
        )
        paths[apache.tls.CERT] = snapshot.PathState("file", "644", "root", "root", cert)
        paths[apache.HTPASSWD] = snapshot.PathState(None)
        paths.update({p: snapshot.PathState(None) for p in apache.sign_in.APACHE_READS})
        return Canned(paths)

    assert apache.reload_pending(state(20.0, 15.0), "self-signed") is False
    assert apache.reload_pending(state(20.0, 25.0), "self-signed") is True
    assert apache.reload_pending(state(None, 1.0), "self-signed") is True


def test_what_the_deploy_made_is_recorded_and_read_back_with_the_snapshot(tmp_path, monkeypatch):
    """records.made's command, run for real, then the snapshot's command reading it back."""
    monkeypatch.setattr(records, "STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setattr(records, "MADE", str(tmp_path / "state" / "made"))
    odd = str(tmp_path / "odd 'name' $HOME")
    for what in ("1" * 64, "2" * 64):  # a second record of a path replaces the first
        subprocess.run(["sh", "-c", records.made(odd, what, "root:jupyter", "0640")], check=True)
    subprocess.run(["sh", "-c", records.made("/l", "link:../a b", "root:root", "-")], check=True)
    state = read_for_real(paths=[odd, "/l", "/never"])
    assert state["made"] == {
        odd: snapshot.Made("2" * 64, "root:jupyter", "640"),
        "/l": snapshot.Made("link:../a b", "root:root", "-"),
    }


def test_what_changed_outside_the_deploy_is_named_and_said_when_it_is_put_back():
    made = {
        "/etc/f": snapshot.Made(SUM, "root:root", "644"),
        "/etc/l": snapshot.Made("link:../available/x.conf", "root:root", "-"),
        "/etc/gone": snapshot.Made(SUM, "root:root", "644"),
    }
    edited = Canned(
        {
            "/etc/f": snapshot.PathState("file", "666", "root", "root", 1.0, "0" * 64),
            "/etc/l": snapshot.PathState("file", "644", "root", "root", 1.0, "0" * 64),
            "/etc/gone": snapshot.PathState(None),
            "/etc/new": snapshot.PathState(None),
        },
        made=made,
    )
    assert edited.drift("/etc/f") == "its content was changed, its mode was 666, not 644"
    assert edited.drift("/etc/l") == "a file stood where the deploy's link belongs"
    assert edited.drift("/etc/gone") == "the file the deploy made there was removed"
    assert edited.drift("/etc/new") is None  # never made by the deploy: a first write, not a repair
    as_left = Canned({"/etc/f": snapshot.PathState("file", "644", "root", "root", 1.0, SUM)}, made=made)
    assert as_left.drift("/etc/f") is None
    # A new content the settings call for is an update, not a repair: the deploy made what is there.
    host = create_host(FakeState())
    said = []
    host.log = lambda message, log_func=None: said.append(message)
    with ctx_state.use(FakeState()), ctx_host.use(host):
        commands = list(snapshot.put._inner(snapshot.text("c = 2\n"), "/etc/f", "root", "root", "644", as_left))
        assert not [c for c in commands if isinstance(c, FunctionCommand)]
        commands = list(snapshot.put._inner(snapshot.text(CONTENT), "/etc/f", "root", "root", "644", edited))
        for command in commands:
            if isinstance(command, FunctionCommand):
                command.function(*command.args, **command.kwargs)
        # The link's place held an edited file: kept aside, then the link made again.
        links = list(snapshot.link._inner("/etc/l", "../available/x.conf", "root", "root", edited))
    assert said == [
        "Repairing /etc/f: its content was changed, its mode was 666, not 644 (outside the deploy); "
        "put back as the deploy makes it"
    ]
    shown = [str(c) for c in links if not isinstance(c, FunctionCommand)]
    assert shown[0].startswith(f"mkdir -p {snapshot.SET_ASIDE_DIR} && mv -T /etc/l {snapshot.SET_ASIDE_DIR}/etc_l.")
    assert shown[1] == "ln -sfn ../available/x.conf /etc/l"
