"""
Runs the suite on real nanochat snapshots (../shared/upstream/nanochat-<commit>), as a user would, with no card
named: each must find its own card, and fail exactly its recorded findings (tests/findings/nanochat-<commit>.txt,
where it has any). A snapshot that cannot be imported here must be refused in one line naming what it needs.

    python maintenance/snapshots.py              # the handful CI runs, one per era of the architecture
    python maintenance/snapshots.py --all        # every snapshot beside the checkout
    python maintenance/snapshots.py a825e63 ...  # these

One line per snapshot; exit 1 if any snapshot does not behave so.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
UPSTREAM = ROOT.parent / "shared" / "upstream"
FINDINGS = ROOT / "tests" / "findings"

# one per era: (commit, what it covers)
IN_CI = [
    ("3a5e0bc", "the first commit: wte cast to bfloat16 in __init__, every float32 forward fails (one finding)"),
    ("a088b7a", "the seed: bf16 logits, the resize_ cache, top_k=0, the engine's first token"),
    ("aa530cd", "residual and x0 lambdas, a padded vocabulary; estimate_flops counts the lambdas"),
    ("e3f58b8", "the first value-embedding experiment ([replaced], an extra), windows, the engine's bf16 cache"),
    ("59e36cc", "gated value embeddings, a bigram-embedding extra, the decode path ignoring the window"),
    ("a825e63", "smear and backout, init_weights leaving their parameters unset"),
    ("6ed7d1d", "softcap 15, RoPE base 100,000, QK gain 1.15, windows of a third: no finding"),
]
# snapshots that need what this machine has not: (commit, the module the one line names)
NOT_IMPORTABLE = {"2ff7d51": "kernels", "fbc1484": "kernels", "8203efa": "nanochat.flash_attention"}


def run(commit, workers):
    """(ok, one line) for the suite on one snapshot."""
    checkout = UPSTREAM / f"nanochat-{commit}"
    findings = FINDINGS / f"nanochat-{commit}.txt"
    with tempfile.TemporaryDirectory() as tmp:
        outcomes = Path(tmp) / "outcomes.json"
        args = [sys.executable, "-m", "pytest", "-q", "-p", "no:randomly", "-p", "no:cacheprovider", "--no-cov",
                f"--gpt-impl={checkout}", f"--outcomes={outcomes}", *(["-n", str(workers)] if workers > 1 else [])]
        if findings.is_file():
            args.append(f"--expect-failures={findings}")
        done = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, env={**os.environ, "NO_COLOR": "1"})
        lines = [line for line in (done.stdout + done.stderr).splitlines() if line.strip()]
        if commit in NOT_IMPORTABLE:
            needed = NOT_IMPORTABLE[commit]
            ok = done.returncode == 4 and len(lines) == 1 and repr(needed) in lines[0]
            return ok, f"refused in one line ({lines[0] if lines else 'nothing printed'})"
        record = json.loads(outcomes.read_text()) if outcomes.is_file() else {}
    card = record.get("architecture", {})
    found = card.get("name") == f"nanochat-{commit}"
    summary = next((line for line in reversed(lines) if " in " in line and ("passed" in line or "failed" in line)),
                   lines[-1] if lines else "nothing printed")
    expected = next((line for line in lines if "expected finding" in line), "")
    ok = done.returncode == 0 and found
    unexpected = [line.split(" ", 2)[1] for line in lines if line.startswith(("FAILED ", "ERROR "))]
    return ok, (f"card {card.get('name', '?')} ({card.get('how', 'no record')}); {summary.strip('= ')}"
                + (f"; {expected.strip('= ')}" if expected else "")
                + (f"; failed: {', '.join(unexpected)}" if unexpected and not ok else ""))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    p.add_argument("commits", nargs="*", help="snapshots to run (default: the handful CI runs)")
    p.add_argument("--all", action="store_true", help="every snapshot in ../shared/upstream")
    p.add_argument("-n", "--workers", type=int, default=2, help="pytest-xdist workers per run (default 2)")
    args = p.parse_args(argv)
    if not UPSTREAM.is_dir():
        p.error(f"no snapshots: {UPSTREAM} does not exist (the real nanochat beside the checkout)")
    if args.all:
        commits = sorted(d.name.removeprefix("nanochat-") for d in UPSTREAM.glob("nanochat-*") if d.is_dir())
    else:
        commits = args.commits or [c for c, _ in IN_CI] + sorted(NOT_IMPORTABLE)
    unknown = [c for c in commits if not (UPSTREAM / f"nanochat-{c}").is_dir()]
    if unknown:
        p.error(f"no snapshot {', '.join(unknown)} in {UPSTREAM}")
    failures = 0
    for commit in commits:
        ok, line = run(commit, args.workers)
        failures += not ok
        print(f"{'ok  ' if ok else 'FAIL'} {commit}: {line}", flush=True)
    print(f"{len(commits) - failures} of {len(commits)} snapshots as recorded")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
