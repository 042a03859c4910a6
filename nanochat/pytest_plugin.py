"""
The suite's pytest plugin, loaded by pyproject.toml's addopts (`-p nanochat.pytest_plugin`) and by
the top-level conftest.py (for a run with another ini file).

- `--gpt-impl PATH_OR_MODULE` picks the contract implementation under test (default nanochat.gpt):
  a .py file, a nanochat checkout or a dotted module name; tests reach it through the `impl` fixture.
- `--architecture NAME_OR_PATH` picks the architecture card the implementation is verified against
  (default: [tool.nanochat] of pyproject.toml, else `seed`); tests reach it through `arch`. Tests of
  a component the card does not have (a modern component of nanochat 92d63d4 under the seed-era
  a088b7a card) are deselected: not applicable.
- Every test must carry `@pytest.mark.component(ID, ...)` with IDs of nanochat/components.py; a
  missing or unknown ID stops the run before any test runs.
- Tests marked `project_only` verify the project model's extras beyond the contract (ValueError
  messages, generate, estimate_flops); they are deselected when another implementation is under
  test, unless `--with-extras` says it is a copy of nanochat/gpt.py (the mutation runner's mutants).
- Tests marked `tooling` verify the project's tools, not the model; they run only on the
  project's own implementation.
- `--prioritize-component KEY` runs the tests of one component first, then the rest of its table
  row's, then the oracle and validation tests, then the others (the mutation runner's fast path
  together with -x: a mutant is usually killed within its first few tests).
- `--outcomes PATH` writes every test's outcome, sub-components and docstring as JSON; the
  coverage report (python -m nanochat.coverage) is generated from it. The file also says whether
  the run was the whole suite run to its end (`complete`; `incomplete` lists why not: -k, -m,
  --deselect, narrower paths, --collect-only, an -x stop, an interruption...), and carries a run id,
  the source fingerprint and the hash of the line coverage data pytest-cov wrote in the same run, so
  that a report can refuse outcomes that do not speak for every component.
- Paths resolve against the project root (pytest's rootdir), not the current folder: the outcomes
  file (unless given on the command line), pytest-cov's `.coverage` and hypothesis's `.hypothesis/`.
  For `.coverage` this needs the plugin loaded before pytest-cov starts: pyproject.toml's addopts
  name it with `-p`.
"""

import json
import os
import sys
import uuid
from pathlib import Path

import pytest

from nanochat.architecture import CardError, load_card
from nanochat.components import component_of, expand
from nanochat.cli import file_sha256, read_expected_failures, tree_fingerprint
from nanochat.contract import DEFAULT_IMPL, ContractError, load_implementation, source_path

IMPL_KEY = pytest.StashKey()
ARCH_KEY = pytest.StashKey()
COMPONENTS_KEY = pytest.StashKey()
PROJECT_ROOT = Path(__file__).resolve().parent.parent
OWN_IMPL_PATH = PROJECT_ROOT / "nanochat" / "gpt.py"


def pytest_addoption(parser):
    group = parser.getgroup("nanochat", "nanochat verification suite")
    group.addoption("--gpt-impl", default=DEFAULT_IMPL, metavar="PATH_OR_MODULE",
                    help="contract implementation to verify: a .py path, a nanochat checkout folder or a "
                         f"dotted module name (default: {DEFAULT_IMPL})")
    group.addoption("--architecture", default=None, metavar="NAME_OR_PATH",
                    help="architecture card to verify against: a card name (seed, nanochat-a088b7a, "
                         "nanochat-92d63d4) or a .toml path (default: [tool.nanochat] of pyproject.toml, else seed)")
    group.addoption("--with-extras", action="store_true",
                    help="the implementation is a copy of nanochat/gpt.py: also run the project_only tests")
    group.addoption("--prioritize-component", default=None, metavar="KEY",
                    help="run the tests of this component (or sub-component) first, then its table row's, "
                         "then the oracle and validation tests")
    group.addoption("--expect-failures", default=None, metavar="PATH",
                    help="a file of node ids, one per line (# starts a comment): the run passes when exactly these "
                         "tests fail (the known findings of a real implementation), and fails on any other failure "
                         "or on an expected one that passes")
    group.addoption("--outcomes", default=None, metavar="PATH",
                    help="write each test's outcome, components and docstring to this JSON file "
                         "(relative to the project root when set in the ini file)")


