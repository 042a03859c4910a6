"""Tooling: `python -m nanochat.mutation`, the mutant catalog (nanochat/mutants.py) and its runner."""

import json
import subprocess
import sys

import pytest

from nanochat import mutation
from nanochat.components import COMPONENTS, expand
from nanochat.mutants import MUTANTS, NAME_PATTERN, M, NotApplicable

pytestmark = [pytest.mark.tooling, pytest.mark.component("tooling.mutation")]

OWN_SOURCE = mutation.OWN_IMPL.read_text()
SCORED = [m for m in MUTANTS if not m.equivalent]


def failing(node="tests/test_x.py::test_a"):
    """An --outcomes document in which one test failed."""
    return {"tests": {"tests/test_x.py::test_0": {"outcome": "passed"}, node: {"outcome": "failed"}}}


PASSING = {"tests": {"tests/test_x.py::test_0": {"outcome": "passed"}}}


# ---- the catalog --------------------------------------------------------------------------------

def test_every_mutant_applies_to_the_project_model_and_changes_it():
    """Each catalog entry finds its target text in nanochat/gpt.py exactly once and changes the source."""
    for m in MUTANTS:
        assert m.apply(OWN_SOURCE) != OWN_SOURCE, m.name


def test_every_mutated_source_compiles():
    """Every mutant of nanochat/gpt.py is valid Python, so a failing run is the suite's doing."""
    for m in MUTANTS:
        compile(m.apply(OWN_SOURCE), f"<mutant {m.name}>", "exec")


def test_mutant_names_are_unique_snake_case():
    """Names are short snake_case identifiers, none used twice."""
    names = [m.name for m in MUTANTS]
    assert len(names) == len(set(names))
    assert all(NAME_PATTERN.match(n) and len(n) <= 40 for n in names), [n for n in names if not NAME_PATTERN.match(n)]


def test_every_mutant_names_a_known_component_and_a_one_line_bug():
    """Each entry breaks a component or sub-component of the table and says how, in one line."""
    for m in MUTANTS:
        assert expand(m.target), m.name  # raises ValueError for an unknown ID
        assert m.description.strip() and "\n" not in m.description, m.name
        assert m.edits or m.append, m.name
        # an equivalent mutant carries its argument; a scored one does not claim equivalence
        assert m.description.startswith("equivalent: ") == m.equivalent, m.name


def test_every_component_of_the_table_has_a_scored_mutant():
    """All 12 components of the table are broken by at least one non-equivalent mutant."""
    covered = {m.component for m in SCORED}
    assert len(COMPONENTS) == 12
    assert [c.key for c in COMPONENTS if c.key not in covered] == []


def test_catalog_has_at_least_25_scored_mutants():
    """At least 25 mutants count towards the score (equivalent ones do not)."""
    assert len(SCORED) >= 25


def test_an_edit_must_match_exactly_once():
    """A target text found zero or two times makes the mutant not applicable rather than guessing."""
    missing = M("missing", "rope", "edits text that is not there", ("no such text", "x"))
    twice = M("twice", "rope", "edits text that occurs twice", ("a = 1", "a = 2"))
    with pytest.raises(NotApplicable, match="not found"):
        missing.apply("b = 1\n")
    with pytest.raises(NotApplicable, match="found 2 times"):
        twice.apply("a = 1\na = 1\n")
    assert twice.apply("a = 1\n") == "a = 2\n"


def test_a_missing_target_is_a_catalog_bug_for_gpt_py_and_not_applicable_elsewhere():
    """For nanochat/gpt.py an edit that does not apply stops the run; for another implementation it is reported."""
    stale = M("stale", "rope", "edits text that is not there", ("no such text", "x"))
    with pytest.raises(mutation.HarnessFailure, match="catalog bug"):
        mutation.mutate(stale, OWN_SOURCE, own_target=True)
    mutated, reason = mutation.mutate(stale, OWN_SOURCE, own_target=False)
    assert mutated is None and "not found" in reason


