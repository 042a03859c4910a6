"""
Training-step throughput of nanochat.gpt.GPT against a plain-functions baseline of the same architecture.

The question this answers: does the readable, checked model in nanochat/gpt.py pay for its
readability with a slower path? It times one training step (forward + backward; the optimizer
step is timed too, but reported on its own line because both sides share it) on the CPU for a
small but realistic configuration, and compares it with a baseline written below as plain
functions over the *same* weight tensors: embedding lookup, F.rms_norm, half-split RoPE, QK norm,
F.scaled_dot_product_attention(is_causal=True, enable_gqa=True), ReLU², untied lm_head,
softcap 15 * tanh(x / 15), F.cross_entropy.

Before any timing it checks that the baseline *is* the same computation: with every weight random
(lm_head and the c_proj projections included, which init_weights() zeroes) the two losses must
agree within 1e-5 and the gradients within 1e-4 relative (with torch 2.13 on CPU both agree bit for
bit). Only then is the comparison fair.

Timing on a small, noisy machine:
  * a fixed thread count (torch.set_num_threads, printed), fixed seeds and one fixed batch;
  * warm-up rounds that are not recorded (allocator, oneDNN/MKL kernel selection);
  * model and baseline interleaved in every round, in ABBA order (A B, B A, A B, ...) so that
    neither always runs first, and slow spells of the machine hit both alike;
  * other processes (a test run next door) can slow a 2-core machine several-fold: the CPU they
    use is measured from /proc/stat during every step, and a round in which they took more than
    --busy-threshold (5%) of the machine, beyond the cores our threads leave free, is discarded;
    timing goes on until --rounds quiet rounds are in or --max-seconds have passed, and the run is
    declared inconclusive (exit 3) when too few quiet rounds were found;
  * median and interquartile range of the per-step times, and the per-round paired ratio
    t_model / t_baseline, whose median decides the verdict.

Run (from the repository root, with the venv active):
    python benchmarks/bench_train_step.py                      # defaults: under 2 minutes on 2 cores
    python benchmarks/bench_train_step.py --rounds 20 --json /tmp/train_step.json
    python benchmarks/bench_train_step.py --max-slowdown 0.10 --threads 1 --no-optimizer

Exit status: 0 when the model is at most --max-slowdown (default 0.05, i.e. 5%) slower than the
baseline, 1 when it is slower than that, 2 when the baseline does not reproduce the model's loss
(within 1e-5) and gradients, 3 when too few rounds ran on a quiet machine to tell (inconclusive).
"""

import argparse
import gc
import json
import math
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

# make `import nanochat` work when run as `python benchmarks/bench_train_step.py` from a checkout
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from nanochat.gpt import GPT, GPTConfig  # noqa: E402

LOSS_TOLERANCE = 1e-5  # |loss_model - loss_baseline| allowed (the brief's bar for a fair comparison)
GRAD_TOLERANCE = 1e-4  # max |g_model - g_baseline| / max |g_baseline| over every parameter


# ----------------------------------------------------------------------------------------------
# The baseline: the same architecture as plain functions, no modules, no input checks.

def baseline_rope_tables(seq_len, head_dim, base=10000.0):
    """cos/sin tables of shape (1, T, 1, D/2) in float32.

    The architecture keeps its tables in bfloat16, so the angles are rounded to bfloat16 here as
    well (otherwise the two sides would compute different numbers); they are then widened to
    float32 once, so every rotation below multiplies float32 by float32.
    """
    # 1 / base^(2i/D): written as a division, because base^(-2i/D) rounds differently in float32
    # and, after rounding to bfloat16, three table entries would differ by one unit in the last place
    inv_freq = 1.0 / base ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim)
    angles = torch.outer(torch.arange(seq_len, dtype=torch.float32), inv_freq)
    cos = angles.cos().bfloat16().float()
    sin = angles.sin().bfloat16().float()
    return cos[None, :, None, :], sin[None, :, None, :]


