"""The plugin's records of runs (nanochat_verify/records.py, plugin/runs.py): each run that records its outcomes
keeps its record and its line coverage in a folder of its own, only a complete run replaces the last-run file,
and a checkout that cannot be written keeps its records in the temporary directory, saying so in one line.

The runs use a pure-Python stand-in implementation and two-test suites, so that pytest starts in well under a
second (no torch)."""

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from nanochat_verify import records
from nanochat_verify.fingerprint import file_sha256

pytestmark = [pytest.mark.tooling, pytest.mark.component("tooling.coverage")]

STUB_IMPL = """
class GPTConfig:
    pass


class GPT:
    pass


def norm(x):
    return x


def apply_rotary_emb(x, cos, sin):
    return x
"""

MEASURED = """
def first():
    return 1


def second():
    return 2
"""
SECOND_BODY = MEASURED.splitlines().index("    return 2") + 1  # run only by a run started with SECOND=1

HEADER = """
import os
import time
from pathlib import Path

import pytest

from suite import measured
"""

TEST_A = HEADER + """

@pytest.mark.component("rope")
def test_a(impl):
    measured.first()
    # a run started with GATE waits here (having said so) until the gate opens: another run happens meanwhile
    gate = os.environ.get("GATE")
    if gate:
        Path(gate + ".reached").touch()
        deadline = time.monotonic() + 60
        while not Path(gate).exists() and time.monotonic() < deadline:
            time.sleep(0.02)
"""

TEST_B = HEADER + """

@pytest.mark.component("rmsnorm")
def test_b(impl):
    (measured.second if os.environ.get("SECOND") else measured.first)()
"""


def make_project(root, coverage=True):
    """A checkout with the stand-in implementation as its nanochat/gpt.py and a suite of two files."""
    (root / "nanochat").mkdir(parents=True)
    (root / "nanochat" / "__init__.py").write_text("")
    (root / "nanochat" / "gpt.py").write_text(STUB_IMPL)
    (root / "suite").mkdir()
    (root / "suite" / "__init__.py").write_text("")
    (root / "suite" / "measured.py").write_text(textwrap.dedent(MEASURED))
    (root / "suite" / "test_a.py").write_text(TEST_A)
    (root / "suite" / "test_b.py").write_text(TEST_B)
    cov = ', "--cov=suite.measured", "--cov-context=test", "--cov-report="' if coverage else ""
    (root / "pyproject.toml").write_text(textwrap.dedent(f"""
        [tool.pytest.ini_options]
        testpaths = ["suite"]
        addopts = ["-p", "nanochat_verify.plugin", "-p", "no:cacheprovider", "-p", "no:randomly",
                   "-p", "no:hypothesispytest", "-p", "no:xdist", "--outcomes=.nanochat-verify/outcomes.json"{cov}]
    """))
    return root


def pytest_command(*args):
    return [sys.executable, "-m", "pytest", "-q", *args]


def clean_env(**extra):
    env = {k: v for k, v in os.environ.items() if k not in ("COVERAGE_FILE", "HYPOTHESIS_STORAGE_DIRECTORY")}
    return {**env, **extra}


def covered_lines(data_file, source):
    import coverage
    data = coverage.CoverageData(basename=str(data_file))
    data.read()
    return set(data.lines(next(f for f in data.measured_files() if Path(f).name == source.name)) or ())


