"""
The suite's pytest plugin, loaded by the top-level conftest.py.

- `--gpt-impl PATH_OR_MODULE` picks the contract implementation under test (default nanochat.gpt);
  tests reach it through the `impl` fixture.
- Every test must carry `@pytest.mark.component(ID, ...)` with IDs of nanochat/components.py; a
  missing or unknown ID stops the run before any test runs.
- Tests marked `project_only` verify the project model's extras beyond the contract (ValueError
  messages, generate, estimate_flops); they are deselected when another implementation is under
  test, unless `--with-extras` says it is a copy of nanochat/gpt.py (the mutation runner's mutants).
- Tests marked `tooling` verify the project's tools, not the model; they run only on the
  project's own implementation.
- `--prioritize-component KEY` runs the tests of one component first (the mutation runner's
  fast path together with -x).
- `--outcomes PATH` writes every test's outcome, sub-components and docstring as JSON; the
  coverage report (python -m nanochat.coverage) is generated from it.
"""

import hashlib
import json
from pathlib import Path

import pytest

from nanochat.components import expand
from nanochat.contract import DEFAULT_IMPL, ContractError, load_implementation, source_path

IMPL_KEY = pytest.StashKey()
COMPONENTS_KEY = pytest.StashKey()
PROJECT_ROOT = Path(__file__).resolve().parent.parent
OWN_IMPL_PATH = PROJECT_ROOT / "nanochat" / "gpt.py"


def pytest_addoption(parser):
    group = parser.getgroup("nanochat", "nanochat verification suite")
    group.addoption("--gpt-impl", default=DEFAULT_IMPL, metavar="PATH_OR_MODULE",
                    help="contract implementation to verify: a .py path or a dotted module name "
                         f"(default: {DEFAULT_IMPL})")
    group.addoption("--with-extras", action="store_true",
                    help="the implementation is a copy of nanochat/gpt.py: also run the project_only tests")
    group.addoption("--prioritize-component", default=None, metavar="KEY",
                    help="run the tests of this component (or sub-component) first")
    group.addoption("--outcomes", default=None, metavar="PATH",
                    help="write each test's outcome, components and docstring to this JSON file")


def pytest_configure(config):
    spec = config.getoption("gpt_impl")
    try:
        config.stash[IMPL_KEY] = load_implementation(spec)
    except ContractError as e:
        raise pytest.UsageError(str(e)) from None
    path = config.getoption("outcomes")
    if path and not hasattr(config, "workerinput"):  # the xdist controller, or a plain run, records
        config.pluginmanager.register(OutcomeRecorder(config, Path(path)), "nanochat-outcomes")


def is_own_implementation(module):
    return source_path(module) == OWN_IMPL_PATH


@pytest.fixture(scope="session")
def impl(request):
    """The contract implementation under test (a module exposing GPTConfig, GPT, norm, apply_rotary_emb)."""
    return request.config.stash[IMPL_KEY]


def item_components(item):
    """The sub-component IDs an item's `component` markers stand for; ValueError if none or unknown."""
    ids = []
    for mark in item.iter_markers("component"):
        if not mark.args:
            raise ValueError("@pytest.mark.component() needs at least one ID")
        for arg in mark.args:
            ids.extend(expand(arg))
    if not ids:
        raise ValueError("no @pytest.mark.component(ID) marker; every test must name what it verifies")
    return tuple(sorted(set(ids)))


def pytest_collection_modifyitems(session, config, items):
    problems = []
    for item in items:
        try:
            components = item_components(item)
        except ValueError as e:
            problems.append(f"  {item.nodeid}: {e}")
            continue
        item.stash[COMPONENTS_KEY] = components
        doc = (getattr(item, "function", None).__doc__ or "").strip().splitlines()
        item.user_properties.append(("components", ",".join(components)))
        item.user_properties.append(("doc", doc[0].strip() if doc else ""))
    if problems:
        raise pytest.UsageError("tests with a missing or unknown component ID:\n" + "\n".join(problems))

    if not is_own_implementation(config.stash[IMPL_KEY]):
        skipped_markers = {"tooling"} | (set() if config.getoption("with_extras") else {"project_only"})
        kept, deselected = [], []
        for item in items:
            skip = any(item.get_closest_marker(m) for m in skipped_markers)
            (deselected if skip else kept).append(item)
        if deselected:
            config.hook.pytest_deselected(items=deselected)
            items[:] = kept

    first = config.getoption("prioritize_component")
    if first:
        wanted = set(expand(first))
        items.sort(key=lambda item: not wanted.intersection(item.stash[COMPONENTS_KEY]))  # stable


def tree_fingerprint(extra=()):
    """A hash of the sources that decide the report: the package, the tests, the pytest config."""
    files = sorted(PROJECT_ROOT.glob("nanochat/*.py")) + sorted(PROJECT_ROOT.glob("tests/*.py"))
    files += [PROJECT_ROOT / "conftest.py", PROJECT_ROOT / "pyproject.toml", *map(Path, extra)]
    digest = hashlib.sha256()
    for f in files:
        if f.is_file():
            digest.update(f.name.encode() + b"\0" + f.read_bytes() + b"\0")
    return digest.hexdigest()


class OutcomeRecorder:
    """Collects every test's outcome on the controller (reports from xdist workers arrive here too)."""

    PRECEDENCE = {"passed": 0, "skipped": 1, "failed": 2, "error": 3}

    def __init__(self, config, path):
        self.config, self.path = config, path
        self.tests = {}
        self.deselected = 0

    def pytest_deselected(self, items):
        self.deselected += len(items)

    def pytest_runtest_logreport(self, report):
        props = dict(report.user_properties)
        entry = self.tests.setdefault(report.nodeid, {
            "components": props.get("components", "").split(",") if props.get("components") else [],
            "doc": props.get("doc", ""),
            "outcome": "passed",
        })
        if report.when == "call":
            outcome = "failed" if hasattr(report, "wasxfail") else report.outcome
        elif report.failed:
            outcome = "error"
        elif report.skipped:
            outcome = "skipped"
        else:
            return
        if outcome == "skipped" and report.longrepr:
            entry["skip_reason"] = str(report.longrepr[-1]) if isinstance(report.longrepr, tuple) else str(report.longrepr)
        if self.PRECEDENCE[outcome] > self.PRECEDENCE[entry["outcome"]]:
            entry["outcome"] = outcome

    @pytest.hookimpl(trylast=True)
    def pytest_sessionfinish(self, session, exitstatus):
        impl = self.config.stash[IMPL_KEY]
        own = is_own_implementation(impl)
        impl_path = source_path(impl)
        data = {
            "impl": self.config.getoption("gpt_impl"),
            "impl_path": str(impl_path.relative_to(PROJECT_ROOT)) if own else str(impl_path),
            "own_impl": own,
            "exitstatus": int(exitstatus),
            "complete": not (session.shouldfail or session.shouldstop) and int(exitstatus) in (0, 1),
            "deselected": self.deselected,
            "fingerprint": tree_fingerprint(extra=() if own else (impl_path,)),
            "tests": dict(sorted(self.tests.items())),
        }
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")