def baseline_rope(x, cos, sin):
    """Half-split rotary embedding on x of shape (B, T, H, D): dim i pairs with dim i + D/2."""
    half = x.size(-1) // 2
    x1, x2 = x[..., :half], x[..., half:]
    return torch.cat([x1 * cos + x2 * sin, x2 * cos - x1 * sin], dim=-1)


def baseline_loss(w, idx, targets, cfg, cos, sin):
    """Mean cross-entropy of the GPT on (idx, targets), computed from the weight dict `w`."""
    B, T = idx.shape
    C, H, Hkv, D = cfg.n_embd, cfg.n_head, cfg.n_kv_head, cfg.head_dim
    cos, sin = cos[:, :T], sin[:, :T]

    x = F.rms_norm(F.embedding(idx, w["wte"]), (C,))
    for layer in w["layers"]:
        # attention branch
        h = F.rms_norm(x, (C,))
        q = F.linear(h, layer["c_q"]).view(B, T, H, D)
        k = F.linear(h, layer["c_k"]).view(B, T, Hkv, D)
        v = F.linear(h, layer["c_v"]).view(B, T, Hkv, D)
        q = F.rms_norm(baseline_rope(q, cos, sin), (D,))  # RoPE, then QK norm
        k = F.rms_norm(baseline_rope(k, cos, sin), (D,))
        y = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2),
                                           is_causal=True, enable_gqa=True)
        x = x + F.linear(y.transpose(1, 2).reshape(B, T, C), layer["attn_proj"])
        # MLP branch
        h = F.rms_norm(x, (C,))
        x = x + F.linear(F.relu(F.linear(h, layer["c_fc"])).square(), layer["mlp_proj"])
    x = F.rms_norm(x, (C,))
    logits = F.linear(x, w["lm_head"])
    logits = 15.0 * torch.tanh(logits / 15.0)
    return F.cross_entropy(logits.view(-1, logits.size(-1)), targets.view(-1))


def weights_of(model):
    """The model's own parameter tensors (not copies), arranged for baseline_loss."""
    return {
        "wte": model.transformer.wte.weight,
        "lm_head": model.lm_head.weight,
        "layers": [
            {
                "c_q": b.attn.c_q.weight, "c_k": b.attn.c_k.weight, "c_v": b.attn.c_v.weight,
                "attn_proj": b.attn.c_proj.weight,
                "c_fc": b.mlp.c_fc.weight, "mlp_proj": b.mlp.c_proj.weight,
            }
            for b in model.transformer.h
        ],
    }


# ----------------------------------------------------------------------------------------------
# Fairness check and timing

def randomize_weights(model, seed):
    """Give every weight a nonzero random value, so the loss and every gradient say something."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            fan_in = p.shape[-1]
            p.copy_(torch.randn(p.shape, generator=gen) / math.sqrt(fan_in))
        model.transformer.wte.weight.mul_(math.sqrt(model.config.n_embd))  # embedding ~ N(0, 1)


def check_same_computation(step_fns, params):
    """Run both training steps once; return (loss_model, loss_baseline, max relative grad diff)."""
    results = {}
    for name, fn in step_fns.items():
        for p in params:
            p.grad = None
        loss = fn()
        results[name] = (loss.item(), [p.grad.clone() for p in params])
    (lm, gm), (lb, gb) = results["model"], results["baseline"]
    grad_rel = max(((a - b).abs().max() / b.abs().max().clamp_min(1e-30)).item() for a, b in zip(gm, gb))
    return lm, lb, grad_rel


def span(lo, hi, decimals):
    """An interquartile range as text, e.g. '[612.3, 640.1]'."""
    return f"[{lo:.{decimals}f}, {hi:.{decimals}f}]"


class OtherLoadMeter:
    """How much of the machine's CPU *other* processes used over an interval (Linux /proc/stat).

    On a 2-core machine a test run or a build next door can slow a step several-fold (torch's two
    threads then wait on each other), so a step measured under such load says nothing about the
    code. The busy time of the whole machine minus our own process's CPU time is the others' share.
    Where /proc/stat does not exist the meter reports None and no round is ever discarded.
    """

    def __init__(self):
        self.ticks_per_s = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
        self.start()

    def _machine_busy_s(self):
        try:
            with open("/proc/stat") as f:
                fields = [int(v) for v in f.readline().split()[1:]]
        except (OSError, ValueError):
            return None
        idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
        # user nice system idle iowait irq softirq steal; guest time is already inside user time
        return (sum(fields[:8]) - idle) / self.ticks_per_s

    def start(self):
        t = os.times()
        self.busy0, self.own0, self.wall0 = self._machine_busy_s(), t.user + t.system, time.perf_counter()

    def others_fraction(self):
        """Share of all cores' capacity that other processes used since start(), or None."""
        busy = self._machine_busy_s()
        if busy is None or self.busy0 is None:
            return None
        t = os.times()
        others = (busy - self.busy0) - (t.user + t.system - self.own0)
        return max(0.0, others) / ((time.perf_counter() - self.wall0) * os.cpu_count())


