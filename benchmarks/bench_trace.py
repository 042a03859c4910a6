"""
What does `python -m nanochat_verify.trace` cost?

1. The default command line (depth 4, 3 iterations), wall time of a fresh subprocess, interpreter
   start and imports included: the figure a person at a terminal waits for (goal: under 20 s on 2 cores).
2. Tracing overhead: one training step (forward, backward, AdamW step) inside `trace(model)` against the
   same step without it, on the same depth-4 model and one fixed batch. Steps alternate in ABBA order
   (traced, untraced, untraced, traced, ...) so that a slow spell of the machine hits both alike; the
   ratio of the medians decides (goal: at most 1.3). The per-section summary the command line
   computes once at the end is not part of a step and is timed on its own line.
3. The depth-20 model on the CPU: `--depth 20 --seq-len 64 --batch-size 1` as a subprocess, wall
   time and peak resident memory from os.wait4 (that child's own rusage). With the default
   vocabulary (nanochat's 65,536 tokens) this is the real 561M-parameter model (goal: within 16 GB).

    python benchmarks/bench_trace.py                  # everything, a few minutes on 2 cores
    python benchmarks/bench_trace.py --skip-depth20   # the quick part only
    python benchmarks/bench_trace.py --reps 40 --json /tmp/bench_trace.json

Exit status 0 when every goal is met, 1 otherwise.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # `python benchmarks/bench_trace.py` from a checkout
from nanochat_verify.trace import text as data  # noqa: E402
from nanochat_verify.trace.cli import parse_settings  # noqa: E402
from nanochat_verify.trace.hooks import trace  # noqa: E402
from nanochat_verify.trace.sections import summarise  # noqa: E402

DEFAULT_GOAL_S = 20.0
OVERHEAD_GOAL = 1.3
RSS_GOAL_GB = 16.0
DEPTH20 = ["--depth", "20", "--seq-len", "64", "--batch-size", "1"]


def run_cli(args, timeout):
    """Run the command line in a fresh interpreter: (wall seconds, peak RSS in GB, exit status)."""
    env = dict(os.environ, NO_COLOR="1")
    start = time.perf_counter()
    child = subprocess.Popen([sys.executable, "-m", "nanochat_verify.trace", *args], cwd=ROOT, env=env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    # wait4 returns this child's own resource usage; ru_maxrss is in KiB on Linux
    deadline = start + timeout
    while True:
        pid, status, usage = os.wait4(child.pid, os.WNOHANG)
        if pid:
            break
        if time.perf_counter() > deadline:
            child.kill()
            pid, status, usage = os.wait4(child.pid, 0)
            break
        time.sleep(0.05)
    wall = time.perf_counter() - start
    child.returncode = os.waitstatus_to_exitcode(status)
    if child.returncode:
        sys.stderr.write(child.stderr.read().decode(errors="replace"))
    return wall, usage.ru_maxrss / 2**20, child.returncode


def step_times(reps, warmup):
    """Median seconds of a traced and an untraced training step of the default model, and of the summary."""
    settings, impl, _ = parse_settings([])
    torch.manual_seed(settings.seed)
    model = impl.GPT(impl.GPTConfig(**settings.config))
    model.init_weights()
    optimizer = torch.optim.AdamW(model.parameters(), lr=settings.lr, betas=(0.9, 0.95), weight_decay=0.0,
                                  foreach=False)
    idx, targets = data.random_batch(data.tokens(), settings.batch_size, settings.config["sequence_len"],
                                     torch.Generator().manual_seed(0))

    def untraced():
        model(idx, targets).backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    def traced():
        with trace(model) as cache:
            model(idx, targets).backward()
        del cache
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    def timed(fn):
        start = time.perf_counter()
        fn()
        return time.perf_counter() - start

    for _ in range(warmup):
        traced()
        untraced()
    times = {"traced": [], "untraced": []}
    for r in range(reps):
        order = (traced, untraced) if r % 2 == 0 else (untraced, traced)  # ABBA
        for fn in order:
            times[fn.__name__].append(timed(fn))

    with trace(model) as cache:  # the one-off summary the command line adds after the last step
        model(idx, targets).backward()
    start = time.perf_counter()
    summarise(impl, model, cache, settings, settings.card)
    summary = time.perf_counter() - start
    optimizer.zero_grad(set_to_none=True)
    return statistics.median(times["traced"]), statistics.median(times["untraced"]), summary


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--reps", type=int, default=30, help="timed steps of each kind (default 30)")
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--cli-reps", type=int, default=3, help="runs of the default command line; the median counts")
    p.add_argument("--skip-depth20", action="store_true", help="leave out the two depth-20 runs")
    p.add_argument("--timeout", type=float, default=600, help="seconds allowed per command-line run")
    p.add_argument("--json", default=None, metavar="PATH")
    args = p.parse_args(argv)

    rows, ok = [], True

    def row(what, value, goal, met):
        nonlocal ok
        ok &= met
        rows.append((what, value, goal, "yes" if met else "NO"))
        print(f"  {what}: {value}", flush=True)

    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} CPUs, "
          f"load average {os.getloadavg()[0]:.2f}", flush=True)
    runs = [run_cli([], args.timeout) for _ in range(args.cli_reps)]
    wall = statistics.median(r[0] for r in runs)
    row(f"default CLI (depth 4, vocab 65,536, 3 iterations), wall, median of {len(runs)}", f"{wall:.2f} s",
        f"< {DEFAULT_GOAL_S:g} s", all(r[2] == 0 for r in runs) and wall < DEFAULT_GOAL_S)
    row("default CLI, peak RSS", f"{max(r[1] for r in runs):.2f} GB", "", True)
    traced, untraced, summary = step_times(args.reps, args.warmup)
    row("training step, untraced (median)", f"{untraced * 1e3:.1f} ms", "", True)
    row("training step, traced (median)", f"{traced * 1e3:.1f} ms", "", True)
    row("traced / untraced", f"{traced / untraced:.3f}", f"<= {OVERHEAD_GOAL}", traced / untraced <= OVERHEAD_GOAL)
    row("summary of the last iteration (once per run)", f"{summary * 1e3:.1f} ms", "", True)
    if not args.skip_depth20:
        for label, extra in (("depth 20 (561M)", []),):
            wall, rss, status = run_cli(DEPTH20 + extra, args.timeout)
            row(f"{label}, wall", f"{wall:.1f} s", "", status == 0)
            row(f"{label}, peak RSS", f"{rss:.2f} GB", f"< {RSS_GOAL_GB:g} GB", status == 0 and rss < RSS_GOAL_GB)

    print(f"load average at the end {os.getloadavg()[0]:.2f}")
    width = max(len(r[0]) for r in rows)
    print(f"\n{'measure':<{width}}  {'value':>12}  {'goal':>10}  met")
    for what, value, goal, met in rows:
        print(f"{what:<{width}}  {value:>12}  {goal:>10}  {met}")
    if args.json:
        Path(args.json).write_text(json.dumps([dict(zip(("measure", "value", "goal", "met"), r)) for r in rows],
                                              indent=1) + "\n")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
