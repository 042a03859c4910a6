"""The README's two set-up commands are the ones CI runs and the ones a new user types."""

import ast
import graphlib
import re
from pathlib import Path

import pytest

pytestmark = [pytest.mark.component("tooling.ci"), pytest.mark.tooling]
ROOT = Path(__file__).resolve().parent.parent


def readme_section(title):
    return (ROOT / "README.md").read_text().split(f"## {title}", 1)[1].split("\n## ", 1)[0]


def readme_commands():
    """The one-line shell commands of the README's Quick start, in order."""
    return re.findall(r"```bash\n(.+?)\n```", readme_section("Quick start"))


def ci_commands():
    ci = (ROOT / ".ci/run").read_text().splitlines()
    return [line for line in ci if line.strip() and not line.lstrip().startswith("#")]


def test_readme_gives_a_tracer_command_and_a_test_command():
    """Quick start holds exactly two commands: install + the tracer, install + pytest."""
    tracer, tests = readme_commands()
    assert tracer.endswith("python -m nanochat_verify.trace") and "pip install" in tracer
    assert tests.endswith("&& pytest -v") and "'.[test]'" in tests


def test_both_commands_pin_the_cpu_torch_build():
    """An unpinned torch pulls a several-GB CUDA build: both commands pin torch==2.13.0."""
    assert all("torch==2.13.0" in command for command in readme_commands())


def test_ci_runs_exactly_the_readme_test_command_then_the_checks():
    """.ci/run executes the README's test command verbatim, the mutation catalog, then the coverage check of
    that run (before any other pytest run replaces its outcomes)."""
    commands = ci_commands()
    test_command = commands.index(readme_commands()[1])
    mutation = next(i for i, c in enumerate(commands) if c.startswith("python -m nanochat_verify.mutation"))
    check = next(i for i, c in enumerate(commands) if c.startswith("python -m nanochat_verify.report --check --from-last-run"))
    assert test_command < mutation < check
    assert not any(c.startswith("pytest") for c in commands[test_command + 1:check])


def test_ci_runs_the_verify_your_fork_commands_as_written():
    """Every command of the README's "Verify your nanochat fork" is a line of .ci/run, after the coverage check;
    a088b7a's run names its findings file and 92d63d4's none."""
    block = re.search(r"```bash\n(.+?)\n```", readme_section("Verify your nanochat fork"), re.S).group(1)
    fork_commands = block.splitlines()
    commands = ci_commands()
    check = next(i for i, c in enumerate(commands) if c.startswith("python -m nanochat_verify.report --check"))
    assert len(fork_commands) == 4 and all(c in commands[check + 1:] for c in fork_commands)
    assert all(("--expect-failures" in c) == ("a088b7a" in c) for c in fork_commands)
    assert all((ROOT / c.split("--expect-failures")[1].split()[0].lstrip("=")).is_file()
               for c in fork_commands if "--expect-failures" in c)
    assert not any("--architecture" in c for c in fork_commands)  # each finds its card by itself


def test_ci_runs_the_snapshots_of_every_era_and_checks_the_upstream_index():
    """.ci/run runs maintenance/snapshots.py (the real nanochat at a handful of commits, one per era, each finding
    its card and failing exactly its findings) and the upstream index's --check; every commit it runs has a
    snapshot name the index knows."""
    import importlib.util
    import json
    spec = importlib.util.spec_from_file_location("snapshots", ROOT / "maintenance" / "snapshots.py")
    snapshots = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(snapshots)
    commands = ci_commands()
    assert "python maintenance/snapshots.py" in commands and "python maintenance/upstream_index.py --check" in commands
    index = json.loads((ROOT / "nanochat_verify" / "cards" / "upstream.json").read_text())
    versions = {row[2] for row in index["commits"].values()}
    assert {c for c, _ in snapshots.IN_CI} | set(snapshots.NOT_IMPORTABLE) <= versions


def test_the_kit_brings_time_limits_that_a_user_can_change():
    """pytest-timeout is a dependency of the kit, and pyproject.toml gives a per-test and a whole-run limit
    (a forward that never returns fails its test instead of hanging pytest, the report and CI)."""
    import tomllib
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert any(req.startswith("pytest-timeout") for req in project["project"]["dependencies"])
    ini = project["tool"]["pytest"]["ini_options"]
    assert 0 < ini["timeout"] <= 600 and ini["timeout"] < ini["session_timeout"] <= 3600


def test_no_file_names_a_path_of_a_development_machine():
    """Sources and docs name paths relative to the checkout (../shared/SPEC.md), never /work/... or /home/..."""
    files = [ROOT / "README.md", ROOT / "pyproject.toml", ROOT / "conftest.py", ROOT / ".ci" / "run"]
    files += [f for folder in ("nanochat", "tests", "benchmarks", "maintenance") for f in sorted((ROOT / folder).glob("*.*"))
              if f.suffix in (".py", ".md", ".sh", ".toml")]
    machine_path = re.compile(r"(?<![\w.])/(work|home|root|Users)/\w")
    assert [f.name for f in files if machine_path.search(f.read_text())] == []


# every test file's parametrized ids read as documentation
TOOL_TEST_FILES = tuple(p.name for p in (ROOT / "tests").glob("test_*.py"))  # every test file


def opaque_id(item):
    """Why a parametrized test id does not read as documentation, or None."""
    if "\n" in item.nodeid or re.search(r"\\[ux][0-9a-f]{2}", item.callspec.id):
        return "a newline or an escaped character"
    argnames = set(item.callspec.params)
    for part in re.split(r"-", item.callspec.id):
        match = re.fullmatch(r"([A-Za-z_]+)\d+", part)
        if part == "None" or (match and match.group(1) in argnames):
            return f"the generated part {part!r}"
    return None


def test_the_tool_tests_parametrized_ids_read_as_documentation(request):
    """`pytest -v` shows what each case checks ([a-skip-is-not-verified]), never [outcomes0-\\u2705] or [2-None]."""
    items = [item for item in request.session.items
             if hasattr(item, "callspec") and item.path.name in TOOL_TEST_FILES]
    assert [(item.nodeid, opaque_id(item)) for item in items if opaque_id(item)] == []


def kit_imports():
    """{module: the kit's modules it imports}, for every module of nanochat_verify/, imports inside functions
    included (a deferred import in a circle is still a circle)."""
    files = {".".join(f.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__"): f
             for f in (ROOT / "nanochat_verify").rglob("*.py")}
    graph = {}
    for name, f in files.items():
        found = set()
        for node in ast.walk(ast.parse(f.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                found |= {c for a in node.names for c in (f"{node.module}.{a.name}", node.module) if c in files}
            elif isinstance(node, ast.Import):
                found |= {a.name for a in node.names if a.name in files}
        graph[name] = found - {name, *(n for n in files if name.startswith(n + "."))}  # a package's own __init__
    return graph


def test_no_module_of_the_kit_imports_in_a_circle():
    """The kit's import graph has no cycle: graphlib names one if there is."""
    try:
        tuple(graphlib.TopologicalSorter(kit_imports()).static_order())
    except graphlib.CycleError as e:
        pytest.fail(f"modules that import in a circle: {' -> '.join(e.args[1])}")
