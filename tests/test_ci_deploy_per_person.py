"""scripts/ci_deploy.py on per-person hosts: the hub's smoke-check token is read over pyinfra
(a real pyinfra run, on @local) into memory, handed to the per-person check, and printed
nowhere: not in pyinfra's log (the CI log), not in the summary."""

import secrets

import smoke
from scripts import ci_deploy


def test_the_hub_token_is_read_over_pyinfra_and_never_reaches_its_log(tmp_path, monkeypatch, capfd):
    token = f"tok-{secrets.token_hex(16)}"
    token_file = tmp_path / "smoke-token"
    token_file.write_text(token + "\n")
    monkeypatch.setattr(ci_deploy, "HUB_SMOKE_TOKEN", str(token_file))
    found = ci_deploy.probe_hub_tokens("@local", [{"host": "@local", "per_person": True}, {"host": "h2"}])
    assert found == {"@local": token}
    out, err = capfd.readouterr()
    assert token not in out + err and "Loaded fact server.Command" in err


def test_a_per_person_host_is_checked_with_its_token_and_no_password(tmp_path, monkeypatch):
    common = {"base_url": "/jupyter/", "tls_mode": "letsencrypt"}
    targets = [
        {"host": "hub1", "server_name": "hub1.example.org", "per_person": True, **common},
        {"host": "one", "server_name": "one", **common},
    ]
    monkeypatch.setattr(ci_deploy, "probe_self_signed", lambda inventory, targets: {})
    monkeypatch.setattr(ci_deploy, "probe_cells", lambda inventory, targets: {})
    monkeypatch.setattr(ci_deploy, "probe_hub_tokens", lambda inventory, targets: {"hub1": "the-token"})
    calls = []

    def check_per_person(target, token, path, ca_file, connect_to=None, people_on_host=None):
        # The fleet page's versions are asked for; people's servers are the audit's (none here).
        assert people_on_host is not None and people_on_host() == ""
        calls.append((target, token(), path))
        return smoke.Verdict(target, ok=True)

    monkeypatch.setattr(ci_deploy, "check_per_person", check_per_person)
    monkeypatch.setattr(ci_deploy, "check", lambda target, *args, **kwargs: smoke.Verdict(target, ok=False))
    verdicts = ci_deploy.smoke(targets, "inventory.py", "", tmp_path)
    assert calls == [("hub1.example.org", "the-token", "/jupyter/")]
    # The password host without a password fails; the per-person one needs none.
    assert [(v.target, v.ok) for v in verdicts] == [("hub1.example.org", True), ("one", False)]
