"""
One cause, one finding: at the end of a run with red tests, a summary per component groups them by their
first error, so that a user reads five lines, not two hundred tracebacks. Tests that were not observable in
this implementation are grouped the same way, by their reason.
"""

import re


from nanochat_verify.components import component_of

EXAMPLES = 1  # test ids shown per group


def first_error(report):
    """The first line of what stopped the test: the exception and its message, numbers folded so that the same
    error with other values groups together."""
    crash = getattr(report.longrepr, "reprcrash", None)
    if crash is not None:
        text = crash.message
    elif isinstance(report.longrepr, tuple):
        text = str(report.longrepr[-1]).removeprefix("Skipped: ")
    else:
        text = str(report.longrepr)
    line = next((ln.strip() for ln in text.splitlines() if ln.strip()), "")
    return re.sub(r"\d+(\.\d+)?(e-?\d+)?", "N", line)[:160]


class RedSummary:
    def __init__(self):
        self.red, self.blind = {}, {}

    def pytest_runtest_logreport(self, report):
        components = dict(report.user_properties).get("components", "")
        key = component_of(components.split(",")[0]).key if components else "?"
        if report.failed and not hasattr(report, "wasxfail"):
            self.red.setdefault((key, first_error(report)), []).append(report.nodeid)
        elif report.skipped and "not observable in this implementation" in str(report.longrepr):
            self.blind.setdefault((key, first_error(report)), []).append(report.nodeid)

    def pytest_terminal_summary(self, terminalreporter):
        for title, groups, colour in (("red tests by component and first error", self.red, {"red": True}),
                                      ("not observable in this implementation, by reason", self.blind,
                                       {"yellow": True})):
            if not groups:
                continue
            terminalreporter.section(title)
            for (key, error), ids in sorted(groups.items(), key=lambda kv: (kv[0][0], -len(kv[1]))):
                terminalreporter.line(f"{key}: {len(ids)} test(s): {error}", **colour)
                for nodeid in ids[:EXAMPLES]:
                    terminalreporter.line(f"    e.g. {nodeid}")


def pytest_configure(config):
    if not hasattr(config, "workerinput"):
        config.pluginmanager.register(RedSummary(), "nanochat-verify-red-summary")
