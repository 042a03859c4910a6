"""The COVERAGE.md generator: status only from real outcomes, deterministic bytes, honest when a
component breaks, and a --check that prints a diff and the command that fixes it."""

import json
import os
import random
import re
import subprocess
import sys
from pathlib import Path

import pytest

from nanochat import components as table
from nanochat import coverage
from nanochat.coverage import FAILED, MISSING, PASSED, Outcome, subcomponent_status

pytestmark = [pytest.mark.component("tooling.coverage"), pytest.mark.tooling]
ROOT = Path(__file__).resolve().parent.parent


def result(outcome, *components, name="test_x"):
    return Outcome(f"tests/test_a.py::{name}", outcome, components, "A property.")


def all_passing():
    """One passing test per sub-component of every area."""
    return [result("passed", sub, name=f"test_{sub.replace('.', '_')}") for sub in table.SUBCOMPONENTS]


def write_outcomes(path, tests):
    path.write_text(json.dumps({
        "impl": "nanochat.gpt", "impl_path": "nanochat/gpt.py", "own_impl": True, "exitstatus": 0,
        "complete": True, "deselected": 0, "fingerprint": "", "tests": {
            t.nodeid: {"outcome": t.outcome, "components": list(t.components), "doc": t.doc} for t in tests}}))
    return path


def row(report, title):
    """The summary-table row of a component, as a list of cells."""
    line = next(line for line in report.splitlines() if line.startswith("| ") and f" {title} |" in line)
    return [cell.strip() for cell in line.strip("|").split("|")]


@pytest.mark.parametrize("outcomes, expected", [
    (["passed"], PASSED),
    (["passed", "skipped"], PASSED),
    (["passed", "failed"], FAILED),
    (["error", "passed"], FAILED),
    (["skipped"], MISSING),
    ([], MISSING),
])
def test_status_is_passed_only_when_every_test_that_ran_passed(outcomes, expected):
    """✅ needs >= 1 passed test and no failure; any failure or error is ❌; no tests or only skips is ⚠️."""
    assert subcomponent_status([result(o, "rope.rotary") for o in outcomes]) == expected


def test_report_does_not_depend_on_test_order():
    """Shuffling the outcomes (xdist, random order) gives the same bytes."""
    tests = all_passing() + [result("failed", "mlp.relu2", name="test_zz"), result("skipped", "loss", name="test_s")]
    first = coverage.render(coverage.Inputs(ROOT / "nanochat/gpt.py", True, list(tests)))
    random.Random(0).shuffle(tests)
    assert coverage.render(coverage.Inputs(ROOT / "nanochat/gpt.py", True, tests)) == first


def test_a_failed_test_marks_its_component_and_only_its_component():
    """One failing MLP test makes the MLP row ❌ and leaves every other row ✅."""
    tests = all_passing() + [result("failed", "mlp.relu2", name="test_broken")]
    report = coverage.render(coverage.Inputs(ROOT / "nanochat/gpt.py", True, tests))
    assert row(report, "MLP")[5] == FAILED
    for c in table.COMPONENTS:
        if c.key != "mlp":
            assert row(report, c.title)[5] == PASSED, c.title
    assert "| `tests/test_a.py::test_broken` | A property. | ❌ failed |" in report


def test_no_timestamps_or_timings_in_the_report():
    """The generated text holds no dates and no durations, so regeneration is byte-stable."""
    report = coverage.render(coverage.Inputs(ROOT / "nanochat/gpt.py", True, all_passing()))
    assert not re.search(r"\b(19|20)\d\d-\d\d-\d\d\b|\b\d\d?:\d\d\b", report)  # dates, clock times
    assert not re.search(r"\d(\.\d+)? ?(s|ms|sec|seconds)\b", report)  # durations


@pytest.mark.parametrize("tests, problem", [
    (all_passing() + [result("passed", "attention.qk_nrom", name="test_typo")], "unknown component ID 'attention.qk_nrom'"),
    ([t for t in all_passing() if "softmax" not in t.nodeid], "sub-component attention.softmax (Softmax) has no test"),
])
def test_unknown_ids_and_untested_subcomponents_fail_the_generator(tmp_path, capsys, tests, problem):
    """The generator exits non-zero naming the problem, instead of leaving a silent gap."""
    outcomes = write_outcomes(tmp_path / "o.json", tests)
    code = coverage.main(["--outcomes", str(outcomes), "--skip-mutation", "--output", str(tmp_path / "C.md")])
    assert code == 1
    assert problem in capsys.readouterr().err


