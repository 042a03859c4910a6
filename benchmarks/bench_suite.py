"""
How long the test suite takes, and that it passes the same way serially, with two xdist workers
and in random order. Speed is measured here, never by a timed assertion inside a test.

    python benchmarks/bench_suite.py            # 2 repetitions of each mode
    python benchmarks/bench_suite.py --repeat 3 --json /tmp/suite.json

Modes: `pytest -q` as a user runs it (line coverage on), `pytest -q -n 2`, and, when pytest-randomly
is installed (the test extra has it; the suite loads it only when asked), `pytest -q -p randomly` with
a few seeds. Each run writes its outcomes to a temporary file; the script checks that every mode had
the same set of passing tests.

Machines differ by several times in speed: the script first times a fixed pure-Python loop (10 million
additions) and prints it, so that suite times from two machines can be compared.
"""

import argparse
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


RUN_LIMIT = 1800  # seconds: a suite that hangs ends the benchmark instead of the machine's patience


def run(args, tmp, name):
    outcomes = Path(tmp) / f"{name}.json"
    env = dict(os.environ, COVERAGE_FILE=str(Path(tmp) / f".coverage.{name}"))
    started = time.perf_counter()
    try:
        proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                               f"--outcomes={outcomes}", *args], cwd=ROOT, env=env, capture_output=True, text=True,
                              timeout=RUN_LIMIT)
    except subprocess.TimeoutExpired:
        sys.exit(f"{name}: the suite ran longer than {RUN_LIMIT} s and was stopped")
    seconds = time.perf_counter() - started
    data = json.loads(outcomes.read_text())
    if not data.get("complete"):
        sys.exit(f"{name}: not a complete run of the suite ({'; '.join(data.get('incomplete', []))})")
    counts = {}
    for test in data["tests"].values():
        counts[test["outcome"]] = counts.get(test["outcome"], 0) + 1
    passed = {nodeid for nodeid, t in data["tests"].items() if t["outcome"] == "passed"}
    return seconds, proc.returncode, counts, passed


def calibrate():
    """Seconds for a fixed pure-Python loop: the machine's speed, to compare suite times across machines."""
    started = time.perf_counter()
    total = 0
    for i in range(10_000_000):
        total += i
    return time.perf_counter() - started


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    modes = {"serial": ["-p", "no:randomly"], "xdist -n 2": ["-p", "no:randomly", "-n", "2"]}
    if importlib.util.find_spec("pytest_randomly"):
        for seed in (1, 2, 3):
            modes[f"random order (seed {seed})"] = ["-p", "randomly", f"--randomly-seed={seed}"]
    calibration = calibrate()
    print(f"calibration: 10 million Python additions in {calibration:.2f} s (a 2024 laptop core: about 0.5 s)")
    results, reference = {"calibration_s": calibration}, None
    with tempfile.TemporaryDirectory() as tmp:
        for mode, extra in modes.items():
            times = []
            for i in range(args.repeat if not mode.startswith("random") else 1):
                seconds, code, counts, passed = run(extra, tmp, f"{len(results)}-{i}")
                times.append(seconds)
                reference = reference if reference is not None else passed
                same = passed == reference
                print(f"{mode:28s} run {i + 1}: {seconds:6.1f} s  exit {code}  {counts}  same passing set: {same}",
                      flush=True)
                if code != 0 or not same:
                    sys.exit(f"{mode}: the suite did not pass the same way (exit {code})")
            results[mode] = {"median_s": statistics.median(times), "runs_s": times, "tests": sum(counts.values())}
    print()
    for mode, r in results.items():
        if mode == "calibration_s":
            continue
        print(f"{mode:28s} median {r['median_s']:6.1f} s over {len(r['runs_s'])} run(s), {r['tests']} tests")
    print(f"cpus: {os.cpu_count()}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