def pytest_configure(config):
    spec = config.getoption("gpt_impl")
    try:
        config.stash[IMPL_KEY] = load_implementation(spec)
        config.stash[ARCH_KEY] = load_card(config.getoption("architecture"), root=config.rootpath)
    except (ContractError, CardError) as e:
        raise pytest.UsageError(str(e)) from None
    path = config.getoption("outcomes")
    if path and not hasattr(config, "workerinput"):  # the xdist controller, or a plain run, records
        config.pluginmanager.register(OutcomeRecorder(config, Path(path)), "nanochat-outcomes")
    expected = config.getoption("expect_failures")
    if expected and not hasattr(config, "workerinput"):
        config.pluginmanager.register(ExpectedFailures(config, expected), "nanochat-expected-failures")


def is_own_implementation(module):
    return source_path(module) == OWN_IMPL_PATH


@pytest.fixture(scope="session")
def impl(request):
    """The contract implementation under test (a module exposing GPTConfig, GPT, norm, apply_rotary_emb)."""
    return request.config.stash[IMPL_KEY]


@pytest.fixture(scope="session")
def arch(request):
    """The architecture card the implementation is verified against (nanochat.architecture.Architecture)."""
    return request.config.stash[ARCH_KEY]


def applicable(components, card):
    """Whether a test of these sub-components applies under the card: not when one of them is a
    component the card's architecture does not have."""
    return all(component_of(c).feature is None or card.has(component_of(c).feature) for c in components)


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

    kept, deselected = [], []
    for item in items:
        (deselected if deselected_by_design(config, item) else kept).append(item)
    if deselected:
        config.hook.pytest_deselected(items=deselected)
        items[:] = kept

    first = config.getoption("prioritize_component")
    if first:
        tiers = priority_tiers(first)
        items.sort(key=lambda item: next((rank for rank, ids in enumerate(tiers)
                                          if ids.intersection(item.stash[COMPONENTS_KEY])), len(tiers)))  # stable


# after the component itself: whole-model comparisons with the independent reference, and the checks
# of every input and boundary, which catch most bugs whose symptom shows outside their own component
BROAD_CATCHERS = ("contract.oracle", "contract.validation")


def priority_tiers(key):
    """The order --prioritize-component KEY runs the tests in, as sets of sub-component IDs: KEY's,
    then the rest of its component's, then the broad catchers; every other test after these."""
    component = key.split(".", 1)[0]
    return [set(expand(key)), set(expand(component)), {s for c in BROAD_CATCHERS for s in expand(c)}]


# ------------------------------------------------------------------------------------------------
# Where things are written, and options checked before the run


@pytest.hookimpl(wrapper=True)
def pytest_load_initial_conftests(early_config, parser, args):
    """pytest-cov starts here (tryfirst) and puts `.coverage` in the current folder, reading its
    settings from there: a run started elsewhere (`cd /tmp && pytest <checkout>/tests/...`) must
    still use the project's data file and [tool.coverage] settings. Runs only when the plugin is
    loaded early, by the `-p nanochat.pytest_plugin` of pyproject.toml's addopts."""
    root = early_config.rootpath
    if Path.cwd().resolve() != root.resolve() and (root / "pyproject.toml").is_file():
        os.environ.setdefault("COVERAGE_FILE", str(root / ".coverage"))
        options = early_config.known_args_namespace
        if getattr(options, "cov_config", None) == ".coveragerc" and not Path(".coveragerc").exists():
            options.cov_config = str(root / "pyproject.toml")
    return (yield)


