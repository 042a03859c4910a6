"""The COVERAGE.md generator: status only from real outcomes of a complete run, deterministic bytes,
honest when a component breaks, a --check that prints a diff and the command that fixes it, and one
line (never a traceback, never a rewritten file) for every input it refuses.

The end-to-end cases run a small fixture project in-process (pytester): a nanochat checkout (a copy of this
project's nanochat/), a pyproject.toml like the project's, one fake test per sub-component, and, for the
honesty check, the real LM head and loss tests against a copy of nanochat/gpt.py with the softcap broken.
None of them runs the real suite.
"""

import json
import os
import random
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from hypothesis import settings

from nanochat_verify import components as table
from nanochat_verify.card import load_card
from nanochat_verify.exits import Exit
from nanochat_verify.fingerprint import file_sha256, implementation_files, tree_fingerprint
from nanochat_verify.mutation import runner as mutation
from nanochat_verify.mutation.catalog import MUTANTS
from nanochat_verify.paths import OWN_MODEL, SOURCE_ROOT
from nanochat_verify.report import cli as report_cli
from nanochat_verify.report import inputs as report_inputs
from nanochat_verify.report import render as report_render
from nanochat_verify.report import run as report_run
from nanochat_verify.report.status import FAILED, MISSING, NOT_APPLICABLE, PASSED, RULES, index_tests, subcomponent_status
from nanochat_verify.runrecord import RunRecord, Outcome
from .processes import terminate_while_running

pytestmark = [pytest.mark.component("tooling.coverage"), pytest.mark.tooling]
ROOT = SOURCE_ROOT
OWN = OWN_MODEL
CARD = load_card()  # the project's architecture card: the report fills its values into the titles
STATUS = 4  # the summary's status column


def result(outcome, *components, name="test_x", skip_reason=""):
    return Outcome(f"tests/test_a.py::{name}", outcome, components, "A property.", skip_reason)


def all_passing():
    """One passing test per sub-component of every area."""
    return [result("passed", sub, name=f"test_{sub.replace('.', '_')}") for sub in table.SUBCOMPONENTS]


def inputs_of(tests, mutation=None):
    return report_inputs.Inputs(impl_path=OWN, own_impl=True, tests=list(tests), card=CARD, root=ROOT,
                                mutation=mutation)


def row(report, title):
    """The summary-table row of a component (its title, card values filled in), as a list of cells."""
    title = title.title_for(CARD) if isinstance(title, table.Component) else title
    line = next(line for line in report.splitlines() if line.startswith("| ") and f" {title} |" in line)
    return [cell.strip() for cell in line.strip("|").split("|")]


def unverified_rows(report):
    """Titles of the summary rows that are neither ✅ nor not applicable to the architecture card."""
    return [c.title for c in table.COMPONENTS if row(report, c)[STATUS] not in (PASSED, NOT_APPLICABLE)]


def run_main(argv, capsys, **kwargs):
    """The report's main in-process: (exit status, stdout, stderr); a usage error's SystemExit included."""
    capsys.readouterr()  # not what an earlier in-process pytest run printed
    try:
        status = report_cli.main(argv, **kwargs)
    except SystemExit as e:
        status = e.code
    out, err = capsys.readouterr()
    return status, out, err


# ----------------------------------------------------------------------------------------------
# A fixture project: the project's layout and pytest configuration, and a fast fake suite

PYPROJECT = """
[tool.pytest.ini_options]
testpaths = ["suite"]
addopts = ["-p", "nanochat_verify.plugin", "-p", "no:cacheprovider", "-p", "no:randomly",
           "--outcomes=.nanochat-verify/outcomes.json"]
"""


def fake_tests(skip=(), extra=""):
    """A fast stand-in for the suite: passing tests that together name every sub-component (but those
    of the components or sub-components in `skip`), plus `extra`. One test per architecture feature,
    since the plugin deselects a test of a component the architecture card does not have."""
    groups = {}
    for sub in table.SUBCOMPONENTS:
        if sub.split(".")[0] not in skip and sub not in skip:
            feature = getattr(table.component_of(sub), "feature", None)
            groups.setdefault(feature or "seed", []).append(sub)
    lines = ["import pytest", ""]
    for name, subs in groups.items():
        lines += [f"@pytest.mark.component(*{subs!r})", f"def test_stands_for_the_{name}_tests():",
                  "    \"\"\"Passes for the real tests of these sub-components.\"\"\"", ""]
    return "\n".join(lines) + textwrap.dedent(extra)


BROKEN_LM_HEAD = """
@pytest.mark.component("lm_head")
def test_lm_head_softcap_is_15():
    '''Fails, as a softcap test does when the cap is changed.'''
    assert 30 == 15
"""


