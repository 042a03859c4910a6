"""Tooling: `python -m nanochat_verify.mutation`, the mutant catalog (nanochat_verify/mutation/catalog/) and its
runner."""

import functools
import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from nanochat_verify.card import load_card
from nanochat_verify.components import COMPONENTS, expand
from nanochat_verify.exits import Exit
from nanochat_verify.mutation import cli
from nanochat_verify.mutation import runner as mutation
from nanochat_verify.mutation.catalog import MUTANTS
from nanochat_verify.mutation.mutant import NAME_PATTERN, M, NotApplicable
from nanochat_verify.paths import OWN_MODEL, SOURCE_ROOT
from .processes import terminate_while_running

pytestmark = [pytest.mark.tooling, pytest.mark.component("tooling.mutation")]

OWN_SOURCE = OWN_MODEL.read_text() if OWN_MODEL else ""  # tooling tests run in the kit's checkout only
OWN_SOURCES = {"gpt": OWN_SOURCE, "engine": (OWN_MODEL.parent / "engine.py").read_text() if OWN_MODEL else ""}


def own_source(m):
    """The text of this project's module that the mutant edits: nanochat/gpt.py, or nanochat/engine.py."""
    return OWN_SOURCES[m.module]
SCORED = [m for m in MUTANTS if not m.equivalent]
UPSTREAM_92D = Path(SOURCE_ROOT or ".").parent / "shared" / "upstream" / "nanochat-92d63d4" / "nanochat" / "gpt.py"
needs_shared = pytest.mark.skipif(not UPSTREAM_92D.is_file(), reason="needs ../shared/upstream beside the checkout "
                                                                    "(the real nanochat, test data that CI has)")


def run_catalog(mutants, target, **kwargs):
    """The runner on this project, under its card."""
    return mutation.run_catalog(mutants, target, card=kwargs.pop("card", load_card()),
                                root=kwargs.pop("root", SOURCE_ROOT), **kwargs)


def failing(node="tests/test_x.py::test_a"):
    """An --outcomes document in which one test failed."""
    return {"tests": {"tests/test_x.py::test_0": {"outcome": "passed"}, node: {"outcome": "failed"}}}


PASSING = {"tests": {"tests/test_x.py::test_0": {"outcome": "passed"}}}


# ---- the catalog --------------------------------------------------------------------------------

def test_every_mutant_applies_to_the_project_model_and_changes_it():
    """Each catalog entry finds its target text in nanochat/gpt.py (or engine.py, module "engine") exactly once and
    changes the source."""
    for m in MUTANTS:
        assert m.apply(own_source(m)) != own_source(m), m.name


def test_every_mutated_source_compiles():
    """Every mutant of nanochat/gpt.py is valid Python, so a failing run is the suite's doing."""
    for m in MUTANTS:
        compile(m.apply(own_source(m)), f"<mutant {m.name}>", "exec")


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
    """All 12 components of the seed table are broken by at least one non-equivalent mutant."""
    covered = {m.component for m in SCORED}
    seed = [c for c in COMPONENTS if getattr(c, "feature", None) is None]
    assert len(seed) == 12
    assert [c.key for c in seed if c.key not in covered] == []


def test_catalog_has_at_least_25_scored_mutants():
    """At least 25 mutants count towards the score (equivalent ones do not)."""
    assert len(SCORED) >= 25


def test_no_two_mutants_make_the_same_change():
    """The catalog counts distinct bugs: no two entries apply the same edits or append the same override."""
    changes = {}
    for m in MUTANTS:
        changes.setdefault((m.module, m.apply(own_source(m))), []).append(m.name)
    assert [names for names in changes.values() if len(names) > 1] == []


@functools.lru_cache(maxsize=None)  # most edits are checked against the same unmutated source
def comment_and_docstring_spans(source):
    """(start, end) character offsets of the comments and docstrings of a module."""
    import ast
    import io
    import tokenize
    starts = [0]
    for line in source.splitlines(keepends=True):
        starts.append(starts[-1] + len(line))
    spans = [(starts[t.start[0] - 1] + t.start[1], starts[t.end[0] - 1] + t.end[1])
             for t in tokenize.generate_tokens(io.StringIO(source).readline) if t.type == tokenize.COMMENT]
    spans += [(starts[n.lineno - 1] + n.col_offset, starts[n.end_lineno - 1] + n.end_col_offset)
              for n in ast.walk(ast.parse(source)) if isinstance(n, ast.Expr) and isinstance(n.value, ast.Constant)
              and isinstance(n.value.value, str)]
    return spans