# ---- classifying a run --------------------------------------------------------------------------

def test_a_failing_or_erroring_test_is_a_kill_by_that_test():
    """pytest exit 1 with a failed (or setup-error) test is a kill, credited to that test's node id."""
    assert mutation.classify(1, failing("tests/test_rope.py::test_b")) == ("killed", "tests/test_rope.py::test_b", "")
    errored = {"tests": {"tests/test_a.py::test_c": {"outcome": "error"}}}
    assert mutation.classify(1, errored)[:2] == ("killed", "tests/test_a.py::test_c")


def test_a_clean_pass_is_a_survivor():
    """pytest exit 0 with passing tests means the mutant survived."""
    assert mutation.classify(0, PASSING) == ("survived", None, "")


@pytest.mark.parametrize("code, outcomes", [
    (2, None),  # interrupted (collection error)
    (3, None),  # pytest internal error
    (4, None),  # usage error: the mutated copy does not import
    (5, PASSING),  # no tests collected
    (70, None),  # the forked child crashed outside pytest
    (-9, None),  # killed by a signal
    (mutation.TIMED_OUT, None),
    (1, None),  # failures claimed, but nothing recorded
    (1, PASSING),  # failures claimed, but no test failed
    (0, {"tests": {"tests/test_x.py::t": {"outcome": "skipped"}}}),  # nothing actually passed
])
def test_anything_but_a_test_failure_or_a_clean_pass_is_a_harness_error(code, outcomes):
    """Crashes, usage errors, timeouts and missing outcomes are harness errors, never kills."""
    status, killed_by, detail = mutation.classify(code, outcomes, seconds=12.0)
    assert (status, killed_by) == ("harness_error", None)
    assert detail


# ---- the runner, with scripted runs --------------------------------------------------------------

def scripted(outcomes_by_task):
    """A stand-in for run_tasks: every task 'finishes' with the scripted (exit code, outcomes)."""
    def run(tasks, workdir, jobs, extra, timeout, control_limit, on_done, use_fork):
        assert tasks[0].name == mutation.CONTROL  # the control always runs, and first
        for task in tasks:
            assert task.copy.is_file()
            on_done(task, *outcomes_by_task.get(task.name, (0, PASSING)), 1.0)
    return run


def test_a_failing_control_aborts_the_run_as_a_harness_failure():
    """If the unmutated copy fails the suite nothing is scored: the run stops with the failing test named."""
    runner = scripted({mutation.CONTROL: (1, failing("tests/test_x.py::test_broken"))})
    with pytest.raises(mutation.ControlFailed, match="tests/test_x.py::test_broken"):
        mutation.run_catalog(MUTANTS[:2], "nanochat.gpt", runner=runner)


def test_runner_maps_each_run_to_its_mutant_status():
    """Scripted runs come back as killed (with the test), survived and harness_error; equivalents are not run."""
    killed, survivor, broken, equivalent = (MUTANTS[0], MUTANTS[1], MUTANTS[2],
                                            next(m for m in MUTANTS if m.equivalent))
    runner = scripted({killed.name: (1, failing("tests/test_x.py::test_k")), broken.name: (4, None),
                       equivalent.name: (1, failing())})
    results = mutation.run_catalog([killed, survivor, broken, equivalent], "nanochat.gpt", runner=runner)
    assert [(r.name, r.status, r.killed_by) for r in results] == [
        (killed.name, "killed", "tests/test_x.py::test_k"), (survivor.name, "survived", None),
        (broken.name, "harness_error", None), (equivalent.name, "equivalent", None)]
    assert mutation.totals(results)["total"] == 3 and mutation.exit_status(results) == 1