class FakeProject:
    """A folder laid out like the project: a nanochat checkout (a copy of this project's model) and a suite
    folder of its own (named `suite`, so that its package never meets this project's `tests`). With pytester,
    `pytest(*args)` runs its suite in-process; without, `record(tests)` writes the outcomes such a run would
    (for the cases about reading them)."""

    def __init__(self, root, pytester=None):
        self.pytester, self.root = pytester, root
        (root / "pyproject.toml").write_text(PYPROJECT)
        shutil.copytree(OWN.parent, root / "nanochat", ignore=shutil.ignore_patterns("__pycache__"))
        self.model = root / "nanochat" / "gpt.py"
        (self.root / "suite").mkdir()
        (self.root / "suite" / "__init__.py").write_text("")
        self.write_tests(fake_tests())
        self.output = self.root / "COVERAGE.md"
        self.output.write_text(COMMITTED)

    def write_tests(self, source, name="test_fake.py"):
        (self.root / "suite" / name).write_text(source)

    def pytest(self, *args):
        return self.pytester.runpytest_inprocess(*args)

    def run_pytest(self, args, *, cwd, env, timeout):
        """Stands in for the generator's subprocess: the same arguments, run in-process."""
        assert Path(cwd) == self.root
        return self.pytest(*args).ret

    def record(self, tests=None, **changes):
        """Outcomes of a complete, finished run of the current tree, as the plugin writes them."""
        tests = all_passing() if tests is None else tests
        record = RunRecord(run_id="0" * 32, finished=True, pytest_args=[],
                           architecture={"spec": None, "overrides": {}, "name": CARD.name}, impl=str(self.root),
                           impl_path="nanochat/gpt.py", own_impl=False, exitstatus=0, complete=True,
                           fingerprint=tree_fingerprint(implementation_files(self.model), self.root),
                           tests={t.test_id: t for t in tests})
        data = {**json.loads(record.to_json()), **changes}
        self.outcomes.parent.mkdir(exist_ok=True)
        self.outcomes.write_text(json.dumps(data))

    @property
    def outcomes(self):
        return self.root / ".nanochat-verify" / "outcomes.json"

    def edit_outcomes(self, **changes):
        data = json.loads(self.outcomes.read_text())
        data.update(changes)
        self.outcomes.write_text(json.dumps(data))
        return data


@pytest.fixture
def project(pytester):
    """A fixture project whose fake suite really runs (in-process)."""
    return FakeProject(pytester.path, pytester)


@pytest.fixture
def layout(tmp_path):
    """A fixture project whose outcomes are written directly (no pytest run)."""
    root = tmp_path / "project"
    root.mkdir()
    return FakeProject(root)


LAST_RUN = ["--from-last-run", "--skip-mutation", "--no-line-coverage"]
COMMITTED = f"# The committed report\n\n{report_render.BEGIN}\nall ✅, once\n{report_render.END}\n"


# ----------------------------------------------------------------------------------------------
# Status rules (item 4: a skipped test is not a passed one)


@pytest.mark.parametrize("outcomes, expected", [
    (["passed"], PASSED),
    (["passed", "skipped"], MISSING),
    (["passed", "failed"], FAILED),
    (["error", "passed"], FAILED),
    (["skipped"], MISSING),
    ([], MISSING),
], ids=["all-passed-is-verified", "a-skip-is-not-verified", "a-failure-fails", "an-error-fails",
        "only-skips-are-not-verified", "no-tests-are-not-verified"])
def test_status_is_passed_only_when_every_test_ran_and_passed(outcomes, expected):
    """✅ needs >= 1 test and every one passed; any failure or error is ❌; no tests, or a skip, is ⚠️."""
    assert subcomponent_status([result(o, "rope.rotary") for o in outcomes]) == expected


def test_a_skipped_test_shows_in_its_row_with_the_reason():
    """A component with a skipped test is ⚠️ with the count in its row, the reason in its detail."""
    tests = all_passing() + [result("skipped", "loss.cross_entropy", name="test_on_cuda", skip_reason="needs a CUDA device")]
    report = report_render.render(inputs_of(tests))
    assert row(report, "Loss computation")[STATUS] == f"{MISSING} (1 skipped)"
    assert "| `tests/test_a.py::test_on_cuda` | A property. | ⚠️ skipped: needs a CUDA device |" in report
    assert row(report, "MLP")[STATUS] == PASSED


def test_readme_and_report_state_the_same_status_rule():
    """The README's "Reading COVERAGE.md" gives the rule the report prints: ✅ only when every test ran and passed."""
    readme = (ROOT / "README.md").read_text().split("## Reading COVERAGE.md", 1)[1].split("\n## ", 1)[0]
    rule = "✅ every test of the component ran and passed"
    assert rule in RULES and rule in readme
    assert "skipped" in readme and "CUDA" in readme


# ----------------------------------------------------------------------------------------------
# Rendering