def test_two_runs_in_one_checkout_keep_their_own_coverage_data_and_the_complete_one_is_published(tmp_path):
    """A whole-suite run, and `pytest suite/test_b.py` run while the first is still testing (the issue's two
    runs): neither breaks the other, each record names its own coverage data with its hash, the whole run's
    data holds none of the other run's lines, and the last-run file is the whole run's."""
    root = make_project(tmp_path / "project")
    gate = tmp_path / "gate"
    first = subprocess.Popen(pytest_command(), cwd=root, env=clean_env(GATE=str(gate)), stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 60
        while not Path(f"{gate}.reached").exists() and first.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        second = subprocess.run(pytest_command("suite/test_b.py"), cwd=root, env=clean_env(SECOND="1"),
                                capture_output=True, text=True, timeout=120)
    finally:
        gate.touch()
        out, _ = first.communicate(timeout=120)
    assert second.returncode == 0 and first.returncode == 0, second.stdout + second.stderr + out
    last = json.loads((root / ".nanochat-verify" / "outcomes.json").read_text())
    assert last["complete"] and sorted(last["tests"]) == ["suite/test_a.py::test_a", "suite/test_b.py::test_b"]
    runs = {json.loads((f / "outcomes.json").read_text())["run_id"]: f for f in (root / ".nanochat-verify" / "runs").iterdir()}
    assert len(runs) == 2 and last["run_id"] in runs
    (narrow_id,) = set(runs) - {last["run_id"]}
    narrow = json.loads((runs[narrow_id] / "outcomes.json").read_text())
    assert not narrow["complete"] and list(narrow["tests"]) == ["suite/test_b.py::test_b"]
    measured = root / "suite" / "measured.py"
    for record, has_second in ((last, False), (narrow, True)):
        data_file = root / record["line_coverage"]["data_file"]
        assert data_file.parent.name == record["run_id"] and record["line_coverage"]["sha256"] == file_sha256(data_file)
        assert (SECOND_BODY in covered_lines(data_file, measured)) == has_second
    assert not (root / ".coverage").exists()


def run_inprocess(pytester, root, *args):
    pytester.chdir()
    return pytester.runpytest_inprocess(f"--rootdir={root}", "-c", str(root / "pyproject.toml"), *args)


def test_collect_only_or_a_narrower_run_never_replaces_the_last_complete_run(pytester):
    """`pytest --co` and `pytest suite/test_a.py` after a complete run write their own records; the last-run
    file stays, byte for byte, the complete run's (it used to be overwritten by either)."""
    root = make_project(pytester.path, coverage=False)
    assert run_inprocess(pytester, root).ret == 0
    last_run = root / ".nanochat-verify" / "outcomes.json"
    before = last_run.read_bytes()
    assert json.loads(before)["complete"]
    assert run_inprocess(pytester, root, "--collect-only").ret == 0
    assert run_inprocess(pytester, root, str(root / "suite" / "test_a.py")).ret == 0
    assert last_run.read_bytes() == before
    newest = json.loads(records.newest_run_record(root).read_text())
    assert not newest["complete"] and newest["run_id"] != json.loads(before)["run_id"]


def test_a_checkout_that_cannot_be_written_keeps_its_records_in_the_temp_dir_and_says_so_once(pytester, tmp_path,
                                                                                            monkeypatch):
    """A read-only checkout (write access refused everywhere in it) runs its suite: the run's records go to a
    folder of the temporary directory, one line says where, nothing is written into the checkout, and the report
    finds the run there."""
    root = make_project(pytester.path / "checkout", coverage=False)
    monkeypatch.setattr(records.tempfile, "tempdir", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    access = os.access

    def read_only(path, mode, *args, **kwargs):
        inside = Path(path).resolve() == root.resolve() or root.resolve() in Path(path).resolve().parents
        return False if inside and mode & os.W_OK else access(path, mode, *args, **kwargs)
    monkeypatch.setattr(os, "access", read_only)
    before = sorted(p.relative_to(root) for p in root.rglob("*") if "__pycache__" not in p.parts)
    result = run_inprocess(pytester, root)
    assert result.ret == 0, result.stdout.str()
    fallback = records.fallback_dir(root)
    header = ("nanochat-verify: implementation", "nanochat-verify: architecture", "nanochat-verify: engine")  # every header
    lines = [line for line in result.outlines + result.errlines
             if line.startswith("nanochat-verify:") and not line.startswith(header)]
    assert len(lines) == 1 and "cannot be written" in lines[0] and str(fallback) in lines[0], lines
    assert sorted(p.relative_to(root) for p in root.rglob("*") if "__pycache__" not in p.parts) == before
    assert json.loads((fallback / "outcomes.json").read_text())["complete"]
    assert records.last_run_file(root) == fallback / "outcomes.json"


def test_an_outcomes_file_that_cannot_be_written_is_one_usage_error_line(pytester, monkeypatch):
    """`--outcomes PATH` in a folder that cannot be written stops the run with one line naming it, not an
    INTERNALERROR when the record is first written."""
    root = make_project(pytester.path, coverage=False)
    target = root / "readonly"
    target.mkdir()
    access = os.access
    monkeypatch.setattr(os, "access", lambda path, mode, *a, **k: Path(path) != target and access(path, mode, *a, **k))
    result = run_inprocess(pytester, root, f"--outcomes={target / 'o.json'}")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert f"--outcomes {target / 'o.json'}: cannot be written" in result.stderr.str()
    assert "INTERNALERROR" not in result.stdout.str() + result.stderr.str()


def test_pruning_keeps_the_newest_runs_the_last_complete_one_and_any_run_still_going(tmp_path):
    """Old run folders are removed, but never the `keep` newest, the one the last-run file names, nor one whose
    run still holds its lock."""
    kept = records.Records(tmp_path / "records")
    folders = []
    for number in range(6):
        folder = records.RunFolder(kept, f"run{number}").create()
        folder.release()
        os.utime(folder.path, (1000 + number, 1000 + number))
        folders.append(folder)
    live = records.RunFolder(kept, "live").create()
    os.utime(live.path, (999, 999))
    records.publish(json.dumps({"line_coverage": {"data_file": str(folders[1].coverage)}}), kept.last_run)
    records.prune(kept, keep=2)
    assert sorted(p.name for p in (kept.folder / "runs").iterdir()) == ["live", "run1", "run4", "run5"]
    live.release()
    records.prune(kept, keep=2)
    assert sorted(p.name for p in (kept.folder / "runs").iterdir()) == ["run1", "run4", "run5"]
