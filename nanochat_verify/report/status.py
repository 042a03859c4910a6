"""
The status rules of the report, in one place:

- ✅ every test of the (sub-)component ran and passed;
- ❌ at least one failed or errored (an expected finding that failed included: it is a real bug);
- ⚠️ not verified by this run: a test was skipped (the row counts them, the detail says why: a CUDA test
  without CUDA, something not observable in this implementation) or the component has no test;
- "not applicable": the architecture card does not have the component;
- "declared": the card declares the component replaced on purpose (with its note): not verified, not broken.
"""

from nanochat_verify import components as table

PASSED, FAILED, MISSING = "✅", "❌", "⚠️"
NOT_APPLICABLE = "not applicable"
DECLARED = "declared"
OUTCOME_MARK = {"passed": "✅ passed", "failed": "❌ failed", "error": "❌ error", "skipped": "⚠️ skipped"}

RULES = (
    "✅ every test of the component ran and passed",
    "❌ at least one failed or errored",
    "⚠️ not verified by this run: a test was skipped (the row counts them, the detail below says why: a CUDA test "
    "on a machine without CUDA, an internal not observable in this implementation) or the component has no test",
    f"{NOT_APPLICABLE}: the architecture card does not have the component",
    f"{DECLARED}: the card declares it replaced on purpose, with a note; its tests did not run",
)


def subcomponent_status(results):
    """✅ at least one test, and every one ran and passed; ❌ any failed or errored; ⚠️ no test, or a
    skipped one (a test that did not run verifies nothing)."""
    outcomes = {r.outcome for r in results}
    if outcomes & {"failed", "error"}:
        return FAILED
    if not outcomes or "skipped" in outcomes:
        return MISSING
    return PASSED


def combine(statuses):
    statuses = list(statuses)
    if FAILED in statuses:
        return FAILED
    return MISSING if MISSING in statuses or not statuses else PASSED


def status_cell(status, results):
    """The status with what a ⚠️ means here: how many tests were skipped, or that there are none."""
    if status != MISSING:
        return status
    skipped = sum(r.outcome == "skipped" for r in results)
    return f"{MISSING} ({skipped} skipped)" if skipped else f"{MISSING} (no tests)"


def index_tests(inputs):
    """{sub-component ID: [Outcome]}; an unknown ID or an untested sub-component is a problem."""
    by_sub = {s: [] for s in table.SUBCOMPONENTS}
    problems = []
    for t in inputs.tests:
        if not t.components:
            problems.append(f"{t.test_id} names no component")
        for sub in t.components:
            if sub not in by_sub:
                problems.append(f"{t.test_id} names unknown component ID {sub!r}")
            else:
                by_sub[sub].append(t)
    for component in table.COMPONENTS:
        if component.key in inputs.not_applicable or inputs.card.replaced(component.key):
            continue
        for sub in component.subcomponents:
            if not by_sub[sub.id]:
                problems.append(f"sub-component {sub.id} ({sub.title}) has no test")
    inputs.problems = problems
    return by_sub


def failing_components(inputs, by_sub):
    """Titles of the components of the summary that apply and are not ✅ (declared ones are not failing)."""
    failing = []
    for c in table.COMPONENTS:
        if c.key in inputs.not_applicable or inputs.card.replaced(c.key):
            continue
        if combine(subcomponent_status(by_sub[s.id]) for s in c.subcomponents) != PASSED:
            failing.append(c.title_for(inputs.card))
    return failing