def test_report_does_not_depend_on_test_order():
    """Shuffling the outcomes (xdist, random order) gives the same bytes."""
    tests = all_passing() + [result("failed", "mlp.relu2", name="test_zz"), result("skipped", "loss.cross_entropy", name="test_s")]
    first = report_render.render(inputs_of(tests))
    random.Random(0).shuffle(tests)
    assert report_render.render(inputs_of(tests)) == first


def test_a_failed_test_marks_its_component_and_only_its_component():
    """One failing MLP test makes the MLP row ❌ and leaves every other row ✅."""
    tests = all_passing() + [result("failed", "mlp.relu2", name="test_broken")]
    report = report_render.render(inputs_of(tests))
    assert row(report, "MLP")[STATUS] == FAILED
    for c in table.COMPONENTS:
        if c.key != "mlp":
            assert row(report, c)[STATUS] == PASSED, c.title
    assert "| `tests/test_a.py::test_broken` | A property. | ❌ failed |" in report


def test_no_timestamps_or_timings_in_the_report():
    """The generated text holds no dates and no durations, so regeneration is byte-stable."""
    report = report_render.render(inputs_of(all_passing()))
    assert not re.search(r"\b(19|20)\d\d-\d\d-\d\d\b|\b\d\d?:\d\d\b", report)  # dates, clock times
    assert not re.search(r"\d(\.\d+)? ?(s|ms|sec|seconds)\b", report)  # durations


def test_code_references_follow_the_live_source(tmp_path):
    """Line references come from the AST of the file as it is now: insert lines and they move."""
    src = tmp_path / "m.py"
    src.write_text("def norm(x):\n    return x\n\n\nclass GPT:\n    def forward(self):\n        pass\n")
    assert report_inputs.code_locations(src) == {"norm": (1, 2), "GPT": (5, 7), "GPT.forward": (6, 7)}
    src.write_text("\n\n" + src.read_text())
    assert report_inputs.code_locations(src)["GPT.forward"] == (8, 9)


# ----------------------------------------------------------------------------------------------
# Items 1 and 2: only a complete run of the whole suite is reported


@pytest.mark.parametrize("pytest_args, named", [
    (["--deselect", "suite/test_fake.py::test_lm_head_softcap_is_15"], "--deselect"),
    (["-k", "not softcap"], "-k 'not softcap'"),
    (["suite/test_fake.py"], "do not cover the testpaths suite"),
    (["--collect-only"], "--collect-only"),
    (["-x"], "stopped early"),
], ids=["deselected-failure", "keyword-selection", "narrower-path", "collect-only", "stopped-at-first-failure"])
def test_an_incomplete_run_is_refused_and_the_report_left_alone(project, capsys, pytest_args, named):
    """After a pytest run that did not run the whole suite (here hiding a failing LM head test), the
    generator writes nothing and says in one line why and which command fixes it."""
    project.write_tests(fake_tests(extra=BROKEN_LM_HEAD))
    project.pytest(*pytest_args)
    status, out, err = run_main(LAST_RUN, capsys, root=project.root)
    assert status == Exit.USAGE, err
    assert project.output.read_text() == COMMITTED
    assert len(err.strip().splitlines()) == 1, err
    assert "incomplete run" in err and named in err and "run the whole suite with `pytest`" in err


def test_pytest_arguments_that_narrow_the_generators_own_run_are_refused(project, capsys):
    """`python -m nanochat_verify.report -- --deselect X` cannot hide a failure either."""
    project.write_tests(fake_tests(extra=BROKEN_LM_HEAD))
    argv = ["--skip-mutation", "--no-line-coverage", "--", "--deselect", "suite/test_fake.py::test_lm_head_softcap_is_15"]
    status, _, err = run_main(argv, capsys, root=project.root, run_pytest=project.run_pytest, suite=[])
    assert status == Exit.USAGE and "--deselect left out" in err
    assert project.output.read_text() == COMMITTED


def test_check_after_an_incomplete_run_says_incomplete_not_stale(project, capsys):
    """--check after `pytest -k` names the incomplete run; it does not call the file stale."""
    project.pytest("-k", "seed")
    status, out, err = run_main(LAST_RUN + ["--check"], capsys, root=project.root)
    assert status == Exit.USAGE
    assert "incomplete run (-k 'seed' selected a subset)" in err and "stale" not in err and out == ""


def test_a_complete_run_with_a_failure_is_written_with_exactly_that_row_failing(project, capsys):
    """The whole fake suite with one failing LM head test: written, LM head ❌, the rest ✅, exit 1."""
    project.write_tests(fake_tests(extra=BROKEN_LM_HEAD))
    project.pytest()
    status, _, err = run_main(LAST_RUN, capsys, root=project.root)
    assert status == Exit.NOT_VERIFIED, err
    text = project.output.read_text()
    assert row(text, "Language modeling head")[STATUS] == FAILED
    assert unverified_rows(text) == ["Language modeling head"]


