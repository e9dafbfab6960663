"""The example CI workflow holds a root SSH key: what runs next to it is pinned and checked."""

import re
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parent.parent
WORKFLOW = (ROOT / ".github" / "workflows" / "deploy.yml").read_text()
CI_DEPLOY = (ROOT / "scripts" / "ci-deploy").read_text()


def jobs(workflow: str) -> dict[str, str]:
    """The text of each job, by its name."""
    body = workflow.split("\njobs:\n", 1)[1]
    parts = re.split(r"^  ([\w-]+):\n", body, flags=re.M)[1:]
    return dict(zip(parts[::2], parts[1::2], strict=True))


def steps(job: str) -> list[str]:
    """The text of each step of a job."""
    return re.split(r"\n      - ", job.split("\n    steps:\n", 1)[1])[1:]


def requirements(path: Path) -> dict[str, list[str]]:
    """name -> sha256 hashes, from a pip requirements file with line continuations."""
    text = path.read_text().replace("\\\n", " ")
    found = {}
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip() if not line.lstrip().startswith("--hash") else line
        if not line:
            continue
        spec, *options = line.split()
        assert re.fullmatch(r"[A-Za-z0-9._-]+==[A-Za-z0-9.]+", spec), spec
        found[canonicalize_name(spec.split("==")[0])] = [o for o in options if o.startswith("--hash=sha256:")]
        assert len(found[canonicalize_name(spec.split("==")[0])]) == len(options), line
    return found


def test_every_action_is_pinned_by_commit():
    uses = re.findall(r"uses:\s*(\S+)", WORKFLOW)
    assert uses
    assert [u for u in uses if not re.fullmatch(r"[\w.-]+/[\w./-]+@[0-9a-f]{40}", u)] == []


def test_the_job_takes_its_secrets_from_an_environment():
    deploy, report = jobs(WORKFLOW)["deploy"], jobs(WORKFLOW)["report"]
    assert "\n    environment: production\n" in deploy
    # The job that only merges results holds no secret and no environment.
    assert "secrets." not in report and "environment:" not in report


@pytest.mark.parametrize("job", ["canary", "deploy"])
def test_the_install_step_has_no_secret_and_runs_before_any_secret_is_used(job):
    assert "\n    environment: production\n" in jobs(WORKFLOW)[job]
    texts = steps(jobs(WORKFLOW)[job])
    install = [i for i, step in enumerate(texts) if "scripts/ci-deploy --install" in step]
    with_secrets = [i for i, step in enumerate(texts) if "secrets." in step]
    assert len(install) == 1 and with_secrets
    assert "secrets." not in texts[install[0]] and "env:" not in texts[install[0]]
    assert install[0] < min(with_secrets)
    assert "secrets." not in WORKFLOW.split("\njobs:\n", 1)[0].split("on:", 1)[1]


def test_one_job_per_slice_and_a_last_job_merges_their_results():
    deploy, report = jobs(WORKFLOW)["deploy"], jobs(WORKFLOW)["report"]
    shards = int(re.search(r'\n  SHARDS: "(\d+)"', WORKFLOW).group(1))
    matrix = re.search(r"\n        shard: \[([\d, ]+)\]", deploy).group(1)
    assert [int(n) for n in matrix.split(",")] == list(range(1, shards + 1))
    runs = [step for step in steps(deploy) if "scripts/ci-deploy" in step and "--install" not in step]
    assert len(runs) == 2 and all('--shard "${{ matrix.shard }}/$SHARDS"' in step for step in runs)
    assert all('--result "result/shard-${{ matrix.shard }}.json"' in step for step in runs)
    assert sum("--dry" in step for step in runs) == 1
    # The deploy (not the drift check) leaves out the canary's hosts.
    assert ['--canary "$CANARY"' in step for step in runs] == ["--dry" not in step for step in runs]
    [upload] = [step for step in steps(deploy) if "actions/upload-artifact@" in step]
    assert "if: always()" in upload and "name: result-shard-${{ matrix.shard }}" in upload
    assert "\n    needs: [canary, deploy]\n" in report and "\n    if: always()\n" in report
    [download] = [step for step in steps(report) if "actions/download-artifact@" in step]
    assert "pattern: result-*" in download and "merge-multiple: true" in download
    assert 'scripts/ci-deploy --merge results --shards "$SHARDS"' in report


def test_a_canary_job_runs_first_on_a_push_and_the_slices_only_after_it_passed():
    canary, deploy = jobs(WORKFLOW)["canary"], jobs(WORKFLOW)["deploy"]
    assert int(re.search(r'\n  CANARY: "(\d+)"', WORKFLOW).group(1)) >= 1
    assert canary.startswith("    if: github.event_name != 'schedule'\n")
    [run] = [step for step in steps(canary) if "scripts/ci-deploy" in step and "--install" not in step]
    assert 'scripts/ci-deploy --canary "$CANARY" --canary-only --result result/canary.json' in run
    [upload] = [step for step in steps(canary) if "actions/upload-artifact@" in step]
    assert "if: always()" in upload and "name: result-canary" in upload
    # A failed canary stops the slices; a skipped one (the nightly drift check) does not.
    assert "\n    needs: canary\n    if: ${{ !failure() && !cancelled() }}\n" in deploy


def test_every_installed_file_is_hash_checked_and_wheels_only_but_for_polling():
    assert re.search(r"\n *pip=\(.* --require-hashes --no-deps\)\n", CI_DEPLOY)
    installs = [line for line in CI_DEPLOY.splitlines() if line.strip().startswith('"${pip[@]}"')]
    assert len(installs) == 2 and all("--only-binary :all:" in line for line in installs)
    assert [re.findall(r"--no-binary (\S+)", line) for line in installs] == [[], ["polling"]]
    assert "-c " not in CI_DEPLOY and " install ." not in CI_DEPLOY
    for name in ("ci-requirements.txt", "ci-build-requirements.txt"):
        pins = requirements(ROOT / "scripts" / name)
        assert pins and all(hashes for hashes in pins.values()), name


def test_the_pinned_set_holds_every_dependency_of_the_project():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    pins = requirements(ROOT / "scripts" / "ci-requirements.txt")
    wanted = {canonicalize_name(Requirement(spec).name) for spec in project["dependencies"]}
    assert wanted - set(pins) == set()
    # passlib is imported from libpass; the deploy runs from the checkout, not installed.
    assert "jupyter-apache-deploy" not in pins