def test_every_edit_anchors_on_code_never_on_a_comment_or_a_docstring():
    """An edit's target text lies in code: a mutant must not stop applying because a comment was reworded, nor
    "break" a docstring (each edit is checked against the source as the edits before it left it)."""
    card = load_card()
    anchored_on_prose = []
    for m in MUTANTS:
        source = own_source(m)
        for old, new in m.texts(card):
            at = source.index(old)
            if any(a < at + len(old) and at < b for a, b in comment_and_docstring_spans(source)):
                anchored_on_prose.append(m.name)
            source = source.replace(old, new)
    assert anchored_on_prose == []


def test_each_catalog_file_holds_the_mutants_of_its_own_component():
    """catalog/<component>.toml holds exactly the mutants that break that component, and every file of the folder
    is a component's."""
    from nanochat_verify.components import BY_KEY
    from nanochat_verify.mutation.catalog import CATALOG_DIR, component_files, read_catalog_file
    assert sorted(component_files()) == sorted(CATALOG_DIR.glob("*.toml"))
    for path in component_files():
        assert {m.component for m in read_catalog_file(path)} == {path.stem} and path.stem in BY_KEY, path.name


def test_an_edit_must_match_exactly_once():
    """A target text found zero or two times makes the mutant not applicable rather than guessing."""
    missing = M("missing", "rope", "edits text that is not there", ("no such text", "x"))
    twice = M("twice", "rope", "edits text that occurs twice", ("a = 1", "a = 2"))
    with pytest.raises(NotApplicable, match="not found"):
        missing.apply("b = 1\n")
    with pytest.raises(NotApplicable, match="found 2 times"):
        twice.apply("a = 1\na = 1\n")
    assert twice.apply("a = 1\n") == "a = 2\n"


def softcap_mutant():
    return next(m for m in MUTANTS if m.target.startswith("lm_head") and "softcap" in m.name and not m.equivalent)


def test_after_an_architecture_change_a_mutant_whose_text_is_gone_is_stale_and_the_others_run(tmp_path, monkeypatch):
    """The project's gpt.py with the softcap changed (as a user changing LOGIT_SOFTCAP would): the
    softcap mutant no longer applies; it is `stale`, not a harness failure that stops the run, the
    other mutants still run, and the exit status (4) says the catalog needs attention."""
    changed = tmp_path / "gpt.py"
    changed.write_text(softcap_mutant().apply(OWN_SOURCE))
    monkeypatch.setattr(mutation, "is_own_model", lambda path: Path(path) == changed)
    killed = next(m for m in MUTANTS if m.component == "mlp" and not m.equivalent)
    results = run_catalog([softcap_mutant(), killed], str(changed),
                          runner=scripted({killed.name: (1, failing("tests/test_mlp.py::test_k"))}))
    assert [(r.name, r.status) for r in results] == [(softcap_mutant().name, "stale"), (killed.name, "killed")]
    assert "not found" in results[0].detail
    assert mutation.exit_status(results) == Exit.CATALOG
    assert json.loads(mutation.to_json(results, "nanochat/gpt.py"))["totals"]["stale"] == 1


def test_a_failing_control_still_reports_which_mutants_are_stale():
    """When the unmutated copy fails, nothing is scored, and the JSON says so with the reason: the
    report can then show the honest table and the stale mutants."""
    runner = scripted({mutation.CONTROL: (1, failing("tests/test_lm_head.py::test_softcap"))})
    with pytest.raises(mutation.ControlFailed) as caught:
        run_catalog(MUTANTS[:2], str(SOURCE_ROOT), runner=runner)
    assert [r.status for r in caught.value.results] == ["not_run", "not_run"]
    data = json.loads(mutation.to_json(caught.value.results, "nanochat/gpt.py", control_failure=caught.value.reason))
    assert data["control"] == "failed" and "tests/test_lm_head.py::test_softcap" in data["control_failure"]


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
    (2, None),
    (3, None),
    (4, None),
    (5, PASSING),
    (70, None),
    (-9, None),
    (mutation.TIMED_OUT, None),
    (1, None),
    (1, PASSING),
    (0, {"tests": {"tests/test_x.py::t": {"outcome": "skipped"}}}),
], ids=["interrupted-by-a-collection-error", "pytest-internal-error", "usage-error-the-copy-does-not-import",
        "no-tests-collected", "the-forked-child-crashed-outside-pytest", "killed-by-a-signal", "timed-out",
        "failures-claimed-but-nothing-recorded", "failures-claimed-but-no-test-failed", "nothing-actually-passed"])