def test_a_run_that_did_not_finish_is_refused(layout, capsys):
    """Outcomes of a run that was killed (only the placeholder written at its start) are refused."""
    layout.record()
    layout.outcomes.write_text(json.dumps({"schema": 3, "run_id": "x", "pytest_args": [], "finished": False}))
    status, _, err = run_main(LAST_RUN, capsys, root=layout.root)
    assert status == Exit.USAGE and "did not finish" in err


def test_a_last_run_under_another_card_is_refused_for_the_card_asked_for(layout, capsys):
    """`--from-last-run --architecture CARD` after a run verified against another card: refused in one line naming
    both cards, the report left alone (the outcomes cannot speak for an architecture they were not checked
    against)."""
    layout.record()
    status, _, err = run_main(LAST_RUN + ["--architecture", "nanochat-92d63d4"], capsys, root=layout.root)
    assert status == Exit.USAGE and len(err.strip().splitlines()) == 1, err
    assert f"is a run under the card {CARD.name!r}, not 'nanochat-92d63d4'" in err
    assert layout.output.read_text() == COMMITTED


def test_a_stale_last_run_is_refused(layout, capsys):
    """Outcomes whose source fingerprint no longer matches the tree are refused as stale."""
    layout.record()
    layout.write_tests("# edited after the run\n", name="test_new.py")
    status, _, err = run_main(LAST_RUN, capsys, root=layout.root)
    assert status == Exit.USAGE and "is stale: the sources changed since that pytest run" in err


# ----------------------------------------------------------------------------------------------
# Item 3: line coverage only from the same run


def test_a_run_without_line_coverage_cannot_borrow_an_older_coverage_file(layout, capsys):
    """`pytest --no-cov` after a run that wrote .coverage: the generator refuses the old data."""
    (layout.root / ".coverage").write_text("an older run's data")
    layout.record(line_coverage=None)  # pytest-cov measured nothing in this run
    status, _, err = run_main(["--from-last-run", "--skip-mutation"], capsys, root=layout.root)
    assert status == Exit.USAGE and "measured no line coverage" in err


def write_coverage_data(path, measured_file):
    """A real coverage data file that measured lines 1-2 of `measured_file`, relative to its folder."""
    import coverage as coveragepy
    data = coveragepy.CoverageData(basename=str(path))
    data.add_lines({measured_file: [1, 2]})
    data.write()


def test_line_coverage_of_another_run_is_refused(layout, capsys):
    """A .coverage whose hash is not the one the outcomes recorded comes from another run: refused."""
    write_coverage_data(layout.root / ".coverage", str(layout.model))
    layout.record(line_coverage={"data_file": ".coverage", "sha256": "0" * 64, "appended": False})
    status, _, err = run_main(["--from-last-run", "--skip-mutation"], capsys, root=layout.root)
    assert status == Exit.USAGE
    assert "is not the line coverage of the pytest run that wrote the outcomes" in err


STUB_IMPL = """
class GPTConfig: pass
class GPT: pass
def norm(x): return x
def apply_rotary_emb(x, cos, sin): return x
"""


