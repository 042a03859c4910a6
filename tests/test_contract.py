"""The contract machinery: loading any implementation with --gpt-impl, and the suite's pytest plugin
(component IDs required and checked, project-only tests deselected, outcomes recorded)."""

import json
import sys
import textwrap
import time
import types
from pathlib import Path

import pytest
import torch

from nanochat_verify.contract import ContractError, load_implementation
from nanochat_verify.paths import OWN_MODEL, SOURCE_ROOT

pytestmark = [pytest.mark.component("contract.loading"), pytest.mark.tooling]
REFERENCE = Path(__file__).with_name("reference_gpt.py").resolve()
INI = "[pytest]\n"


def test_loads_an_implementation_by_module_name():
    """A dotted name imports the module and checks it exposes the contract."""
    module = load_implementation("tests.reference_gpt")
    assert all(hasattr(module, n) for n in ("GPTConfig", "GPT", "norm", "apply_rotary_emb"))


def test_loads_a_checkout_with_its_package_under_an_alias():
    """A checkout root loads its nanochat/gpt.py with the package in place, under a name of its own (never
    `nanochat`, which may be a fork's installed copy)."""
    module = load_implementation(str(SOURCE_ROOT))
    assert Path(module.__file__).resolve() == OWN_MODEL and module.__name__.startswith("_gpt_impl_gpt_")
    assert "nanochat.gpt" not in sys.modules or sys.modules["nanochat.gpt"] is not module


def test_loads_an_implementation_from_a_file_path():
    """A .py path is imported under a unique module name, once."""
    a = load_implementation(str(REFERENCE))
    assert Path(a.__file__).resolve() == REFERENCE
    assert load_implementation(str(REFERENCE)) is a


@pytest.mark.parametrize("source, message", [
    (None, "no such file"),
    ("raise RuntimeError('boom')\n", "importing it failed: RuntimeError: boom"),
    ("def norm(x) return x\n", "importing it failed: SyntaxError"),
    ("import sys\nsys.exit(3)\n", r"importing it called sys.exit\(3\)"),
    ("def norm(x): return x\n", "does not expose GPTConfig, GPT"),
], ids=["missing-file", "raises-at-import", "syntax-error", "calls-sys-exit", "lacks-the-contract-names"])
def test_unusable_implementations_are_refused_with_the_reason(tmp_path, source, message):
    """A missing file, a module that fails to import (an error, a syntax error, sys.exit), or one without the
    contract's names is a ContractError that says which, never a crash of the run."""
    path = tmp_path / "impl.py"
    if source is not None:
        path.write_text(source)
    with pytest.raises(ContractError, match=message):
        load_implementation(str(path))


@pytest.mark.parametrize("spec, message", [
    ("", "empty"),
    (".hidden", "no such file"),
    ("no_such_module_xyz", "'no_such_module_xyz': no importable module"),
    ("not a module", "not a dotted module name"),
], ids=["empty", "dot-hidden", "unknown-module", "spaces"])
def test_bad_names_are_refused_with_the_reason(spec, message):
    """An empty value, a hidden-file name, an unknown or malformed module name is a ContractError naming it."""
    with pytest.raises(ContractError, match=message):
        load_implementation(spec)


NEVER_RETURNS = """
import time
try:
    time.sleep(60)
except Exception:  # an import that swallows errors is stopped all the same
    pass
"""


def test_an_import_that_never_returns_is_refused_naming_the_time_limit(tmp_path):
    """Loading has a time limit: a module whose import never returns is a ContractError that names the limit and
    the option that raises it, and a time limit already running (pytest-timeout's, in this test) carries on."""
    import signal
    path = tmp_path / "hangs.py"
    path.write_text(NEVER_RETURNS)
    outer = signal.getitimer(signal.ITIMER_REAL)[0] if hasattr(signal, "getitimer") else 0.0
    started = time.monotonic()
    with pytest.raises(ContractError, match=r"'.*hangs.py': importing it did not finish within 0.15 s \(an import "
                                            r"that never returns\?\); allow more time with --import-timeout SECONDS"):
        load_implementation(str(path), timeout=0.15)
    assert time.monotonic() - started < 10
    if outer:
        assert 0 < signal.getitimer(signal.ITIMER_REAL)[0] < outer
    assert not any(name.startswith("_gpt_impl_hangs_") for name in sys.modules)


