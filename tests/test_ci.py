"""The README's two set-up commands are the ones CI runs and the ones a new user types."""

import re
from pathlib import Path

import pytest

pytestmark = [pytest.mark.component("tooling.ci"), pytest.mark.tooling]
ROOT = Path(__file__).resolve().parent.parent


def readme_commands():
    """The one-line shell commands of the README's Quick start, in order."""
    quick_start = (ROOT / "README.md").read_text().split("## Quick start", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```bash\n(.+?)\n```", quick_start)


def test_readme_gives_a_tracer_command_and_a_test_command():
    """Quick start holds exactly two commands: install + the tracer, install + pytest."""
    tracer, tests = readme_commands()
    assert tracer.endswith("python -m nanochat.trace") and "pip install" in tracer
    assert tests.endswith("&& pytest") and "'.[test]'" in tests


def test_both_commands_pin_the_cpu_torch_build():
    """An unpinned torch pulls a several-GB CUDA build: both commands pin torch==2.13.0."""
    assert all("torch==2.13.0" in command for command in readme_commands())


def test_ci_runs_exactly_the_readme_test_command_then_the_checks():
    """.ci/run executes the README's test command verbatim, then the coverage check."""
    ci = (ROOT / ".ci/run").read_text().splitlines()
    commands = [line for line in ci if line.strip() and not line.lstrip().startswith("#")]
    assert readme_commands()[1] in commands
    assert commands[-1].startswith("python -m nanochat.coverage --check")
    assert any(line.startswith("python -m nanochat.mutation") for line in commands)