def test_coverage_data_is_the_projects_and_its_hash_is_recorded(project, tmp_path):
    """`cd elsewhere && pytest <project>/tests --cov`: pytest-cov writes the run's own coverage data in the
    project (its folder .nanochat-verify/runs/<run id>/, not the current folder), before the session finishes,
    and the outcomes carry that file's hash.
    A real subprocess (pytest-cov starts before any conftest), with a stub implementation that needs
    no torch and without the plugins this check does not need."""
    (project.root / "suite" / "measured.py").write_text("X = 1\n")
    project.write_tests(fake_tests() + "\nfrom suite import measured\n")
    stub = tmp_path / "stub_impl.py"
    stub.write_text(STUB_IMPL)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("COVERAGE_FILE", "HYPOTHESIS_STORAGE_DIRECTORY")}
    proc = subprocess.run([sys.executable, "-m", "pytest", str(project.root / "suite"), f"--gpt-impl={stub}",
                           "--cov=suite.measured", "--cov-report=", "-p", "no:hypothesispytest", "-p", "no:xdist"],
                          cwd=elsewhere, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    outcomes = json.loads(project.outcomes.read_text())
    record = outcomes["line_coverage"]
    assert record["data_file"] == f".nanochat-verify/runs/{outcomes['run_id']}/.coverage" and not record["appended"]
    assert record["sha256"] == file_sha256(project.root / record["data_file"])
    assert list(elsewhere.iterdir()) == [] and not (project.root / ".coverage").exists()


def test_relative_coverage_data_is_read_from_the_project_root_wherever_one_stands(tmp_path, monkeypatch):
    """Data recorded with relative_files names files relative to the root; reading it from another
    folder still finds them (it used to give no line coverage at all outside the root)."""
    root = tmp_path / "project"
    root.mkdir()
    (root / "pyproject.toml").write_text("[tool.coverage.run]\nrelative_files = true\n")
    (root / "impl.py").write_text("def norm(x):\n    return x\n")
    write_coverage_data(root / ".coverage", "impl.py")
    monkeypatch.chdir(tmp_path)
    lines = report_inputs.line_coverage(root / ".coverage", root / "impl.py", [], root)
    assert lines is not None and lines["overall"] == (2, 2)


def test_absolute_coverage_data_counts_its_lines_under_a_relative_files_project(tmp_path):
    """The runs the generator starts record absolute paths; a project whose [tool.coverage] says
    relative_files still counts the lines they ran (it used to report 0 of every statement)."""
    root = tmp_path / "project"
    root.mkdir()
    (root / "pyproject.toml").write_text("[tool.coverage.run]\nrelative_files = true\n")
    (root / "impl.py").write_text("def norm(x):\n    return x\n\n\ndef unused():\n    return 1\n")
    write_coverage_data(root / ".coverage", str((root / "impl.py").resolve()))
    lines = report_inputs.line_coverage(root / ".coverage", root / "impl.py", [], root)
    assert lines is not None and lines["overall"] == (2, 4)


# ----------------------------------------------------------------------------------------------
# Item 5: an architecture change gives the honest table and names the stale mutants


def test_stale_mutants_are_listed_and_the_exit_status_says_the_catalog_needs_attention(layout, capsys):
    """LM head tests fail and a mutant's target text is gone: the table is written (LM head ❌), the
    mutation section lists the stale mutant, and the exit status is the catalog's (4)."""
    project = layout
    project.record(all_passing() + [result("failed", "lm_head.untied_softcap", name="test_lm_head_softcap_is_15")])
    fingerprint = json.loads(project.outcomes.read_text())["fingerprint"]
    stale = mutation.Result("softcap_doubled", "lm_head", "softcap doubled", "stale")
    other = mutation.Result("mlp_relu", "mlp", "ReLU instead of ReLU²", "not_run")
    (project.root / ".nanochat-verify" / "mutation.json").write_text(mutation.to_json(
        [stale, other], "nanochat/gpt.py", fingerprint=fingerprint,
        control_failure="the failing test is suite/test_fake.py::test_lm_head_softcap_is_15"))
    status, _, err = run_main(["--from-last-run", "--no-line-coverage"], capsys, root=project.root)
    assert status == Exit.CATALOG, err
    text = project.output.read_text()
    assert row(text, "Language modeling head")[STATUS] == FAILED
    assert "| `softcap_doubled` | softcap doubled | ⚠️ stale" in text
    assert "Not scored: the unmodified implementation fails the suite" in text
    assert "the mutation catalog needs attention: softcap_doubled" in err


def test_mutation_results_of_other_sources_are_refused(layout, capsys):
    """A mutation.json whose fingerprint differs from the outcomes' is from another tree: refused."""
    project = layout
    project.record()
    (project.root / ".nanochat-verify" / "mutation.json").write_text(
        mutation.to_json([], "nanochat/gpt.py", fingerprint="old"))
    status, _, err = run_main(["--from-last-run", "--no-line-coverage"], capsys, root=project.root)
    assert status == Exit.USAGE and "from other sources than the test outcomes" in err


# ----------------------------------------------------------------------------------------------
# The honesty check, end to end but cheap: real tests against a broken copy


@pytest.fixture(scope="session")
def lazy_imports_done():
    """pytester gives sys.modules back when its test ends, and some modules cannot be imported twice
    in one process (torch registers operator libraries at import, numpy.random holds C state): import
    what the real tests import on first use before any pytester fixture is set up, so that it stays."""
    import numpy.random  # noqa: F401
    import torch
    torch.testing.assert_close(torch.zeros(1), torch.zeros(1))  # loads torch.distributed and sympy
    weight = torch.zeros(1, requires_grad=True)
    weight.sum().backward()
    torch.optim.SGD([weight], lr=0.1).step()  # an optimizer's first step loads torch._dynamo (and _inductor's ops)


def softcap_mutant():
    return next(m for m in MUTANTS if m.target.startswith("lm_head") and "softcap" in m.name and not m.equivalent)


def test_breaking_the_softcap_fails_the_lm_head_row_and_not_the_loss_row(lazy_imports_done, project, tmp_path, capsys,
                                                                         monkeypatch):
    """The real LM head and loss tests, against a copy of gpt.py whose softcap the catalog broke, run
    by the generator itself: LM head ❌, loss ✅ (the other rows come from fake passing tests), the
    report written to its own path while the project's report stays untouched."""
    for name in ("conftest.py", "explicit.py", "diagnose.py", "strategies.py", "test_lm_head.py", "test_loss.py"):
        target = f"test_real_{name.removeprefix('test_')}" if name.startswith("test_") else name
        shutil.copy(ROOT / "tests" / name, project.root / "suite" / target)
    project.write_tests(fake_tests(skip=("lm_head", "loss")))
    broken = tmp_path / "gpt_softcap_broken.py"
    broken.write_text(softcap_mutant().apply(OWN.read_text()))
    report = tmp_path / "REPORT.md"
    argv = ["--gpt-impl", str(broken), "--output", str(report), "--skip-mutation", "--no-line-coverage"]
    # statuses, not search depth, matter here; the copied conftest loads the profile for the whole
    # process, so the outer run's is loaded again afterwards
    outer_profile = os.environ.get("HYPOTHESIS_PROFILE", "ci")
    monkeypatch.setenv("HYPOTHESIS_PROFILE", "quick")
    try:
        status, _, err = run_main(argv, capsys, root=project.root, run_pytest=project.run_pytest, suite=[])
    finally:
        settings.load_profile(outer_profile)
    assert status == Exit.NOT_VERIFIED, err
    text = report.read_text()
    assert row(text, "Language modeling head")[STATUS] == FAILED
    assert row(text, "Loss computation")[STATUS] == PASSED and row(text, "Loss computation")[2] != "1"
    assert unverified_rows(text) == ["Language modeling head"]
    assert f"`{broken.name}` verified against the card `{CARD.name}`" in text
    assert project.output.read_text() == COMMITTED


# ----------------------------------------------------------------------------------------------
# Item 6: results do not depend on where one stands


HYPOTHESIS_HOME = """
@pytest.mark.component("rope")
def test_hypothesis_keeps_its_files_in_the_project():
    from pathlib import Path
    from hypothesis.configuration import storage_directory
    assert storage_directory(intent_to_write=False).home_directory == Path(__file__).parent.parent / ".hypothesis"
"""


def test_a_run_from_another_folder_writes_only_into_the_project(project, tmp_path, monkeypatch):
    """`cd elsewhere && pytest <project>/tests`: the outcomes and .hypothesis/ are the project's; nothing is
    written where the command was typed, and the run gives the environment back as it found it."""
    from hypothesis.configuration import storage_directory
    outer_home = storage_directory(intent_to_write=False).home_directory
    project.write_tests(fake_tests(extra=HYPOTHESIS_HOME))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.delenv("COVERAGE_FILE", raising=False)
    monkeypatch.delenv("HYPOTHESIS_STORAGE_DIRECTORY", raising=False)
    monkeypatch.chdir(elsewhere)
    result = project.pytest(str(project.root / "suite"))
    assert result.ret == 0 and result.parseoutcomes()["passed"] >= 2
    assert json.loads(project.outcomes.read_text())["complete"]
    assert "COVERAGE_FILE" not in os.environ
    assert list(elsewhere.iterdir()) == []
    assert storage_directory(intent_to_write=False).home_directory == outer_home  # given back


def test_the_generator_reads_and_writes_in_the_project_root_from_any_folder(layout, tmp_path, monkeypatch, capsys):
    """--from-last-run started from another folder reads the root's last run and writes the root's report."""
    project = layout
    project.record()
    monkeypatch.chdir(tmp_path)
    status, _, err = run_main(LAST_RUN, capsys, root=project.root)
    assert status == Exit.OK, err
    assert report_render.BEGIN in project.output.read_text()


# ----------------------------------------------------------------------------------------------
# Item 7: an installed package


def test_help_works_without_pytest_or_coverage_installed():
    """`python -m nanochat_verify.report --help` imports neither pytest nor coverage.py (nor torch)."""
    code = ("import sys, runpy; sys.modules.update(pytest=None, coverage=None, torch=None); "
            "sys.argv = ['nanochat_verify.report', '--help']; runpy.run_module('nanochat_verify.report', run_name='__main__')")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    assert "--from-last-run" in proc.stdout and "Exit status" in proc.stdout


def test_outside_any_checkout_the_generator_says_there_is_nothing_to_verify(tmp_path, capsys):
    """Started where there is no nanochat checkout and no --gpt-impl, the generator refuses in one line, naming what
    it looked for, instead of failing in pytest."""
    status, out, err = run_main(["--from-last-run"], capsys, root=tmp_path)
    assert status == Exit.USAGE and out == ""
    assert len(err.strip().splitlines()) == 1 and "nothing to verify" in err


# ----------------------------------------------------------------------------------------------
# Item 8: time limits on what the generator starts


def test_a_run_that_overruns_its_time_limit_is_stopped_with_one_line():
    """A child that never finishes is killed at the limit, and the refusal says how to allow more time."""
    with pytest.raises(report_inputs.Refused, match=r"the test run took longer than 0.2 s .* --timeout SECONDS"):
        report_run.run_with_limit([sys.executable, "-c", "import time; time.sleep(60)"], cwd=ROOT,
                                env=dict(os.environ), timeout=0.2, what="the test run")


def test_an_implementation_whose_import_never_returns_is_refused_within_the_reports_timeout(layout, tmp_path,
                                                                                            capsys):
    """`report --timeout 0.2` on a gpt.py whose import hangs: one line at the limit, naming --timeout (the shorter
    of it and --import-timeout), before any run starts; it used to hang silently."""
    hangs = tmp_path / "hangs.py"
    hangs.write_text("import time\ntime.sleep(60)\n")

    def no_run(*args, **kwargs):
        raise AssertionError("the suite ran")
    argv = ["--gpt-impl", str(hangs), "--output", str(tmp_path / "R.md"), "--timeout", "0.2"]
    status, out, err = run_main(argv, capsys, root=layout.root, run_pytest=no_run)
    assert status == Exit.USAGE and out == "" and len(err.strip().splitlines()) == 1, err
    assert "importing it did not finish within 0.2 s" in err and "--timeout SECONDS" in err


def test_the_import_time_limit_goes_to_the_runs_the_generator_starts(layout, tmp_path):
    """--import-timeout (or the project's setting) reaches the pytest run and the mutation run it starts."""
    import argparse
    args = argparse.Namespace(gpt_impl="x", architecture=None, expect_failures=None, import_timeout=7.5,
                              no_line_coverage=True, pytest_args=[], impl_file=OWN)
    command = report_run.suite_arguments(args, report_inputs.Project(layout.root), tmp_path / "o.json",
                                         tmp_path / "rc", suite=[])
    assert "--import-timeout=7.5" in command


# The run the generator starts under SIGTERM: a child that starts a grandchild (as pytest starts xdist workers),
# says who they are, and never finishes
NEVER_FINISHES = """
import os, subprocess, sys, time
grandchild = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
with open(sys.argv[1], "w") as f:
    f.write(f"{os.getpid()} {grandchild.pid}")
time.sleep(120)
"""

REPORT_UNDER_SIGTERM = """
import os, sys
from nanochat_verify.report import cli, run
pids, impl, output, root = sys.argv[1:]

def run_pytest(args, *, cwd, env, timeout):
    return run.run_with_limit([sys.executable, "-c", {child!r}, pids], cwd=cwd, env=dict(os.environ),
                              timeout=timeout, what="the test run")

sys.exit(cli.main(["--gpt-impl", impl, "--output", output, "--skip-mutation", "--no-line-coverage"], root=root,
                  run_pytest=run_pytest))
"""


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads process states from /proc (Linux)")
def test_sigterm_stops_the_runs_the_generator_started_and_removes_its_temporary_folder(layout, tmp_path):
    """SIGTERM to `python -m nanochat_verify.report` while its test run is going: the run and the processes it
    started are stopped, the temporary folder is removed, one line says so, exit status 130 (it used to
    die at once, leaving them running under init and the folder behind)."""
    stub, pids, temp, log = tmp_path / "stub_impl.py", tmp_path / "pids", tmp_path / "tmp", tmp_path / "stderr"
    stub.write_text(STUB_IMPL)
    temp.mkdir()
    script = REPORT_UNDER_SIGTERM.format(child=NEVER_FINISHES)
    status, running, left, text = terminate_while_running(
        [sys.executable, "-c", script, str(pids), str(stub), str(tmp_path / "R.md"), str(layout.root)],
        pids=pids, log=log, temp=temp, folder_prefix="nanochat-verify-report-")
    assert status == Exit.INTERRUPTED, text
    assert text.strip().splitlines()[-1] == "report: terminated; nothing was written"
    assert running == [] and left == []


# ----------------------------------------------------------------------------------------------
# Item 9: damaged inputs


def damage(project, how):
    data_dir = project.root / ".nanochat-verify"
    if how == "truncated-outcomes":
        project.outcomes.write_text(project.outcomes.read_text()[:100])
    elif how == "empty-outcomes":
        project.outcomes.write_text("")
    elif how == "empty-object-outcomes":
        project.outcomes.write_text("{}")
    elif how == "truncated-mutation":
        (data_dir / "mutation.json").write_text('{"fingerprint": "abc", "mutants": [')
    elif how == "garbage-coverage-data":
        project.edit_outcomes(line_coverage={"data_file": ".coverage", "sha256": "0" * 64, "appended": False})
        (project.root / ".coverage").write_bytes(b"\x00garbage, not a database" * 50)
    return {"truncated-mutation": ".nanochat-verify/mutation.json",
            "garbage-coverage-data": ".coverage"}.get(how, ".nanochat-verify/outcomes.json")


@pytest.mark.parametrize("how", ["truncated-outcomes", "empty-outcomes", "empty-object-outcomes", "truncated-mutation",
                                 "garbage-coverage-data"])
def test_a_damaged_input_is_one_line_naming_the_file_and_the_command_that_regenerates_it(layout, capsys, how):
    """No traceback: one line with the file, what is wrong and how to regenerate it, and exit status 3
    (not 1, the status of a stale report)."""
    project = layout
    project.record()
    name = damage(project, how)
    argv = ["--from-last-run"] + ([] if how == "garbage-coverage-data" else ["--no-line-coverage"])
    status, out, err = run_main(argv, capsys, root=project.root)
    assert status == Exit.DAMAGED, err
    assert len(err.strip().splitlines()) == 1 and err.startswith(f"report: {name}: ")
    assert "Traceback" not in err and ("`pytest`" in err or "python -m nanochat_verify.mutation" in err)


# ----------------------------------------------------------------------------------------------
# Items 11 and 14: outputs checked first; gaps stop the generator


@pytest.mark.parametrize("output, problem", [
    ("{tmp}", "is a directory"),
    ("{tmp}/no/such/folder/C.md", "does not exist"),
    ("{tmp}/read-only.md", "is not writable"),
], ids=["a-directory", "a-missing-folder", "a-read-only-file"])
def test_an_unusable_output_fails_at_once_before_any_run(layout, tmp_path, capsys, monkeypatch, output, problem):
    """--output is checked before the suite runs; no folder is created."""
    read_only = tmp_path / "read-only.md"
    read_only.write_text("x")
    read_only.chmod(0o444)
    access = os.access  # root may write anything: answer for the file as for any other user
    monkeypatch.setattr(os, "access", lambda path, mode: Path(path) != read_only and access(path, mode))

    def no_run(*args, **kwargs):
        raise AssertionError("the suite ran before the output was checked")
    path = output.replace("{tmp}", str(tmp_path))
    status, _, err = run_main(["--output", path, "--skip-mutation"], capsys, root=layout.root, run_pytest=no_run)
    assert status == 2 and problem in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "no").exists()