def test_off_the_main_thread_the_import_time_limit_holds_too(tmp_path):
    """Where no timer signal can interrupt it (another thread, Windows), the import runs in a thread of its own,
    and the caller gets the same ContractError at the limit."""
    import threading
    path = tmp_path / "slow.py"
    path.write_text("import time\ntime.sleep(3)\n")
    caught = []
    worker = threading.Thread(target=lambda: caught.append(pytest.raises(ContractError, load_implementation,
                                                                         str(path), timeout=0.2)))
    worker.start()
    worker.join(10)
    assert len(caught) == 1 and "did not finish within 0.2 s" in str(caught[0].value)


def test_a_directory_without_a_gpt_py_is_no_such_file(tmp_path):
    """A folder is accepted only as a nanochat checkout (holding nanochat/gpt.py); any other folder is no such file."""
    with pytest.raises(ContractError, match="no such file: that is a directory without nanochat/gpt.py"):
        load_implementation(str(tmp_path))


@pytest.mark.parametrize("line, message", [
    ("import package_nobody_installed", "importing it needs the module 'package_nobody_installed', which is not "
                                        "installed"),
    ("from nanochat.flash_attention import flash_attn", "it imports 'nanochat.flash_attention', which the checkout "
                                                         "does not have (no "),
], ids=["a-package-not-installed", "a-module-the-checkout-lacks"])
def test_an_import_the_checkout_cannot_satisfy_is_one_line_naming_the_module(tmp_path, line, message):
    """A fork whose gpt.py imports a package that is not installed (triod, kernels), or a module of its own package
    that the checkout lacks (nanochat 8203efa's flash_attention), is refused in one line naming it."""
    (tmp_path / "nanochat").mkdir()
    (tmp_path / "nanochat" / "__init__.py").write_text("")
    (tmp_path / "nanochat" / "gpt.py").write_text(f"{line}\nclass GPTConfig: pass\nclass GPT: pass\n")
    with pytest.raises(ContractError) as refused:
        load_implementation(str(tmp_path))
    assert message in str(refused.value) and "\n" not in str(refused.value)
    if "checkout" in message:
        assert str(tmp_path / "nanochat" / "flash_attention.py") in str(refused.value)


def fake_checkout(root, marker):
    """A tiny nanochat checkout whose gpt.py imports its own package's modules, warns at import, and has an
    engine.py whose KVCache sits next to an import that must never run."""
    package = root / "nanochat"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "common.py").write_text(f"import warnings\nwarnings.warn('old', DeprecationWarning)\nMARKER = {marker!r}\n")
    (package / "gpt.py").write_text(
        "from nanochat.common import MARKER\n"
        "from nanochat.parts import GPTConfig, GPT, norm, apply_rotary_emb\n")
    (package / "parts.py").write_text("class GPTConfig: pass\nclass GPT: pass\n"
                                      "def norm(x): return x\ndef apply_rotary_emb(x, cos, sin): return x\n")
    (package / "engine.py").write_text(
        "import torch\nfrom nanochat.tokenizer_that_does_not_exist import Tokenizer\n\n"
        "class KVCache:\n    def __init__(self, batch_size, num_heads, seq_len, head_dim, num_layers):\n"
        "        self.where = torch.zeros(1)\n        self.marker = " + repr(marker) + "\n")
    return root


def test_a_checkout_loads_with_its_own_package_and_two_stay_apart(tmp_path):
    """A checkout's `from nanochat.X import` resolve to its own modules, never this project's (which stays
    importable), its import-time warnings do not fail the run, and two checkouts in one process stay apart."""
    before = sys.modules.get("nanochat")  # this project's own package, if an earlier test imported it
    broken = fake_checkout(tmp_path / "broken", "none")
    (broken / "nanochat" / "gpt.py").write_text("from nanochat_verify.card import load_card\n")  # ours, not its
    (broken / "nanochat" / "gpt.py").write_text("from nanochat.engine_of_another_checkout import KVCache\n")
    with pytest.raises(ContractError, match="it imports 'nanochat.engine_of_another_checkout', which the checkout does not have"):
        load_implementation(str(broken))
    own = load_implementation(str(SOURCE_ROOT))
    a = load_implementation(str(fake_checkout(tmp_path / "a", "first")))
    b = load_implementation(str(fake_checkout(tmp_path / "b", "second") / "nanochat" / "gpt.py"))
    assert (a.MARKER, b.MARKER) == ("first", "second")
    assert a.GPT is not b.GPT and own.GPT is not a.GPT
    # no checkout's package is left under the name every checkout uses
    assert sys.modules.get("nanochat") is before


