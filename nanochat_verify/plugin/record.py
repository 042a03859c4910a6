"""
--outcomes PATH: the run record (nanochat_verify/runrecord.py) the report is generated from: every test's
outcome, sub-components and docstring, and what a report needs to trust them: whether the run was the whole
suite run to its end (`complete`; `incomplete` lists why not: -k, -m, --deselect, a narrower path,
--collect-only, an -x stop, an interruption...), a run id, the source fingerprint, and the hash of the line
coverage data pytest-cov wrote in the same run.

PATH is written at the start of the run ("finished": false) and at its end, except for the project's last-run
file (`.nanochat-verify/outcomes.json`, the ini's default): the run then writes its record into its own folder
(runs.py), and only a complete run replaces the last-run file, in one step, at its end. A `pytest --co` or a
`pytest tests/test_rope.py` beside or after a complete run leaves that run's record and coverage data alone.
"""

import os
from pathlib import Path

import pytest

from nanochat_verify.components import ALL
from nanochat_verify.fingerprint import file_sha256, implementation_files, tree_fingerprint
from nanochat_verify.paths import SUITE_DIR, display, state_dir
from nanochat_verify.plugin import runs
from nanochat_verify.records import publish
from nanochat_verify.plugin.findings import FINDINGS_KEY
from nanochat_verify.plugin.options import resolve_option_path
from nanochat_verify.plugin.options import ARCH_KEY, HOW_KEY, IMPL_KEY, SPEC_KEY, is_own_implementation
from nanochat_verify.plugin.selection import COLLECTED_KEY, LEFT_OUT_KEY, deselected_by_design
from nanochat_verify.runrecord import PRECEDENCE, RunRecord, Outcome
from nanochat_verify.contract import source_path

def pytest_configure(config):
    path = config.getoption("outcomes")
    if path and not hasattr(config, "workerinput"):  # the xdist controller, or a plain run, records
        config.pluginmanager.register(OutcomeRecorder(config, path), "nanochat-verify-outcomes")


def suite_files():
    return {f"tests/{f.name}" for f in SUITE_DIR.glob("test_*.py")}


def unrun_testpaths(config):
    """For a run of other tests than the kit's suite (a project's own tests, the kit's fixture projects): the
    testpaths (ini) that the paths given on the command line do not cover entirely."""
    if config.args_source == pytest.Config.ArgsSource.TESTPATHS:
        return []
    root = config.rootpath.resolve()
    wanted = [root / p for p in config.getini("testpaths")] or [root]
    given = [(config.invocation_params.dir / a.split("::", 1)[0]).resolve() for a in config.args if "::" not in a]
    return [str(t.relative_to(root)) if t.is_relative_to(root) else str(t)
            for t in wanted if not any(g == t.resolve() or g in t.resolve().parents for g in given)]