@pytest.mark.parametrize("skip, problem", [
    ("attention.softmax", "sub-component attention.softmax (Softmax) has no test"),
], ids=["untested-sub-component"])
def test_a_sub_component_without_a_test_stops_the_generator_and_writes_nothing(layout, capsys, skip, problem):
    """As the README says: a gap in the suite fails the generator; the report is not written."""
    project = layout
    project.record([t for t in all_passing() if skip not in t.components])
    status, _, err = run_main(LAST_RUN, capsys, root=project.root)
    assert status == Exit.USAGE and problem in err
    assert project.output.read_text() == COMMITTED


def test_unknown_component_ids_in_the_outcomes_are_a_gap_too():
    """A test naming an unknown ID (possible only in an outcomes file edited by hand) is a problem."""
    inputs = inputs_of(all_passing() + [result("passed", "attention.qk_nrom", name="test_typo")])
    index_tests(inputs)
    assert "tests/test_a.py::test_typo names unknown component ID 'attention.qk_nrom'" in inputs.problems


# ----------------------------------------------------------------------------------------------
# --check and the prose around the markers


def test_check_prints_a_diff_and_the_command_that_fixes_it(layout, capsys):
    """--check on a stale file exits 1, shows a unified diff and the exact regeneration command."""
    project = layout
    project.record()
    assert run_main(LAST_RUN, capsys, root=project.root)[0] == 0
    assert run_main(LAST_RUN + ["--check"], capsys, root=project.root)[0] == 0
    title = "| 1 | Token embeddings (wte) | 1 | 1 |"
    project.output.write_text(project.output.read_text().replace(f"{title} ✅", f"{title} ❌"))
    status, out, err = run_main(LAST_RUN + ["--check"], capsys, root=project.root)
    assert status == Exit.NOT_VERIFIED
    assert f"-{title} ❌" in out and f"+{title} ✅" in out
    assert "Regenerate it with:\n\n    python -m nanochat_verify.report\n" in err


def test_prose_around_the_markers_is_kept(layout, capsys):
    """Only the text between BEGIN and END is regenerated; hand-written prose around it survives."""
    project = layout
    project.record()
    project.output.write_text(f"# My notes\n\nHand-written.\n\n{report_render.BEGIN}\nold\n{report_render.END}\n\nFooter.\n")
    run_main(LAST_RUN, capsys, root=project.root)
    text = project.output.read_text()
    assert text.startswith("# My notes\n\nHand-written.\n\n" + report_render.BEGIN)
    assert text.endswith(report_render.END + "\n\nFooter.\n") and "\nold\n" not in text