def test_a_checkouts_own_kv_cache_is_read_out_of_its_engine_without_running_the_rest(tmp_path):
    """The cache adapter takes engine.KVCache of the implementation's package, defined with only the imports it
    uses (the engine's import of a tokenizer never runs), else the KVCache of the implementation's module."""
    from nanochat_verify.contract import CacheAdapter
    impl = load_implementation(str(fake_checkout(tmp_path / "c", "third")))
    cache = CacheAdapter.of(impl).new(1, 2, 4, 8, 1)
    assert cache.marker == "third" and cache.where.shape == (1,)
    reference = load_implementation(str(REFERENCE))
    assert CacheAdapter.of(reference).cls is reference.KVCache


@pytest.fixture
def suite(pytester):
    """A throwaway test directory run in-process with the suite's plugin."""
    pytester.makeini(INI)

    def run(source, *args):
        pytester.makepyfile(test_sample=textwrap.dedent(source))
        impl = [] if any(a.startswith("--gpt-impl") for a in args) else [f"--gpt-impl={SOURCE_ROOT}"]
        return pytester.runpytest_inprocess("-p", "nanochat_verify.plugin", "-p", "no:cacheprovider", "-p", "no:cov",
                                            "-p", "no:randomly", *impl, *args)
    return run


def test_a_test_without_a_component_marker_stops_the_run(suite):
    """Every test must name what it verifies: a test without @pytest.mark.component is a usage error."""
    result = suite("def test_unlabelled():\n    pass\n")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*test_unlabelled: no @pytest.mark.component(ID) marker*"])


def test_an_unknown_component_id_stops_the_run(suite):
    """A misspelt component ID is rejected at collection, with the list of known IDs."""
    result = suite("""
        import pytest
        @pytest.mark.component("attention.qk_nrom")
        def test_typo():
            pass
    """)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*unknown component ID 'attention.qk_nrom'; known: *attention.qk_norm*"])


def test_project_only_and_tooling_tests_are_deselected_for_another_implementation(suite):
    """Under --gpt-impl another.py only the contract tests run; --with-extras (a copy of gpt.py) adds the model extras."""
    source = """
        import pytest
        @pytest.mark.component("rope")
        def test_contract(impl):
            assert impl.GPT
        @pytest.mark.project_only
        @pytest.mark.component("contract.validation")
        def test_extra():
            pass
        @pytest.mark.tooling
        @pytest.mark.component("tooling.tracer")
        def test_tool():
            pass
    """
    suite(source).assert_outcomes(passed=3)
    suite(source, f"--gpt-impl={REFERENCE}").assert_outcomes(passed=1, deselected=2)
    suite(source, f"--gpt-impl={REFERENCE}", "--with-extras").assert_outcomes(passed=2, deselected=1)


def test_a_missing_implementation_is_a_usage_error(suite):
    """--gpt-impl naming nothing importable stops the run with the reason."""
    result = suite("", "--gpt-impl=missing_impl.py")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*'missing_impl.py': no such file*"])