@pytest.hookimpl(tryfirst=True)
def pytest_cmdline_main(config):
    """Options that name something are checked before collection: a usage error, not an INTERNALERROR."""
    first = config.getoption("prioritize_component")
    if first is not None:
        try:
            expand(first)
        except ValueError as e:
            raise pytest.UsageError(f"--prioritize-component {first!r}: {e}") from None


HYPOTHESIS_HOME_KEY = pytest.StashKey()


def pytest_sessionstart(session):
    """hypothesis keeps its caches in .hypothesis/ of the current folder: keep them in the project.
    The suite imports hypothesis in its conftest; a run that has not imported it (seconds of import
    time) needs no folder for it."""
    configuration = sys.modules.get("hypothesis.configuration")
    if configuration is not None and not os.environ.get("HYPOTHESIS_STORAGE_DIRECTORY"):
        previous = configuration.storage_directory(intent_to_write=False).home_directory
        session.config.stash[HYPOTHESIS_HOME_KEY] = previous
        configuration.set_hypothesis_home_dir(session.config.rootpath / ".hypothesis")


def pytest_unconfigure(config):
    # a run inside another (pytester) gives the outer run its folder back
    previous = config.stash.get(HYPOTHESIS_HOME_KEY, None)
    if previous is not None:
        sys.modules["hypothesis.configuration"].set_hypothesis_home_dir(previous)


def resolve_option_path(config, option, value):
    """A path option's value: relative to where pytest was started when the user typed it, relative
    to the project root when it comes from the ini file (addopts), like pytest's own ini paths."""
    path = Path(value)
    if path.is_absolute():
        return path
    typed = any(a == option or a.startswith(option + "=") for a in config.invocation_params.args)
    return (config.invocation_params.dir if typed else config.rootpath) / path


def deselected_by_design(config, item):
    """Whether the plugin itself leaves this test out (not applicable to the card, or not part of
    the contract for another implementation): such a test does not make a run incomplete."""
    components = item.stash.get(COMPONENTS_KEY, None)
    if components is not None and not applicable(components, config.stash[ARCH_KEY]):
        return True
    if is_own_implementation(config.stash[IMPL_KEY]):
        return False
    markers = {"tooling"} | (set() if config.getoption("with_extras") else {"project_only"})
    return any(item.get_closest_marker(m) for m in markers)


def unrun_testpaths(config):
    """The testpaths (ini) that the paths given on the command line do not cover entirely."""
    if config.args_source == pytest.Config.ArgsSource.TESTPATHS:
        return []
    root = config.rootpath.resolve()
    wanted = [root / p for p in config.getini("testpaths")] or [root]
    given = [(config.invocation_params.dir / a.split("::", 1)[0]).resolve() for a in config.args if "::" not in a]
    return [str(t.relative_to(root)) if t.is_relative_to(root) else str(t)
            for t in wanted if not any(g == t.resolve() or g in t.resolve().parents for g in given)]


# ------------------------------------------------------------------------------------------------
# The outcomes file