def test_check_prints_a_diff_and_the_command_that_fixes_it(tmp_path, capsys):
    """--check on a stale file exits 1, shows a unified diff and the exact regeneration command."""
    outcomes = write_outcomes(tmp_path / "o.json", all_passing())
    out = tmp_path / "C.md"
    args = ["--outcomes", str(outcomes), "--skip-mutation", "--output", str(out)]
    assert coverage.main(args) == 0
    assert coverage.main(args + ["--check"]) == 0
    out.write_text(out.read_text().replace("| 1 | Token embeddings (wte) | 1 | 1 | 1 | ✅", "| 1 | Token embeddings (wte) | 1 | 1 | 1 | ❌"))
    capsys.readouterr()
    assert coverage.main(args + ["--check"]) == 1
    captured = capsys.readouterr()
    assert "-| 1 | Token embeddings (wte) | 1 | 1 | 1 | ❌" in captured.out
    assert "+| 1 | Token embeddings (wte) | 1 | 1 | 1 | ✅" in captured.out
    assert "Regenerate it with:\n\n    python -m nanochat.coverage\n" in captured.err


def test_prose_around_the_markers_is_kept(tmp_path):
    """Only the text between BEGIN and END is regenerated; hand-written prose around it survives."""
    outcomes = write_outcomes(tmp_path / "o.json", all_passing())
    out = tmp_path / "C.md"
    out.write_text(f"# My notes\n\nHand-written.\n\n{coverage.BEGIN}\nold\n{coverage.END}\n\nFooter.\n")
    coverage.main(["--outcomes", str(outcomes), "--skip-mutation", "--output", str(out)])
    text = out.read_text()
    assert text.startswith("# My notes\n\nHand-written.\n\n" + coverage.BEGIN)
    assert text.endswith(coverage.END + "\n\nFooter.\n") and "\nold\n" not in text


def test_code_references_follow_the_live_source(tmp_path):
    """Line references come from the AST of the file as it is now: insert lines and they move."""
    src = tmp_path / "m.py"
    src.write_text("def norm(x):\n    return x\n\n\nclass GPT:\n    def forward(self):\n        pass\n")
    assert coverage.code_locations(src) == {"norm": (1, 2), "GPT": (5, 7), "GPT.forward": (6, 7)}
    src.write_text("\n\n" + src.read_text())
    assert coverage.code_locations(src)["GPT.forward"] == (8, 9)


def test_a_stale_last_run_is_refused(tmp_path, monkeypatch, capsys):
    """--from-last-run refuses outcomes whose source fingerprint no longer matches the tree."""
    monkeypatch.setattr(coverage, "LAST_RUN", tmp_path)
    write_outcomes(tmp_path / "outcomes.json", all_passing())  # fingerprint "" matches nothing
    assert coverage.main(["--from-last-run", "--skip-mutation", "--output", str(tmp_path / "C.md")]) == 2
    assert "is stale: the sources changed since that pytest run" in capsys.readouterr().err


def test_breaking_the_softcap_fails_exactly_the_lm_head_row(tmp_path):
    """End to end: a copy of gpt.py with softcap 30 gets ❌ for the LM head and ✅ everywhere else,
    written to its own path while COVERAGE.md stays untouched."""
    source = (ROOT / "nanochat/gpt.py").read_text()
    assert source.count("LOGIT_SOFTCAP = 15.0") == 1
    broken = tmp_path / "gpt_softcap30.py"
    broken.write_text(source.replace("LOGIT_SOFTCAP = 15.0", "LOGIT_SOFTCAP = 30.0"))
    committed = (ROOT / "COVERAGE.md").read_bytes() if (ROOT / "COVERAGE.md").exists() else None
    report = tmp_path / "REPORT.md"
    proc = subprocess.run([sys.executable, "-m", "nanochat.coverage", f"--gpt-impl={broken}", "--output", str(report),
                           "--skip-mutation", "--no-line-coverage", "--", "-q", "-n", "0"],
                          cwd=ROOT, capture_output=True, text=True, timeout=300,
                          env=dict(os.environ, HYPOTHESIS_PROFILE="quick"))  # statuses, not search depth, matter here
    text = report.read_text()
    assert row(text, "Language modeling head")[5] == FAILED, proc.stderr[-2000:]
    for c in table.COMPONENTS:
        if c.key != "lm_head":
            assert row(text, c.title)[5] == PASSED, c.title
    assert f"Implementation under test: `{broken}`" in text
    assert ((ROOT / "COVERAGE.md").read_bytes() if committed is not None else None) == committed