@pytest.mark.parametrize("args, message", [
    (["--import-timeout=0.15"], "importing it did not finish within 0.15 s"),
    (["--import-timeout=0"], "--import-timeout: must be a positive number of seconds, got '0'"),
], ids=["import-never-returns", "no-time-at-all"])
def test_an_implementation_whose_import_never_returns_stops_the_run_in_one_line(suite, tmp_path, args, message):
    """The plugin loads the implementation within --import-timeout (default 60 s, or [tool.nanochat-verify]
    import-timeout): a gpt.py whose import hangs is a usage error before any test, not a run that hangs silently
    (pytest-timeout's limits start with the tests)."""
    hangs = tmp_path / "hangs.py"
    hangs.write_text(NEVER_RETURNS)
    result = suite("", f"--gpt-impl={hangs}", *args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert message in result.stderr.str() and "Traceback" not in result.stderr.str()


@pytest.mark.parametrize("setting, message", [
    ("0.3", "importing it did not finish within 0.3 s"),
    ("0", "import-timeout = 0; expected a positive number of seconds"),
    ('"soon"', "import-timeout = 'soon'; expected a positive number of seconds"),
], ids=["hanging-import", "zero", "not-a-number"])
def test_a_projects_import_timeout_setting_limits_loading(suite, pytester, tmp_path, setting, message):
    """`import-timeout` in [tool.nanochat-verify] sets the limit where no option does; a value that is not a
    positive number is refused in one line."""
    hangs = tmp_path / "hangs.py"
    hangs.write_text(NEVER_RETURNS)
    pytester.makepyprojecttoml(f"[tool.nanochat-verify]\ngpt-impl = {str(hangs)!r}\nimport-timeout = {setting}\n")
    result = suite("", "--gpt-impl=")
    assert result.ret == pytest.ExitCode.USAGE_ERROR and message in result.stderr.str(), result.stderr.str()


FINDINGS_TESTS = """
import pytest
from pathlib import Path


@pytest.mark.component("rope")
def test_fails():
    assert False


@pytest.mark.component("rope")
def test_runs():
    Path("ran").touch()  # a test that ran leaves this behind
"""


@pytest.mark.parametrize("findings, message", [
    (b"tests/test_sample.py::test_fails  # the real bug\ntests/test_sample.py::test_fials  # a typo\n",
     "1 id(s) name no test of the suite, e.g. 'tests/test_sample.py::test_fials'"),
    (b"tests/test_sample.py::test_fails\ntests/test_smaple.py::test_fails\n",
     "1 id(s) name no test of the suite, e.g. 'tests/test_smaple.py::test_fails'"),
    (bytes(range(256)) * 4, "findings.bin: not a text file (expected one test id per line)"),
    (b"test_sample.py::test_fails\n", "findings.bin, line 1: 'test_sample.py::test_fails' is not a test id"),
], ids=["a-test-the-file-lacks", "a-file-that-does-not-exist", "a-binary-file", "not-a-suite-id"])
def test_an_expected_findings_file_naming_no_test_stops_the_run_before_any_test(pytester, findings, message):
    """--expect-failures with an id that names no test (a typo in the test or in the file name), a binary file or a
    line that is not an id: one usage-error line naming the file and the id, at collection, before any test runs
    (a typo used to be reported only after the whole run, or never)."""
    pytester.makeini(INI)
    (pytester.path / "tests").mkdir()
    (pytester.path / "tests" / "test_sample.py").write_text(FINDINGS_TESTS)
    (pytester.path / "findings.bin").write_bytes(findings)
    result = pytester.runpytest_inprocess("-p", "nanochat_verify.plugin", "-p", "no:cacheprovider", "-p", "no:cov",
                                          "-p", "no:randomly", f"--gpt-impl={SOURCE_ROOT}",
                                          "--expect-failures=findings.bin", "tests")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert message in result.stderr.str() and "Traceback" not in result.stderr.str()
    assert not (pytester.path / "ran").exists()


def test_expected_findings_that_fail_as_recorded_pass_the_run(pytester):
    """The same suite with a correct findings file: the listed test fails as recorded (xfailed), the run passes."""
    pytester.makeini(INI)
    (pytester.path / "tests").mkdir()
    (pytester.path / "tests" / "test_sample.py").write_text(FINDINGS_TESTS)
    (pytester.path / "findings.txt").write_text("tests/test_sample.py::test_fails  # the real bug\n")
    result = pytester.runpytest_inprocess("-p", "nanochat_verify.plugin", "-p", "no:cacheprovider", "-p", "no:cov",
                                          "-p", "no:randomly", f"--gpt-impl={SOURCE_ROOT}",
                                          "--expect-failures=findings.txt", "tests")
    assert result.ret == pytest.ExitCode.OK
    result.assert_outcomes(passed=1, xfailed=1)
    result.stdout.fnmatch_lines(["*1 expected finding(s) failed as recorded, 0 unexpected failure(s)*"])


def test_outcomes_record_each_tests_result_components_and_docstring(suite, tmp_path):
    """--outcomes writes every test's outcome, its sub-components (a component ID expanded) and docstring."""
    out = tmp_path / "outcomes.json"
    suite("""
        import pytest
        @pytest.mark.component("block")
        def test_good():
            '''It works.'''
        @pytest.mark.component("mlp.relu2")
        def test_bad():
            '''It fails.'''
            assert False
        @pytest.mark.component("loss")
        @pytest.mark.skipif(True, reason="no CUDA")
        def test_skipped():
            pass
    """, "--outcomes", str(out))
    data = json.loads(out.read_text())
    tests = {nodeid.split("::")[-1]: entry for nodeid, entry in data["tests"].items()}
    assert tests["test_good"] == {"components": ["block.attention_path", "block.mlp_path"], "doc": "It works.",
                                  "outcome": "passed", "skip_reason": "", "expected_finding": None}
    assert tests["test_bad"]["outcome"] == "failed" and tests["test_bad"]["components"] == ["mlp.relu2"]
    assert tests["test_skipped"]["outcome"] == "skipped" and tests["test_skipped"]["skip_reason"].endswith("no CUDA")
    assert data["own_impl"] is True and data["complete"] is True and data["incomplete"] == []
    assert data["finished"] is True and len(data["run_id"]) == 32 and len(data["fingerprint"]) == 64


def test_a_test_that_runs_only_when_asked_is_recorded_as_not_run_with_why(suite, tmp_path):
    """A packaging test without --run-packaging is left out, and the record lists it as not run, saying it runs with
    --run-packaging, and the run stays complete; with --run-packaging it runs."""
    source = """
        import pytest
        @pytest.mark.component("rope")
        def test_runs():
            '''Always.'''
        @pytest.mark.packaging
        @pytest.mark.component("tooling.packaging")
        def test_builds_a_wheel():
            '''Only when asked.'''
    """
    out = tmp_path / "outcomes.json"
    suite(source, "--outcomes", str(out)).assert_outcomes(passed=1)
    data = json.loads(out.read_text())
    entry = next(e for test, e in data["tests"].items() if test.endswith("test_builds_a_wheel"))
    assert entry["outcome"] == "skipped" and entry["skip_reason"].startswith("runs with --run-packaging only")
    assert entry["components"] == ["tooling.packaging"] and entry["doc"] == "Only when asked." and data["complete"]
    suite(source, "--outcomes", str(out), "--run-packaging").assert_outcomes(passed=2)
    assert all(e["outcome"] == "passed" for e in json.loads(out.read_text())["tests"].values())


def test_under_xdist_the_workers_hand_the_tests_left_out_until_asked_to_the_recording_controller():
    """xdist's controller never collects: each worker puts the tests it left out in its workeroutput, and the
    controller's recorder takes them from every worker that goes down, once each."""
    from types import SimpleNamespace

    from nanochat_verify.plugin import record, selection
    from nanochat_verify.runrecord import RunRecord
    entry = ("tests/test_packaging.py::test_x", ("tooling.packaging",), "Builds.", selection.OPT_IN)
    worker = SimpleNamespace(config=SimpleNamespace(workeroutput={}, stash={selection.LEFT_OUT_KEY: [entry]}))
    selection.pytest_sessionfinish(worker)
    assert worker.config.workeroutput["nanochat_verify_left_out"] == [entry]
    recorder = record.OutcomeRecorder.__new__(record.OutcomeRecorder)
    recorder.config, recorder.left_out, recorder.record = SimpleNamespace(stash={}), {}, RunRecord("r", False, [], {})
    for _ in range(2):  # two workers, each with the same collection
        recorder.pytest_testnodedown(SimpleNamespace(workeroutput=worker.config.workeroutput), None)
    recorder.record_left_out()
    outcome = recorder.record.tests["tests/test_packaging.py::test_x"]
    assert (outcome.outcome, outcome.components, outcome.skip_reason) == ("skipped", ("tooling.packaging",),
                                                                          selection.OPT_IN)
    assert len(recorder.record.tests) == 1


def test_the_plugins_own_deselection_keeps_a_run_complete_and_a_users_does_not(suite, tmp_path):
    """Tests the plugin leaves out by design (tooling, under another implementation) do not make a run
    incomplete; a --deselect of the user's does, and the outcomes say which option did it."""
    out = tmp_path / "outcomes.json"
    source = """
        import pytest
        @pytest.mark.component("rope")
        def test_contract(impl):
            pass
        @pytest.mark.component("rope")
        def test_other(impl):
            pass
        @pytest.mark.tooling
        @pytest.mark.component("tooling.tracer")
        def test_tool():
            pass
    """
    suite(source, f"--gpt-impl={REFERENCE}", f"--outcomes={out}").assert_outcomes(passed=2, deselected=1)
    data = json.loads(out.read_text())
    assert data["complete"] is True and data["incomplete"] == []
    suite(source, "--deselect=test_sample.py::test_other", f"--outcomes={out}")
    data = json.loads(out.read_text())
    assert data["complete"] is False and data["incomplete"] == ["--deselect left out test_sample.py::test_other"]


@pytest.mark.parametrize("args, message", [
    (["--prioritize-component", "nope"], "--prioritize-component 'nope': unknown component ID 'nope'"),
    (["--outcomes={tmp}/no/such/folder/o.json"], "does not exist"),
    (["--outcomes={tmp}"], "is a directory"),
], ids=["unknown-component-to-prioritize", "outcomes-in-a-missing-folder", "outcomes-is-a-directory"])
def test_options_naming_nothing_usable_are_usage_errors(suite, tmp_path, args, message):
    """A bad --prioritize-component or --outcomes stops the run with a usage error naming it, not an INTERNALERROR."""
    result = suite("", *[a.replace("{tmp}", str(tmp_path)) for a in args])
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert message.replace("{tmp}", str(tmp_path)) in result.stderr.str() and "INTERNALERROR" not in result.stderr.str()


def test_prioritize_component_runs_that_components_tests_first(suite):
    """--prioritize-component KEY runs KEY's tests first, then its row's, then the oracle and validation
    tests, then the rest, keeping the order within each group."""
    result = suite("""
        import pytest
        @pytest.mark.component("loss")
        def test_a(): pass
        @pytest.mark.component("contract.validation")
        def test_b(): pass
        @pytest.mark.component("attention.rope")
        def test_c(): pass
        @pytest.mark.component("contract.oracle")
        def test_d(): pass
        @pytest.mark.component("attention.qk_norm")
        def test_e(): pass
        @pytest.mark.component("mlp")
        def test_f(): pass
    """, "--prioritize-component", "attention.qk_norm", "-v")
    lines = [line for line in result.outlines if "::test_" in line and "PASSED" in line]
    assert [line.split("::")[1].split()[0] for line in lines] == ["test_e", "test_c", "test_b", "test_d",
                                                                  "test_a", "test_f"]


@pytest.mark.parametrize("wrong, got", [
    (lambda logits: logits[..., :-1], r"\(2, 16, 63\)"),
    (lambda logits: logits.flatten(0, 1), r"\(32, 64\)"),
    (lambda logits: None, "NoneType"),
], ids=["one-column-short", "flattened", "nothing"])
def test_a_forward_that_returns_the_wrong_shape_fails_naming_the_contract(make_model, config, idx, wrong, got):
    """Every model the fixtures build checks what forward returns: an implementation giving anything but
    (B, T, vocab_size) logits fails with that sentence, before a test can trip over it (IndexError: Target 63...)."""
    model = make_model(config)
    right = type(model).forward
    model.forward = types.MethodType(lambda self, *args, **kwargs: wrong(right(self, *args, **kwargs)), model)
    with pytest.raises(AssertionError, match=r"forward must return \(B, T, vocab_size\) logits: "
                                             rf"expected \(2, 16, 64\), got {got}"):
        torch.nn.functional.cross_entropy(model(idx).flatten(0, 1), idx.flatten())


def test_a_forward_that_returns_the_logits_in_a_tuple_is_an_interface_difference(make_model, config, idx):
    """Logits returned first in a tuple (a fork that adds outputs) are another return convention: the fixtures say
    so once, as an interface difference, instead of failing every test that reads logits."""
    from nanochat_verify.contract import InterfaceDiffers
    model = make_model(config)
    right = type(model).forward
    model.forward = types.MethodType(lambda self, *args, **kwargs: (right(self, *args, **kwargs), None), model)
    with pytest.raises(InterfaceDiffers, match="forward returns a tuple of 2 with the logits first"):
        model(idx)
