"""
--expect-failures PATH (or `expect-failures` in [tool.nanochat-verify]): the known findings of a real
implementation (nanochat_verify/findings.py). Each listed test is marked as pytest's strict xfail, so that
the run passes when exactly these fail (xfailed), and fails on any other failure or when one of them passes
(XPASS(strict)). An id that names no test (its file collected without it, or no such file) stops the run
before any test runs.
"""

import pytest

from nanochat_verify.findings import FindingsError, read_findings, verdict
from nanochat_verify.paths import SUITE_DIR
from nanochat_verify.plugin.options import resolve_option_path
from nanochat_verify.plugin.options import SETTINGS_KEY
from nanochat_verify.plugin.selection import suite_id

FINDINGS_KEY = pytest.StashKey()


def findings_path(config):
    typed = config.getoption("expect_failures")
    if typed:
        return resolve_option_path(config, "--expect-failures", typed)
    return config.stash[SETTINGS_KEY].expect_failures  # resolved against its pyproject.toml


def pytest_configure(config):
    path = findings_path(config)
    if path is None:
        return
    try:
        expected = read_findings(path)
    except FindingsError as e:
        raise pytest.UsageError(f"--expect-failures: {e}") from None
    config.stash[FINDINGS_KEY] = {"path": path, "expected": expected, "failed": set(), "passed": set()}
    if not hasattr(config, "workerinput"):
        config.pluginmanager.register(FindingsSummary(config), "nanochat-verify-findings-summary")


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(session, config, items):
    state = config.stash.get(FINDINGS_KEY, None)
    if state is None:
        return
    ids = {suite_id(item): item for item in items}
    files = {i.split("::", 1)[0] for i in ids}
    # an id names no test when its file was collected without it, or when there is no such file at all (a file
    # that exists but was not collected, by a narrower run, is fine)
    unknown = [t for t in state["expected"] if t not in ids and (t.split("::", 1)[0] in files
                                                                  or not test_file_exists(config, t))]
    if unknown:
        raise pytest.UsageError(f"--expect-failures {state['path']}: {len(unknown)} id(s) name no test of the suite, "
                                f"e.g. {unknown[0]!r}")
    for test_id, note in state["expected"].items():
        if test_id in ids:
            ids[test_id].add_marker(pytest.mark.xfail(strict=True, reason=f"expected finding: {note or 'recorded'}"))


def test_file_exists(config, test_id):
    """Whether the file of a findings id exists: in the kit's suite (ids start tests/), or in the project."""
    file = test_id.split("::", 1)[0]
    return (SUITE_DIR / file.removeprefix("tests/")).is_file() or (config.rootpath / file).is_file()


class FindingsSummary:
    """On the controller: the verdict on the known findings, in one line at the end of the run."""

    def __init__(self, config):
        self.expected = config.stash[FINDINGS_KEY]["expected"]
        self.path = config.stash[FINDINGS_KEY]["path"]
        self.failed, self.ran = set(), set()

    def pytest_runtest_logreport(self, report):
        test_id = dict(report.user_properties).get("suite_id", report.nodeid)
        if report.when == "call" or report.failed:
            self.ran.add(test_id)
        # an xfailed test failed as recorded; an XPASS(strict) is a failed report of a finding that passed
        if (report.skipped and hasattr(report, "wasxfail")) or (report.failed and test_id not in self.expected):
            self.failed.add(test_id)
        elif report.failed and report.when != "call":
            self.failed.add(test_id)  # a finding's test that errors in setup is not the finding

    def pytest_terminal_summary(self, terminalreporter):
        result = verdict({t: n for t, n in self.expected.items() if t in self.ran}, self.failed)
        terminalreporter.section(f"expected findings ({self.path.name})")
        for test_id in result.gone:
            terminalreporter.line(f"PASSED, the finding is gone: {test_id}", red=True)
        for test_id in result.unexpected:
            terminalreporter.line(f"UNEXPECTED FAILURE: {test_id}", red=True)
        terminalreporter.line(result.line(), green=result.ok, red=not result.ok)