def test_anything_but_a_test_failure_or_a_clean_pass_is_a_harness_error(code, outcomes):
    """Crashes, usage errors, timeouts and missing outcomes are harness errors, never kills."""
    status, killed_by, detail = mutation.classify(code, outcomes, seconds=12.0)
    assert (status, killed_by) == ("harness_error", None)
    assert detail


# ---- the runner, with scripted runs --------------------------------------------------------------

def scripted(outcomes_by_task):
    """A stand-in for run_tasks: every task 'finishes' with the scripted (exit code, outcomes)."""
    def run(tasks, workdir, jobs, extra, timeout, control_limit, on_done, use_fork, root):
        assert tasks[0].name == mutation.CONTROL  # the control always runs, and first
        for task in tasks:
            assert task.copy.is_file()
            on_done(task, *outcomes_by_task.get(task.name, (0, PASSING)), 1.0)
    return run


def test_a_failing_control_aborts_the_run_as_a_harness_failure():
    """If the unmutated copy fails the suite nothing is scored: the run stops with the failing test named."""
    runner = scripted({mutation.CONTROL: (1, failing("tests/test_x.py::test_broken"))})
    with pytest.raises(mutation.ControlFailed, match="tests/test_x.py::test_broken"):
        run_catalog(MUTANTS[:2], str(SOURCE_ROOT), runner=runner)


def test_runner_maps_each_run_to_its_mutant_status():
    """Scripted runs come back as killed (with the test), survived and harness_error; equivalents are not run."""
    killed, survivor, broken, equivalent = (MUTANTS[0], MUTANTS[1], MUTANTS[2],
                                            next(m for m in MUTANTS if m.equivalent))
    runner = scripted({killed.name: (1, failing("tests/test_x.py::test_k")), broken.name: (4, None),
                       equivalent.name: (1, failing())})
    results = run_catalog([killed, survivor, broken, equivalent], str(SOURCE_ROOT), runner=runner)
    assert [(r.name, r.status, r.killed_by) for r in results] == [
        (killed.name, "killed", "tests/test_x.py::test_k"), (survivor.name, "survived", None),
        (broken.name, "harness_error", None), (equivalent.name, "equivalent", None)]
    assert mutation.totals(results)["total"] == 3 and mutation.exit_status(results) == Exit.NOT_VERIFIED


@needs_shared
@pytest.mark.parametrize("name, reason", [
    (M("probe", "flash_cache.layout", "probe", append="FlashKVCache.advance = FlashKVCache.reset\n", module="engine"),
     "overrides FlashKVCache, which this implementation does not define"),
    ("smear_uses_next", "overrides GPT._smear, which this implementation does not define"),
    ("top_k_zero_rejected", "breaks an extra of this project's nanochat/gpt.py"),
    ("kvcache_reset_keeps_smear", "breaks an extra of this project's nanochat/engine.py"),
    ("rope_compute_in_bf16", "which this card keeps 'compute', not bfloat16"),
], ids=["rebinds-a-class-it-lacks", "replaces-a-method-its-class-lacks", "breaks-a-validation-extra",
        "overrides-our-own-caches-internals", "rope-in-the-tables-dtype-under-float32-tables"])
def test_mutants_that_cannot_act_on_a_checkout_are_not_applicable_to_it(name, reason):
    """On nanochat 92d63d4 under its card, a mutant that could only fail to import (harness error), crash on names
    of this project's own code (a false kill) or change nothing the suite runs (survive) is not applicable, with
    the reason; on the project's model it applies. Each is applied to the module it edits (gpt.py or engine.py)."""
    mutant = name if not isinstance(name, str) else next(m for m in MUTANTS if m.name == name)
    upstream = (UPSTREAM_92D.parent / mutant.file_name).read_text()
    mutated, why = mutation.mutate(mutant, upstream, False, load_card("nanochat-92d63d4"))
    assert mutated is None and reason in why, why
    assert mutation.mutate(mutant, own_source(mutant), True, load_card(None))[0] is not None


