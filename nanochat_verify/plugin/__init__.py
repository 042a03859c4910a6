"""
The suite's pytest plugin (entry point `nanochat_verify.plugin`, so that installing the kit is enough; this
project's pyproject.toml also names it with `-p`, to load it before pytest-cov starts). One concern a module:

- options.py     --gpt-impl, --architecture and the others; the implementation under test (`impl`) and its
                 architecture card (`arch`), from the options or the project's [tool.nanochat-verify]
- selection.py   the `component` marker every test must carry; tests deselected by design (a component
                 the card does not have, project extras and tools under another implementation);
                 --prioritize-component
- findings.py    --expect-failures: the known findings of a real implementation, as strict xfails
- record.py      --outcomes: every test's outcome and whether the run was complete, for the report
- runs.py        each recording run's own folder: its record and its line coverage, never another run's
- locations.py   .coverage and .hypothesis/ in the project, from whatever folder pytest starts
- limits.py      a per-test time limit where the project sets none
- observability.py  under another implementation, what the suite cannot observe there is "not observable",
                 never a failure of the implementation
- foreign_warnings.py  another implementation's warnings are recorded, not failures
- summary.py     the red tests grouped by component and first error, at the end of the run
"""

pytest_plugins = [
    # each before the modules that import it, so that pytest rewrites its asserts (no "already imported" warning)
    "nanochat_verify.plugin.options",
    "nanochat_verify.plugin.runs",
    "nanochat_verify.plugin.locations",
    "nanochat_verify.plugin.selection",
    "nanochat_verify.plugin.findings",
    "nanochat_verify.plugin.record",
    "nanochat_verify.plugin.limits",
    "nanochat_verify.plugin.observability",
    "nanochat_verify.plugin.foreign_warnings",
    "nanochat_verify.plugin.summary",
]