def quartiles(values):
    """(first quartile, median, third quartile) of a list of numbers."""
    if len(values) < 2:  # statistics.quantiles needs two points
        return values[0], values[0], values[0]
    q1, q2, q3 = statistics.quantiles(values, n=4, method="inclusive")
    return q1, q2, q3


def run_timing(step_fns, params, optimizer, rounds, warmup, max_seconds, busy_threshold):
    """Interleaved timing until `rounds` quiet rounds are recorded or `max_seconds` have passed.

    Every round runs one model step and one baseline step, the order alternating (ABBA). A round
    in which other processes took more than `busy_threshold` of the machine's CPU during either
    step, beyond the cores our threads leave free (with 1 thread on 2 cores the other core is
    theirs), is kept but marked busy. Returns a list of dicts, one per timed round:
    {"model": s, "baseline": s, "optimizer": [s, s] or [], "model_first": bool, "others": fraction, "busy": bool}.
    """
    names = ["model", "baseline"]
    meter = OtherLoadMeter()
    cores = os.cpu_count()
    spare = max(0, cores - torch.get_num_threads()) / cores  # share of the machine we do not use
    records = []

    def one_step(name):
        for p in params:
            p.grad = None
        meter.start()
        t0 = time.perf_counter()
        step_fns[name]()  # forward + backward; backward has run when this returns
        t1 = time.perf_counter()
        t_opt = None
        if optimizer is not None:
            optimizer.step()
            t_opt = time.perf_counter() - t1
        return t1 - t0, t_opt, meter.others_fraction()

    for _ in range(warmup):
        for n in names:
            one_step(n)
    t_start = time.perf_counter()
    quiet = 0
    r = 0
    while quiet < rounds and time.perf_counter() - t_start < max_seconds:
        order = names if r % 2 == 0 else names[::-1]  # ABBA: alternate who goes first
        rec = {"model_first": order[0] == "model", "optimizer": [], "others": 0.0}
        for n in order:
            t, t_opt, others = one_step(n)
            rec[n] = t
            if t_opt is not None:
                rec["optimizer"].append(t_opt)
            if others is not None:
                rec["others"] = max(rec["others"], others)
        rec["busy"] = rec["others"] > spare + busy_threshold
        quiet += not rec["busy"]
        records.append(rec)
        r += 1
    return records


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=30,
                    help="quiet timed rounds wanted, each one model + one baseline step (default 30)")
    ap.add_argument("--warmup", type=int, default=3, help="untimed rounds first (default 3)")
    ap.add_argument("--max-seconds", type=float, default=90.0,
                    help="stop timing after this long even if fewer quiet rounds were recorded (default 90)")
    ap.add_argument("--busy-threshold", type=float, default=0.05,
                    help="discard a round when other processes used more than this share of the "
                         "machine's CPU during it (default 0.05; 1 keeps every round)")
    ap.add_argument("--threads", type=int, default=os.cpu_count(), help="torch.set_num_threads (default: all cores)")
    ap.add_argument("--max-slowdown", type=float, default=0.05,
                    help="fail when median(t_model/t_baseline) > 1 + this (default 0.05)")
    ap.add_argument("--no-optimizer", action="store_true", help="skip the (shared, separately reported) AdamW step")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--seq-len", type=int, default=256)
    ap.add_argument("--seed", type=int, default=1337)
    ap.add_argument("--json", metavar="PATH", help="also write every number to this JSON file")
    args = ap.parse_args(argv)

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    cfg = GPTConfig(sequence_len=args.seq_len, vocab_size=8192, n_layer=4, n_head=4, n_kv_head=2, n_embd=256)
    B, T = args.batch, args.seq_len
    model = GPT(cfg)
    model.train()
    randomize_weights(model, args.seed)
    params = list(model.parameters())
    w = weights_of(model)
    cos, sin = baseline_rope_tables(T, cfg.head_dim)

    gen = torch.Generator().manual_seed(args.seed + 1)
    idx = torch.randint(0, cfg.vocab_size, (B, T), generator=gen)
    targets = torch.randint(0, cfg.vocab_size, (B, T), generator=gen)

    def model_step():
        loss = model(idx, targets)
        loss.backward()
        return loss

    def baseline_step():
        loss = baseline_loss(w, idx, targets, cfg, cos, sin)
        loss.backward()
        return loss

    step_fns = {"model": model_step, "baseline": baseline_step}

    # 1. fairness: the baseline must compute the same function (and the same gradients)
    loss_m, loss_b, grad_rel = check_same_computation(step_fns, params)
    same = abs(loss_m - loss_b) <= LOSS_TOLERANCE and grad_rel <= GRAD_TOLERANCE
    print(f"torch {torch.__version__}, {platform.processor() or platform.machine()}, "
          f"threads={torch.get_num_threads()} (of {os.cpu_count()} cores)")
    print(f"config: n_layer={cfg.n_layer} n_embd={cfg.n_embd} n_head={cfg.n_head} n_kv_head={cfg.n_kv_head} "
          f"vocab={cfg.vocab_size}  batch B={B} T={T} ({B * T} tokens/step), "
          f"{sum(p.numel() for p in params):,} parameters")
    print(f"check: loss model={loss_m:.8f} baseline={loss_b:.8f} |diff|={abs(loss_m - loss_b):.2e} "
          f"(tolerance {LOSS_TOLERANCE:g}), max relative grad diff={grad_rel:.2e} (tolerance {GRAD_TOLERANCE:g}) -> "
          f"{'same computation' if same else 'DIFFERENT'}")
    if not same:
        print("FAIL: the baseline does not reproduce the model's loss and gradients; "
              "the timing would not be a fair comparison")
        return 2

    # 2. timing
    optimizer = None if args.no_optimizer else torch.optim.AdamW(params, lr=1e-4, foreach=True)
    gc.collect()
    t_start = time.perf_counter()
    records = run_timing(step_fns, params, optimizer, args.rounds, args.warmup, args.max_seconds,
                         args.busy_threshold)
    elapsed = time.perf_counter() - t_start
    quiet = [rec for rec in records if not rec["busy"]]
    # With too few quiet rounds the statistics would rest on a handful of samples: use every
    # round then, and say loudly that the machine was busy.
    too_busy = len(quiet) < min(args.rounds, max(5, args.rounds // 3))
    used = records if too_busy else quiet
    times = {n: [rec[n] for rec in used] for n in ("model", "baseline")}
    opt_times = [t for rec in used for t in rec["optimizer"]]
    ratios = [rec["model"] / rec["baseline"] for rec in used]
    others_mean = statistics.fmean(rec["others"] for rec in records)

    tokens = B * T
    summary = {}
    for name, ts in times.items():
        q1, med, q3 = quartiles(ts)
        summary[name] = {
            "step_s_median": med, "step_s_q1": q1, "step_s_q3": q3,
            "tokens_per_s_median": tokens / med,
            # faster steps are more tokens/s, so the quartiles swap places
            "tokens_per_s_q1": tokens / q3, "tokens_per_s_q3": tokens / q1,
            "step_s_all": ts,
        }
    r1, ratio, r3 = quartiles(ratios)
    slowdown = ratio - 1.0
    ok = slowdown <= args.max_slowdown

    print(f"\n{len(records)} timed rounds (+{args.warmup} warm-up), interleaved ABBA, {elapsed:.1f}s; "
          f"{len(records) - len(quiet)} discarded as busy "
          f"(other processes on our cores > {args.busy_threshold:.0%} of the CPU), "
          f"statistics over {len(used)} rounds ({sum(r['model_first'] for r in used)} with the model first)")
    print(f"{'forward+backward':<18}{'median ms':>11}{'IQR ms':>19}{'tokens/s':>11}{'IQR tokens/s':>21}")
    for name in ("model", "baseline"):
        s = summary[name]
        print(f"{name:<18}{s['step_s_median'] * 1e3:>11.1f}{span(s['step_s_q1'] * 1e3, s['step_s_q3'] * 1e3, 1):>19}"
              f"{s['tokens_per_s_median']:>11.0f}{span(s['tokens_per_s_q1'], s['tokens_per_s_q3'], 0):>21}")
    opt_summary = None
    if opt_times:
        o1, om, o3 = quartiles(opt_times)
        opt_summary = {"step_s_median": om, "step_s_q1": o1, "step_s_q3": o3}
        print(f"{'AdamW step (shared)':<18}{om * 1e3:>11.1f}{span(o1 * 1e3, o3 * 1e3, 1):>19}"
              f"  -> full step, model: {tokens / (summary['model']['step_s_median'] + om):.0f} tokens/s")
    print(f"\nratio t_model/t_baseline (paired per round): median {ratio:.4f}, IQR [{r1:.4f}, {r3:.4f}]"
          f"  (ratio of medians {summary['model']['step_s_median'] / summary['baseline']['step_s_median']:.4f})")
    outcome = "INCONCLUSIVE (busy machine)" if too_busy else "PASS" if ok else "FAIL"
    verdict = f"{outcome}: model is {slowdown * 100:+.1f}% vs baseline (allowed +{args.max_slowdown * 100:.1f}%)"
    print(verdict)
    print(f"other processes used {others_mean:.0%} of the machine's CPU on average over all rounds")
    if too_busy:
        print(f"WARNING: only {len(quiet)} of {len(records)} rounds ran on a quiet machine; the numbers above use "
              f"every round and are unreliable: run again when the machine is idle")

    if args.json:
        record = {
            "torch": torch.__version__, "python": platform.python_version(), "threads": torch.get_num_threads(),
            "cpu_count": os.cpu_count(), "seed": args.seed, "rounds_wanted": args.rounds, "warmup": args.warmup,
            "config": {**vars(cfg), "batch": B, "tokens_per_step": tokens},
            "check": {"loss_model": loss_m, "loss_baseline": loss_b, "abs_diff": abs(loss_m - loss_b),
                      "tolerance": LOSS_TOLERANCE, "max_rel_grad_diff": grad_rel,
                      "grad_tolerance": GRAD_TOLERANCE},
            "forward_backward": summary, "optimizer_step": opt_summary,
            "ratio_median": ratio, "ratio_q1": r1, "ratio_q3": r3, "ratios_all": ratios,
            "max_slowdown": args.max_slowdown, "pass": ok, "elapsed_s": elapsed,
            "busy_threshold": args.busy_threshold, "rounds_recorded": len(records), "rounds_quiet": len(quiet),
            "rounds_used": len(used), "unreliable_busy_machine": too_busy,
            "other_processes_cpu_fraction_mean": others_mean, "rounds": records,
        }
        Path(args.json).write_text(json.dumps(record, indent=2))
        print(f"numbers written to {args.json}")
    if too_busy:
        return 3
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