@needs_shared
@pytest.mark.parametrize("name", ["topk_keeps_k_plus_one", "default_seed_0"])
def test_mutants_of_generate_act_on_a_checkouts_generate(name):
    """GPT.generate is part of the contract: a mutant whose text is in nanochat 92d63d4's generate applies to it."""
    mutant = next(m for m in MUTANTS if m.name == name)
    assert mutation.mutate(mutant, UPSTREAM_92D.read_text(), False, load_card("nanochat-92d63d4"))[0] is not None


def test_text_mutants_are_not_applicable_to_another_implementation(tmp_path):
    """On an implementation without the target text an edit mutant is not_applicable; an override still runs."""
    other = tmp_path / "other_gpt.py"
    base = f"ROPE_BASE = {load_card().rope_base:g}"
    assert OWN_SOURCE.count(base) == 1
    other.write_text(OWN_SOURCE.replace(base, base.replace(" = ", " = 0 + ")))
    by_name = {m.name: m for m in MUTANTS}
    results = run_catalog([by_name["rope_base_500k"], by_name["rmsnorm_identity"]], str(other),
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
    assert cli.main(["--list"]) == Exit.OK
    out = capsys.readouterr().out
    assert all(m.name in out for m in MUTANTS)
    assert cli.main(["--only", "no_such_mutant", "--list"]) == Exit.USAGE
    assert "no_such_mutant" in capsys.readouterr().out


@pytest.mark.parametrize("argv, problem", [
    (["--timeout", "0"], "--timeout: must be a positive number of seconds"),
    (["--timeout", "-5"], "--timeout: must be a positive number of seconds"),
    (["--timeout", "nan"], "--timeout: must be a positive number of seconds"),
    (["--only", ""], "--only: names no mutant"),
    (["--only", ","], "--only: names no mutant"),
    (["--jobs", "0"], "--jobs: must be a positive integer"),
    (["--catalog", "no_such_catalog_module"], "--catalog 'no_such_catalog_module': no importable module"),
    (["--catalog", "{tmp}/missing.py"], "no such file"),
    (["--json", "{tmp}"], "--json {tmp}: is a directory"),
    (["--json", "{tmp}/no/such/folder/m.json"], "does not exist"),
    (["--gpt-impl", ""], "--gpt-impl is empty"),
], ids=["timeout-zero", "timeout-negative", "timeout-not-a-number", "only-empty", "only-just-a-comma", "no-jobs",
        "catalog-module-missing", "catalog-file-missing", "json-is-a-directory", "json-folder-missing", "empty-impl"])
def test_bad_options_are_one_line_and_exit_2_before_anything_runs(argv, problem, tmp_path, capsys, monkeypatch):
    """Every unusable option is refused at once, in one line, without a traceback and without running."""
    monkeypatch.setattr(cli, "run_catalog", lambda *a, **k: pytest.fail("the catalog ran"))
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    try:
        status = cli.main(argv)
    except SystemExit as e:
        status = e.code
    captured = capsys.readouterr()
    text = (captured.out + captured.err).strip()
    assert status == 2 and len(text.splitlines()) == 1, text
    assert problem.replace("{tmp}", str(tmp_path)) in " ".join(text.split()) and "Traceback" not in text


# ---- real runs of a tiny fixture suite ---------------------------------------------------------
# A pure-Python stand-in implementation and a two-test suite: every pytest run starts in well under
# a second, so real runs (exit codes, --outcomes files, time limits) are checked without torch.

STUB_IMPL = """
class GPTConfig:
    pass


class GPT:
    pass


def apply_rotary_emb(x, cos, sin):
    return x


def norm(x):
    return [v / 2 for v in x]
"""

STUB_TESTS = """
import pytest


@pytest.mark.component("rmsnorm")
def test_norm_halves(impl):
    assert impl.norm([2.0]) == [1.0]


@pytest.mark.component("rope")
def test_rope_leaves_the_stub_alone(impl):
    assert impl.apply_rotary_emb([1], None, None) == [1]
"""

STUB_PYPROJECT = """
[tool.pytest.ini_options]
addopts = ["-p", "no:hypothesispytest", "-p", "no:xdist"]
"""


@pytest.fixture
def stub(tmp_path):
    """(the stand-in implementation, the pytest arguments that run its fixture suite)."""
    (tmp_path / "suite").mkdir()
    (tmp_path / "suite" / "pyproject.toml").write_text(STUB_PYPROJECT)
    (tmp_path / "suite" / "test_stub.py").write_text(STUB_TESTS)
    impl = tmp_path / "stub_gpt.py"
    impl.write_text(STUB_IMPL)
    return impl, [str(tmp_path / "suite")]


def test_real_runs_give_control_kill_survivor_harness_error_and_not_applicable(stub):
    """Real pytest runs of the fixture suite: the control passes, a broken norm is killed by the norm
    test, a copy that raises at import is a harness error (not a kill), a harmless change survives,
    an equivalent mutant is not run and text the stub lacks is not applicable."""
    impl, suite = stub
    catalog = (M("norm_thirds", "rmsnorm", "divides by 3 instead of 2", ("v / 2", "v / 3")),
               M("probe_survivor", "rope", "appends a name no test looks at", append="_PROBE = 1\n"),
               M("probe_broken_import", "rope", "raises at import", append="raise RuntimeError('deliberately broken')\n"),
               M("eq_probe", "rope", "equivalent: a comment changes nothing", ("return x\n", "return x  # same\n"),
                 equivalent=True),
               M("not_in_stub", "rope", "edits text the stub lacks", ("no such text", "x")))
    results = run_catalog(catalog, str(impl), jobs=2, suite=suite, root=Path(suite[0]), use_fork=False)
    got = {r.name: (r.status, r.killed_by) for r in results}
    assert got.pop("norm_thirds") == ("killed", "test_stub.py::test_norm_halves"), results
    assert got == {"probe_survivor": ("survived", None), "probe_broken_import": ("harness_error", None),
                   "eq_probe": ("equivalent", None), "not_in_stub": ("not_applicable", None)}
    assert mutation.exit_status(results) == Exit.NOT_VERIFIED


def test_the_control_run_honours_the_timeout(stub, tmp_path):
    """A control whose implementation never finishes importing is stopped at --timeout, not at the
    control's default limit of minutes."""
    impl, suite = stub
    hanging = tmp_path / "hanging_gpt.py"
    hanging.write_text("import time\ntime.sleep(120)\n" + STUB_IMPL)
    finished = []
    started = time.monotonic()
    mutation.run_tasks([mutation.Task(mutation.CONTROL, hanging, None)], tmp_path, 1, suite, timeout=0.2,
                       control_limit=60, on_done=lambda task, code, outcomes, seconds: finished.append(code),
                       use_fork=False, root=Path(suite[0]))
    assert finished == [mutation.TIMED_OUT]
    assert time.monotonic() - started < 20


def test_a_control_whose_import_never_returns_fails_at_the_import_time_limit(stub, tmp_path):
    """--import-timeout reaches every run: a copy whose import hangs makes the control fail at that limit, with
    the reason in one line of its log, long before the control's own time limit."""
    impl, suite = stub
    hangs = tmp_path / "hanging_gpt.py"
    hangs.write_text("import time\ntime.sleep(60)\n" + STUB_IMPL)
    args, extra = cli.parse_args(["--gpt-impl", str(hangs), "--import-timeout", "0.2"])
    assert extra == ["--import-timeout=0.2"]
    started = time.monotonic()
    with pytest.raises(mutation.ControlFailed, match="importing it did not finish within 0.2 s") as failed:
        run_catalog((M("norm_thirds", "rmsnorm", "divides by 3 instead of 2", ("v / 2", "v / 3")),), str(hangs),
                    jobs=1, suite=suite, root=Path(suite[0]), use_fork=False, extra=extra)
    assert "usage error" in failed.value.reason and time.monotonic() - started < 30


CATALOG_UNDER_SIGTERM = """
import sys
from pathlib import Path
from nanochat_verify.card import load_card
from nanochat_verify.commandline import Terminated
from nanochat_verify.mutation import runner as mutation
from nanochat_verify.mutation.mutant import M
impl, suite = sys.argv[1:]
catalog = (M("norm_thirds", "rmsnorm", "divides by 3 instead of 2", ("v / 2", "v / 3")),)
try:
    mutation.run_catalog(catalog, impl, card=load_card(), root=Path(suite), suite=[suite], jobs=2, use_fork=False)
except Terminated:
    sys.exit(130)
"""


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads process states from /proc (Linux)")
def test_sigterm_stops_every_run_and_removes_the_mutated_copies(stub, tmp_path):
    """SIGTERM to the mutation runner while its runs are going (here, copies whose import never returns): each
    pytest run is stopped and the folder of mutated copies removed (they used to run on under init, and the
    folder stayed)."""
    impl, suite = stub
    pids, temp, log = tmp_path / "pids", tmp_path / "tmp", tmp_path / "stderr"
    temp.mkdir()
    hanging = tmp_path / "hanging_gpt.py"
    hanging.write_text(f"import os, time\nwith open({str(pids)!r}, 'a') as f:\n    f.write(f'{{os.getpid()}}\\n')\n"
                       f"time.sleep(120)\n" + STUB_IMPL)
    status, running, left, text = terminate_while_running(
        [sys.executable, "-c", CATALOG_UNDER_SIGTERM, str(hanging), suite[0]],
        pids=pids, log=log, temp=temp, folder_prefix="nanochat-verify-mutants-")  # the control and the mutant
    assert status == Exit.INTERRUPTED, text
    assert running == [] and left == []


def test_a_catalog_with_a_cuda_only_mutant_still_forks_its_runs(stub):
    """Checking CUDA for a needs_cuda mutant imports torch, and numpy's OpenBLAS thread pool with it: the
    runner preloads first, so the parent is still single-threaded when the runs start, and every run is
    a fork sharing its imports rather than a fresh interpreter (seconds more per mutant)."""
    impl, _ = stub
    script = textwrap.dedent(f"""
        import sys
        from pathlib import Path
        from nanochat_verify.card import load_card
        from nanochat_verify.mutation import runner as mutation
        from nanochat_verify.mutation.mutant import M
        seen = []
        mutation.run_tasks = lambda *args: seen.append(mutation._single_threaded())
        catalog = (M("cuda_probe", "rope", "a CUDA-only probe", ("no such text", "x"), needs_cuda=True),
                   M("norm_thirds", "rmsnorm", "divides by 3 instead of 2", ("v / 2", "v / 3")))
        mutation.run_catalog(catalog, {str(impl)!r}, card=load_card(), root=Path.cwd(), jobs=2)
        sys.exit(0 if seen == [True] else 1)
    """)
    env = {k: v for k, v in os.environ.items() if not k.endswith("_NUM_THREADS")}
    proc = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]