class OutcomeRecorder:
    """Collects every test's outcome on the controller (reports from xdist workers arrive here too)."""

    def __init__(self, config, path):
        self.config = config
        self.path = resolve_option_path(config, "--outcomes", path)
        if self.path.is_dir():
            raise pytest.UsageError(f"--outcomes {path}: is a directory")
        self.run = runs.run_of(config)
        if self.run.last_run:
            # the run's own record; the last-run file is replaced by a complete run only, at its end
            self.own, self.published = self.run.folder.record, self.run.records.last_run
        else:
            # the project's state folder is made on demand; any other missing folder is a typo to report
            if not self.path.parent.is_dir() and self.path.parent != state_dir(config.rootpath):
                raise pytest.UsageError(f"--outcomes {path}: the folder {str(self.path.parent)!r} does not exist")
            folder = self.path.parent if self.path.parent.is_dir() else self.path.parent.parent
            if not os.access(folder, os.W_OK | os.X_OK) or (self.path.exists() and not os.access(self.path, os.W_OK)):
                raise pytest.UsageError(f"--outcomes {path}: cannot be written")
            self.own, self.published = self.path, None
        self.record = RunRecord(run_id=self.run.run_id, finished=False,
                                pytest_args=[str(a) for a in config.invocation_params.args],
                                architecture={"spec": str(config.stash[ARCH_KEY].path),
                                              "overrides": config.stash[ARCH_KEY].overrides,
                                              "name": config.stash[ARCH_KEY].name, "how": config.stash[HOW_KEY]})
        self.user_deselected, self.collection_errors, self.left_out = [], [], {}

    def write(self):
        self.own.parent.mkdir(exist_ok=True)
        self.own.write_text(self.record.to_json())

    def pytest_sessionstart(self, session):
        # a run that dies (killed, out of time) leaves "finished": false behind, never the outcomes of an older run
        self.write()

    @pytest.hookimpl(optionalhook=True)
    def pytest_testnodedown(self, node, error):
        """An xdist worker's tests left out until asked (they were never collected on the controller)."""
        self.left_out.update((entry[0], entry) for entry in getattr(node, "workeroutput", {}).get(
            "nanochat_verify_left_out", []))

    def record_left_out(self):
        """A test that applies but runs only when asked (the packaging tests): in the record as not run, with why."""
        self.left_out.update((entry[0], entry) for entry in self.config.stash.get(LEFT_OUT_KEY, []))
        for test_id, components, doc, why in self.left_out.values():
            self.record.tests.setdefault(test_id, Outcome(test_id, "skipped", tuple(components), doc, why))

    def pytest_deselected(self, items):
        self.user_deselected += [item.nodeid for item in items if not deselected_by_design(self.config, item)]

    def pytest_collectreport(self, report):
        if report.failed:
            self.collection_errors.append(report.nodeid or "(session)")

    def pytest_runtest_logreport(self, report):
        props = dict(report.user_properties)
        test_id = props.get("suite_id", report.nodeid)
        findings = self.config.stash.get(FINDINGS_KEY, {"expected": {}})["expected"]
        entry = self.record.tests.setdefault(test_id, Outcome(
            test_id, "passed", tuple(props["components"].split(",")) if props.get("components") else (),
            props.get("doc", ""), expected_finding=findings.get(test_id)))
        if report.when == "call":
            # an expected finding that failed (xfailed) is a failure all the same; the verdict is the findings'
            outcome = "failed" if hasattr(report, "wasxfail") else report.outcome
        elif report.failed:
            outcome = "error"
        elif report.skipped:
            outcome = "skipped"
        else:
            return
        if outcome == "skipped" and report.longrepr:
            reason = str(report.longrepr[-1]) if isinstance(report.longrepr, tuple) else str(report.longrepr)
            entry.skip_reason = reason.removeprefix("Skipped: ").strip()
        if PRECEDENCE[outcome] > PRECEDENCE[entry.outcome]:
            entry.outcome = outcome

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
        collected = self.config.stash.get(COLLECTED_KEY, set())
        if collected & suite_files():  # a run of the kit's suite must collect all of it
            left_out = sorted(suite_files() - collected)
            if left_out:
                reasons.append(f"the run left out {', '.join(left_out[:3])}" + (" ..." if len(left_out) > 3 else ""))
        else:
            unrun = unrun_testpaths(self.config)
            if unrun:
                reasons.append(f"the paths {' '.join(map(str, self.config.args))} do not cover the testpaths "
                               f"{', '.join(unrun)}")
        narrowed = [a for a in self.config.args if "::" in a]
        if narrowed:
            reasons.append(f"the node ids {' '.join(narrowed[:2])} select a subset")
        if self.collection_errors:
            reasons.append(f"{self.collection_errors[0]} failed to collect")
        stop = session.shouldfail or session.shouldstop
        if stop:
            reasons.append(f"the run stopped early ({stop})")
        status = int(exitstatus)
        if status not in (0, 1):
            names = {2: "interrupted", 3: "pytest internal error", 4: "usage error", 5: "no tests collected"}
            reasons.append(f"pytest exit status {status} ({names.get(status, 'an error')})")
        if not self.record.tests and not reasons:
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
        return {"data_file": display(data_file, self.config.rootpath), "sha256": file_sha256(data_file),
                "appended": bool(getattr(plugin.options, "cov_append", False))}

    def not_applicable(self):
        """The components the architecture card does not have: their tests were deselected by design,
        and the report shows them as not applicable rather than as untested."""
        card = self.config.stash[ARCH_KEY]
        return sorted(c.key for c in ALL if c.feature and not card.has(c.feature))

    @pytest.hookimpl(trylast=True)
    def pytest_sessionfinish(self, session, exitstatus):
        impl_path = source_path(self.config.stash[IMPL_KEY])
        incomplete = self.incomplete(session, exitstatus)
        r = self.record
        r.finished, r.impl, r.own_impl = True, self.config.stash[SPEC_KEY], is_own_implementation(self.config)
        r.impl_path = display(impl_path, self.config.rootpath)
        r.exitstatus, r.complete, r.incomplete = int(exitstatus), not incomplete, incomplete
        r.not_applicable = self.not_applicable()
        self.record_left_out()
        r.fingerprint = tree_fingerprint(implementation_files(impl_path), self.config.rootpath)
        r.line_coverage = self.line_coverage()
        self.write()
        if self.published is not None and r.complete:
            publish(r.to_json(), self.published)
