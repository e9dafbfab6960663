"""scripts/ci_deploy.py's rollout with a canary, with pyinfra and the smoke check stood in for:
which hosts each run gets, and that a failed canary stops the rollout. (Against real hosts:
tests/e2e/test_ci_deploy.py.)"""

import json
import re

import pytest

import smoke
from scripts import ci_deploy

HOSTS = ["h1", "h2", "h3", "h4", "h5"]


@pytest.fixture
def fleet(monkeypatch):
    """Five hosts; ``runs`` records the hosts of every pyinfra deploy; hosts in ``broken`` fail
    their deploy, hosts in ``unhealthy`` their smoke check."""
    state = {"runs": [], "broken": set(), "unhealthy": set()}
    targets = [{"host": h, "server_name": h, "base_url": "/jupyter/", "tls_mode": "self-signed"} for h in HOSTS]
    monkeypatch.setattr(ci_deploy, "smoke_targets", lambda inventory: [dict(t) for t in targets])

    def run_pyinfra(*args):
        limits = [args[i + 1] for i, arg in enumerate(args) if arg == "--limit"]
        hosts = limits or HOSTS
        state["runs"].append(hosts)
        failed = [h for h in hosts if h in state["broken"]]
        if failed == hosts:
            return 1, None  # pyinfra: "No hosts remaining!", and no report
        operations = [{"name": "Conda | install", "success": [h for h in hosts if h not in failed], "error": failed}]
        return (1 if failed else 0), {"results": {"operations": operations, "failed_hosts": []}}

    monkeypatch.setattr(ci_deploy, "run_pyinfra", run_pyinfra)
    monkeypatch.setattr(
        ci_deploy,
        "smoke",
        lambda targets, inventory, password, workdir: [
            smoke.Verdict(t["host"], ok=t["host"] not in state["unhealthy"], error="cell failed") for t in targets
        ],
    )
    monkeypatch.setenv("JUPYTER_PASSWORD", "x")
    monkeypatch.delenv("GITHUB_STEP_SUMMARY", raising=False)
    return state


def test_the_canary_goes_first_and_the_others_follow_when_it_passes(fleet, capsys):
    assert ci_deploy.main(["--canary", "2", "inventory.py"]) == 0
    assert fleet["runs"] == [["h1", "h2"], ["h3", "h4", "h5"]]
    summary = capsys.readouterr().out
    assert "Canary: h1, h2, deployed and smoke-checked before the others." in summary
    assert all(f"| {h} | Conda \\| install |" in summary for h in HOSTS)
    assert summary.rstrip().endswith("**OK**")


@pytest.mark.parametrize("failure", ["broken", "unhealthy"])
@pytest.mark.parametrize("canary", [1, 2])
def test_a_failed_canary_stops_the_rollout_before_the_others(fleet, capsys, failure, canary):
    fleet[failure].add("h1")
    assert ci_deploy.main(["--canary", str(canary), "inventory.py"]) == 1
    assert fleet["runs"] == [HOSTS[:canary]]
    summary = capsys.readouterr().out
    assert f"**Canary failed: the other {5 - canary} host(s) were not deployed.**" in summary
    row = summary.split("| h1 |")[1].splitlines()[0]
    assert ("failed" in row) == (failure == "broken"), row  # else the smoke check names it
    assert ("FAIL  h1" in summary) == (failure == "unhealthy")
    assert "| h3 |" not in summary and summary.rstrip().endswith("**FAILED**")


def test_with_slices_the_others_are_cut_after_the_canary(fleet, monkeypatch):
    sliced = []

    def run_shards(count, inventory, dry, canary=0):
        sliced.append((count, canary))
        return [ci_deploy.deploy(inventory, dry, "x", f"{i}/{count}", canary) for i in range(1, count + 1)]

    monkeypatch.setattr(ci_deploy, "run_shards", run_shards)
    assert ci_deploy.main(["--canary", "1", "--shards", "2", "inventory.py"]) == 0
    assert sliced == [(2, 1)]
    canary, *others = fleet["runs"]
    assert canary == ["h1"]
    # Every other host in exactly one slice, the canary in none.
    assert sorted(h for run in others for h in run) == ["h2", "h3", "h4", "h5"]


def test_a_ci_job_per_part_canary_only_then_slices_without_it(fleet, tmp_path):
    assert ci_deploy.main(["--canary", "2", "--canary-only", "--result", str(tmp_path / "c.json")]) == 0
    assert ci_deploy.main(["--canary", "2", "--shard", "1/1", "--result", str(tmp_path / "s.json")]) == 0
    assert fleet["runs"] == [["h1", "h2"], ["h3", "h4", "h5"]]


def test_more_canaries_than_hosts_is_the_whole_fleet_first(fleet):
    assert ci_deploy.main(["--canary", "9", "inventory.py"]) == 0
    assert fleet["runs"] == [HOSTS]


@pytest.mark.parametrize(
    "args",
    [
        ["--canary", "-1"],
        ["--canary-only"],
        ["--canary", "1", "--dry"],
        ["--canary", "1", "--canary-only", "--shards", "2"],
    ],
)
def test_canary_usage_errors(fleet, args, capsys):
    with pytest.raises(SystemExit) as exit:
        ci_deploy.main([*args, "inventory.py"])
    assert exit.value.code == 2 and "--canary" in capsys.readouterr().err
    assert fleet["runs"] == []


def test_merge_reports_the_canary_job_and_a_failed_one_as_the_reason_nothing_else_ran(fleet, tmp_path, capsys):
    assert ci_deploy.main(["--canary", "1", "--canary-only", "--result", str(tmp_path / "canary.json")]) == 0
    for index in (1, 2):
        result = tmp_path / f"shard-{index}.json"
        assert ci_deploy.main(["--canary", "1", "--shard", f"{index}/2", "--result", str(result)]) == 0
    capsys.readouterr()
    assert ci_deploy.main(["--merge", str(tmp_path), "--shards", "2"]) == 0
    summary = capsys.readouterr().out
    assert "Canary: h1, deployed and smoke-checked before the others." in summary
    assert "2 slices of the inventory" in summary
    assert sorted(re.findall(r"^\| (h\d) \|", summary, re.M)) == HOSTS
    # The canary's job failed: the slices' jobs never ran.
    for index in (1, 2):
        (tmp_path / f"shard-{index}.json").unlink()
    failed = json.loads((tmp_path / "canary.json").read_text())
    failed["smoke"] = [{"line": "FAIL  h1  cell failed", "ok": False}]
    (tmp_path / "canary.json").write_text(json.dumps(failed))
    assert ci_deploy.main(["--merge", str(tmp_path), "--shards", "2"]) == 1
    summary = capsys.readouterr().out
    assert "**Canary failed: the other 4 host(s) were not deployed.**" in summary
    assert "slices left no result" not in summary