def test_a_json_path_in_a_checkout_that_cannot_be_written_is_refused_before_anything_runs(tmp_path, monkeypatch,
                                                                                         capsys):
    """`--json .nanochat-verify/mutation.json` where that folder cannot be made or written (a read-only checkout):
    one line at once, not an OSError after the whole catalog has run."""
    monkeypatch.setattr(cli, "project_root", lambda: tmp_path)
    (tmp_path / "nanochat").mkdir()
    (tmp_path / "nanochat" / "gpt.py").write_text(STUB_IMPL)
    access = os.access
    monkeypatch.setattr(os, "access", lambda path, mode, *a, **k: not (Path(path) == tmp_path and mode & os.W_OK)
                        and access(path, mode, *a, **k))
    target = tmp_path / ".nanochat-verify" / "mutation.json"
    with pytest.raises(SystemExit) as caught:
        cli.parse_args(["--json", str(target)])
    err = capsys.readouterr().err
    assert caught.value.code == Exit.USAGE and len(err.strip().splitlines()) == 1
    assert f"--json {target}: {tmp_path} cannot be written" in err and not target.parent.exists()


def test_outside_any_project_the_runner_says_there_is_nothing_to_verify(tmp_path, monkeypatch, capsys):
    """Started in a folder with no nanochat checkout and no --gpt-impl, the runner refuses in one line, naming what
    it looked for, instead of failing in pytest."""
    monkeypatch.setattr(cli, "project_root", lambda: tmp_path)
    with pytest.raises(SystemExit) as caught:
        cli.main([])
    err = capsys.readouterr().err
    assert caught.value.code == Exit.USAGE and len(err.strip().splitlines()) == 1 and "nothing to verify" in err
