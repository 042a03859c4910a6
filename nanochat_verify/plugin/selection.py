"""
Which tests run, and in what order.

- Every test must carry `@pytest.mark.component(ID, ...)` with IDs of nanochat_verify/components.py; a
  missing or unknown ID stops the run before any test runs.
- Tests of a component the card does not have (a modern component of nanochat 92d63d4 under the seed-era
  a088b7a card), or declares replaced on purpose (`[replaced]`), are deselected: not applicable, or declared. Tests marked `project_only` (the project model's extras)
  and `tooling` (the kit's tools) run on this project's own model only (`project_only` also on a copy of it,
  with --with-extras). Tests marked `packaging` (they build wheels and environments) run with
  --run-packaging only. Deselected by design, they do not make a run incomplete.
- `--prioritize-component KEY` runs the tests of one component first, then the rest of its table row's, then
  the oracle and validation tests, then the others (the mutation runner's fast path, with -x).

A test's *suite id* is its node id as seen from the suite's folder (`tests/test_rope.py::test_x[case]`),
the same whether the suite runs in this project or installed in a fork's environment; findings files and
the run record use it.
"""

from pathlib import Path

import pytest

from nanochat_verify.components import component_of, expand
from nanochat_verify.paths import SUITE_DIR
from nanochat_verify.plugin.options import ARCH_KEY, is_own_implementation

COMPONENTS_KEY = pytest.StashKey()
COLLECTED_KEY = pytest.StashKey()  # the suite's files that were collected, before any deselection
LEFT_OUT_KEY = pytest.StashKey()  # [(suite id, components, doc, why)] of the tests that run only when asked
# after the component itself: whole-model comparisons with the independent reference, and the checks
# of every input and boundary, which catch most bugs whose symptom shows outside their own component
BROAD_CATCHERS = ("contract.oracle", "contract.validation")


def suite_id(item_or_report):
    """The node id relative to the suite's folder, prefixed `tests/`: one id in every installation."""
    path = Path(str(getattr(item_or_report, "path", None) or item_or_report.fspath)).resolve()
    rest = item_or_report.nodeid.split("::", 1)[1] if "::" in item_or_report.nodeid else ""
    if path.is_relative_to(SUITE_DIR.resolve()):
        return f"tests/{path.relative_to(SUITE_DIR.resolve()).as_posix()}" + (f"::{rest}" if rest else "")
    return item_or_report.nodeid


def applicable(components, card):
    """Whether a test of these sub-components applies under the card: not when one of them is a
    component the card's architecture does not have, or one the card declares replaced on purpose
    (`[replaced]`: the report shows its note, and the suite has nothing of it to check)."""
    return all((component_of(c).feature is None or card.has(component_of(c).feature))
               and not card.replaced(component_of(c).key) for c in components)


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


OPT_IN = "runs with --run-packaging only (it builds the kit's wheel and virtual environments; CI's step 5 runs it)"


def left_out_on_request(config, item):
    """Why the plugin left out a test that applies but runs only when asked (the packaging tests), or None."""
    if item.get_closest_marker("packaging") and not config.getoption("run_packaging"):
        return OPT_IN
    return None


def deselected_by_design(config, item):
    """Whether the plugin itself leaves this test out (not applicable to the card, or not part of
    the contract for another implementation): such a test does not make a run incomplete."""
    components = item.stash.get(COMPONENTS_KEY, None)
    if components is not None and not applicable(components, config.stash[ARCH_KEY]):
        return True
    if left_out_on_request(config, item):
        return True
    if is_own_implementation(config):
        return False
    markers = {"tooling"} | (set() if config.getoption("with_extras") else {"project_only"})
    return any(item.get_closest_marker(m) for m in markers)


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(session, config, items):
    problems = []
    for item in items:
        try:
            components = item_components(item)
        except ValueError as e:
            problems.append(f"  {item.nodeid}: {e}")
            continue
        item.stash[COMPONENTS_KEY] = components
        doc = " ".join((getattr(item, "function", None).__doc__ or "").split())
        item.user_properties.append(("components", ",".join(components)))
        item.user_properties.append(("doc", doc))
        item.user_properties.append(("suite_id", suite_id(item)))
    if problems:
        raise pytest.UsageError("tests with a missing or unknown component ID:\n" + "\n".join(problems))
    config.stash[COLLECTED_KEY] = {suite_id(item).split("::", 1)[0] for item in items}

    kept, deselected = [], []
    for item in items:
        (deselected if deselected_by_design(config, item) else kept).append(item)
    config.stash[LEFT_OUT_KEY] = [(suite_id(item), item.stash[COMPONENTS_KEY], dict(item.user_properties)["doc"], why)
                                  for item in deselected for why in [left_out_on_request(config, item)] if why]
    if deselected:
        config.hook.pytest_deselected(items=deselected)
        items[:] = kept

    first = config.getoption("prioritize_component")
    if first:
        tiers = priority_tiers(first)
        items.sort(key=lambda item: next((rank for rank, ids in enumerate(tiers)
                                          if ids.intersection(item.stash[COMPONENTS_KEY])), len(tiers)))  # stable


def pytest_sessionfinish(session):
    """An xdist worker hands the controller, which records the run, the tests it left out until asked."""
    if hasattr(session.config, "workeroutput"):
        session.config.workeroutput["nanochat_verify_left_out"] = session.config.stash.get(LEFT_OUT_KEY, [])


def priority_tiers(key):
    """The order --prioritize-component KEY runs the tests in, as sets of sub-component IDs: KEY's,
    then the rest of its component's, then the broad catchers; every other test after these."""
    component = key.split(".", 1)[0]
    return [set(expand(key)), set(expand(component)), {s for c in BROAD_CATCHERS for s in expand(c)}]


@pytest.hookimpl(tryfirst=True)
def pytest_cmdline_main(config):
    """Options that name something are checked before collection: a usage error, not an INTERNALERROR."""
    first = config.getoption("prioritize_component")
    if first is not None:
        try:
            expand(first)
        except ValueError as e:
            raise pytest.UsageError(f"--prioritize-component {first!r}: {e}") from None