def test_text_mutants_are_not_applicable_to_another_implementation(tmp_path):
    """On an implementation without the target text an edit mutant is not_applicable; an override still runs."""
    other = tmp_path / "other_gpt.py"
    other.write_text(OWN_SOURCE.replace("ROPE_BASE = 10000", "ROPE_BASE = 10_000"))
    by_name = {m.name: m for m in MUTANTS}
    results = mutation.run_catalog([by_name["rope_base_500k"], by_name["rmsnorm_identity"]], str(other),
                                   runner=scripted({}))
    assert [r.status for r in results] == ["not_applicable", "survived"]


def test_json_is_sorted_by_name_with_totals_and_no_timings():
    """The --json document is deterministic: sorted by name, fixed keys, no timings or temp paths."""
    results = [mutation.Result("b_mutant", "rope", "bug b", "killed", "tests/test_x.py::t", "", 1.5),
               mutation.Result("a_mutant", "mlp", "bug a", "survived", None, "", 2.5),
               mutation.Result("c_mutant", "loss", "bug c", "equivalent")]
    text = mutation.to_json(results, "nanochat/gpt.py")
    data = json.loads(text)
    assert [m["name"] for m in data["mutants"]] == ["a_mutant", "b_mutant", "c_mutant"]
    assert set(data["mutants"][0]) == {"name", "component", "description", "status", "killed_by"}
    assert data["totals"]["killed"] == 1 and data["totals"]["total"] == 2
    assert "1.5" not in text and "2.5" not in text
    assert mutation.to_json(list(reversed(results)), "nanochat/gpt.py") == text


def test_list_prints_the_catalog_and_unknown_names_are_rejected(capsys):
    """--list shows every mutant; --only with an unknown name fails with exit status 2 before running."""
    assert mutation.main(["--list"]) == 0
    out = capsys.readouterr().out
    assert all(m.name in out for m in MUTANTS)
    assert mutation.main(["--only", "no_such_mutant", "--list"]) == 2
    assert "no_such_mutant" in capsys.readouterr().out


# ---- end to end ---------------------------------------------------------------------------------

CATALOG = '''
from nanochat.mutants import BY_NAME, M

MUTANTS = (
    BY_NAME["rope_sin_sign_flipped"],
    M("probe_survivor", "rope", "appends a name no test looks at", append="_MUTATION_PROBE = 1\\n"),
    M("probe_broken_import", "rope", "raises at import", append="raise RuntimeError('deliberately broken')\\n"),
    BY_NAME["eq_rope_subtraction"],
)
'''


def test_end_to_end_control_kill_survivor_and_harness_error(tmp_path):
    """A real run on tests/test_rope.py: the control passes, a RoPE bug is killed by a RoPE test, a copy
    that raises at import is a harness error (not a kill), a harmless change survives (exit status 1)."""
    catalog, out = tmp_path / "catalog.py", tmp_path / "result.json"
    catalog.write_text(CATALOG)
    proc = subprocess.run([sys.executable, "-m", "nanochat.mutation", "--catalog", str(catalog), "--json", str(out),
                           "--jobs", "2", "--", "tests/test_rope.py"],
                          cwd=mutation.PROJECT_ROOT, capture_output=True, text=True, timeout=300)
    assert "control passed" in proc.stdout, proc.stdout + proc.stderr
    assert proc.returncode == 1, proc.stdout + proc.stderr
    data = json.loads(out.read_text())
    got = {m["name"]: (m["status"], m["killed_by"]) for m in data["mutants"]}
    status, killer = got.pop("rope_sin_sign_flipped")
    assert status == "killed" and killer.startswith("tests/test_rope.py::"), (status, killer)
    assert got == {"probe_survivor": ("survived", None), "probe_broken_import": ("harness_error", None),
                   "eq_rope_subtraction": ("equivalent", None)}
    assert data["control"] == "passed" and data["pytest_args"] == ["tests/test_rope.py"]
    assert data["totals"] == {"killed": 1, "survived": 1, "harness_error": 1, "equivalent": 1,
                              "not_applicable": 0, "total": 3}
