"""scripts/ci_deploy.py's report: one run, or the results of several slices merged into one."""

import json

from scripts import ci_deploy


def result(hosts, changes=None, errors=None, smoke=None, code=0, reported=True, dry=False):
    return {
        "dry": dry,
        "hosts": hosts,
        "changes": changes or {},
        "errors": errors or {},
        "smoke": smoke or [{"line": f"{h}: OK", "ok": True} for h in hosts],
        "seconds": 1.5,
        "code": code,
        "reported": reported,
    }


def test_slices_merge_into_one_table_and_one_smoke_check():
    summary, failed = ci_deploy.report(
        [result(["a", "b"], {"a": ["Jupyter | x"]}), result(["c"]), result([])], dry=False
    )
    assert not failed and summary.rstrip().endswith("**OK**")
    assert "3 slices of the inventory" in summary
    assert "| a | Jupyter \\| x |" in summary and "| b | nothing |" in summary and "| c | nothing |" in summary
    assert summary.count(": OK") == 3 and "pyinfra exit 0, 0, 0" in summary


def test_one_failed_slice_fails_the_whole_report_and_names_the_host():
    summary, failed = ci_deploy.report(
        [result(["a"]), result(["b"], errors={"b": "Conda | install"}, code=1, smoke=[])], dry=False
    )
    assert failed and "| b | nothing; **failed at: Conda \\| install** |" in summary
    summary, failed = ci_deploy.report([result(["a"]), result([], code=1, reported=False)], dry=False)
    assert failed and "before it could report" in summary
    # Every host of a run failed: pyinfra reports nothing, the hosts are still named.
    summary, failed = ci_deploy.report([result(["a"], code=1, reported=False, smoke=[])], dry=False)
    assert failed and "| a | **failed: no report from pyinfra, see the log above** |" in summary


def test_drift_in_any_slice_is_drift():
    drifted = result(["b"], {"b": ["Apache | vhost"]}, dry=True)
    summary, failed = ci_deploy.report([result(["a"], dry=True), drifted], dry=True)
    assert failed and "Drift: 1 host(s) differ" in summary and "would change" in summary


def test_merge_fails_when_a_slice_left_no_result(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("GITHUB_STEP_SUMMARY", raising=False)
    for index in (1, 2):
        (tmp_path / f"shard-{index}.json").write_text(json.dumps(result([f"h{index}"])))
    assert ci_deploy.main(["--merge", str(tmp_path), "--shards", "2"]) == 0
    assert capsys.readouterr().out.rstrip().endswith("**OK**")
    # The third slice's job died before writing its result.
    assert ci_deploy.main(["--merge", str(tmp_path), "--shards", "3"]) == 1
    summary = capsys.readouterr().out
    assert "1 of 3 slices left no result: see their jobs." in summary and summary.rstrip().endswith("**FAILED**")
    assert "| h1 | nothing |" in summary and "| h2 | nothing |" in summary