class OutcomeRecorder:
    """Collects every test's outcome on the controller (reports from xdist workers arrive here too),
    and what a report needs to trust them: whether this was the whole suite run to its end, a run
    id, the source fingerprint, and the hash of the line coverage data of this same run."""

    PRECEDENCE = {"passed": 0, "skipped": 1, "failed": 2, "error": 3}
    SCHEMA = 2  # the generator refuses other versions as damaged

    def __init__(self, config, path):
        self.config = config
        self.path = resolve_option_path(config, "--outcomes", path)
        if self.path.is_dir():
            raise pytest.UsageError(f"--outcomes {path}: is a directory")
        # the project's .nanochat/ is made on demand; any other missing folder is a typo to report
        if not self.path.parent.is_dir() and self.path.parent != config.rootpath / ".nanochat":
            raise pytest.UsageError(f"--outcomes {path}: the folder {str(self.path.parent)!r} does not exist")
        self.run_id = uuid.uuid4().hex
        self.tests = {}
        self.user_deselected = []
        self.collection_errors = []

    def header(self):
        card = self.config.stash[ARCH_KEY]
        return {"schema": self.SCHEMA, "run_id": self.run_id,
                "pytest_args": [str(a) for a in self.config.invocation_params.args],
                # the card the tests read, as given (None: the project's pyproject.toml), for the report's titles
                "architecture": {"spec": self.config.getoption("architecture"), "name": card.name}}

    def write(self, data):
        self.path.parent.mkdir(exist_ok=True)
        self.path.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")

    def pytest_sessionstart(self, session):
        # replaces the previous run's outcomes at once: a run that dies (killed, out of time) leaves
        # "finished": false behind, never the outcomes of an older run
        self.write({**self.header(), "finished": False})

    def pytest_deselected(self, items):
        self.user_deselected += [item.nodeid for item in items if not deselected_by_design(self.config, item)]

    def pytest_collectreport(self, report):
        if report.failed:
            self.collection_errors.append(report.nodeid or "(session)")

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

    def incomplete(self, session, exitstatus):
        """Why these outcomes do not speak for the whole suite, in the words of the options that did it."""
        option, reasons = self.config.option, []
        if getattr(option, "collectonly", False):
            reasons.append("--collect-only ran no test")
        if getattr(option, "keyword", ""):
            reasons.append(f"-k {option.keyword!r} selected a subset")
        if getattr(option, "markexpr", ""):
            reasons.append(f"-m {option.markexpr!r} selected a subset")
        if getattr(option, "deselect", None):
            reasons.append(f"--deselect left out {', '.join(option.deselect)}")
        if getattr(option, "lf", False):
            reasons.append("--last-failed ran only the last failures")
        if getattr(option, "stepwise", False) or getattr(option, "stepwise_skip", False):
            reasons.append("--stepwise stops at the first failure")
        if self.user_deselected and not reasons:
            reasons.append(f"{len(self.user_deselected)} tests were deselected, e.g. {self.user_deselected[0]}")
        unrun = unrun_testpaths(self.config)
        if unrun:
            reasons.append(f"the paths {' '.join(map(str, self.config.args))} do not cover the testpaths {', '.join(unrun)}")
        ignored = (getattr(option, "ignore", None) or []) + (getattr(option, "ignore_glob", None) or [])
        if ignored:
            reasons.append(f"--ignore left out {', '.join(map(str, ignored))}")
        if self.collection_errors:
            reasons.append(f"{self.collection_errors[0]} failed to collect")
        stop = session.shouldfail or session.shouldstop
        if stop:
            reasons.append(f"the run stopped early ({stop})")
        status = int(exitstatus)
        if status not in (0, 1):
            names = {2: "interrupted", 3: "pytest internal error", 4: "usage error", 5: "no tests collected"}
            reasons.append(f"pytest exit status {status} ({names.get(status, 'an error')})")
        if not self.tests and not reasons:
            reasons.append("no test ran")
        return reasons

    def line_coverage(self):
        """The data file pytest-cov wrote for this run, and its hash; None when coverage was off.
        pytest-cov saves (and combines xdist workers' data) at the end of pytest_runtestloop, so by
        pytest_sessionfinish the file is final."""
        plugin = self.config.pluginmanager.getplugin("_cov")
        controller = getattr(plugin, "cov_controller", None)
        if plugin is None or getattr(plugin, "_disabled", False) or controller is None:
            return None
        data_file = Path(controller.cov.config.data_file)
        data_file = data_file if data_file.is_absolute() else Path(controller.topdir) / data_file
        if not data_file.is_file():
            return None
        root = self.config.rootpath.resolve()
        shown = data_file.resolve()
        return {"data_file": str(shown.relative_to(root)) if shown.is_relative_to(root) else str(shown),
                "sha256": file_sha256(data_file),
                "appended": bool(getattr(plugin.options, "cov_append", False))}

    def not_applicable(self):
        """The components the architecture card does not have: their tests were deselected by design,
        and the report shows them as not applicable rather than as untested."""
        from nanochat.components import ALL
        card = self.config.stash.get(ARCH_KEY, None)
        return sorted(c.key for c in ALL
                      if getattr(c, "feature", None) and card is not None and not card.has(c.feature))

    @pytest.hookimpl(trylast=True)
    def pytest_sessionfinish(self, session, exitstatus):
        impl = self.config.stash[IMPL_KEY]
        own = is_own_implementation(impl)
        impl_path = source_path(impl)
        incomplete = self.incomplete(session, exitstatus)
        self.write({
            **self.header(),
            "finished": True,
            "impl": self.config.getoption("gpt_impl"),
            "impl_path": str(impl_path.relative_to(PROJECT_ROOT)) if own else str(impl_path),
            "own_impl": own,
            "exitstatus": int(exitstatus),
            "complete": not incomplete,
            "incomplete": incomplete,
            "deselected_by_user": len(self.user_deselected),
            "not_applicable": self.not_applicable(),
            "fingerprint": tree_fingerprint(self.config.rootpath, extra=() if own else (impl_path,)),
            "line_coverage": self.line_coverage(),
            "tests": dict(sorted(self.tests.items())),
        })


# ------------------------------------------------------------------------------------------------
# Known findings of a real implementation


class ExpectedFailures:
    """Turns "exactly these tests fail" into the run's verdict: the known findings of a real
    implementation (nanochat a088b7a's bfloat16 logits) must keep failing, and nothing else may."""

    def __init__(self, config, path):
        self.path = resolve_option_path(config, "--expect-failures", path)
        try:
            self.expected = read_expected_failures(self.path)
        except OSError as e:
            raise pytest.UsageError(f"--expect-failures {path}: {e.strerror or e}") from None
        except ValueError as e:
            raise pytest.UsageError(f"--expect-failures: {e}") from None
        self.failed, self.passed = set(), set()

    def pytest_runtest_logreport(self, report):
        if report.failed:
            self.failed.add(report.nodeid)
        elif report.when == "call" and report.passed:
            self.passed.add(report.nodeid)

    def verdict(self):
        unexpected = sorted(self.failed - set(self.expected))
        gone = sorted(n for n in self.expected if n not in self.failed)
        return unexpected, gone

    @pytest.hookimpl(tryfirst=True)
    def pytest_terminal_summary(self, terminalreporter):
        unexpected, gone = self.verdict()
        tr = terminalreporter
        tr.section(f"expected findings ({self.path.name})")
        for nodeid, note in self.expected.items():
            state = "failed, as expected" if nodeid in self.failed else (
                "PASSED: the finding is gone" if nodeid in self.passed else "DID NOT RUN")
            tr.line(f"{state:30s} {nodeid}  ({note})")
        for nodeid in unexpected:
            tr.line(f"{'UNEXPECTED FAILURE':30s} {nodeid}")
        if unexpected or gone:
            tr.line(f"{len(unexpected)} unexpected failure(s), {len(gone)} expected finding(s) not failing: "
                    f"the run fails", red=True)
        else:
            tr.line(f"exactly the {len(self.expected)} expected finding(s) failed", green=True)

    @pytest.hookimpl(trylast=True)
    def pytest_sessionfinish(self, session, exitstatus):
        if int(exitstatus) not in (0, 1):
            return  # an interrupted or broken run keeps its own status
        unexpected, gone = self.verdict()
        session.exitstatus = pytest.ExitCode.TESTS_FAILED if unexpected or gone else pytest.ExitCode.OK
