"""
python -m nanochat.trace: train a small GPT for a few iterations on the CPU and show every component
of the component table on that real computation, then the model-scaling analysis (561M target).

    python -m nanochat.trace                          # nanochat's depth 4 (36.7M), 3 iterations, ~10 s
    python -m nanochat.trace --vocab-size 256         # the same depth with a byte vocabulary, ~3 s
    python -m nanochat.trace --depth 20 --seq-len 64 --batch-size 1   # the real 561M model, ~11 GB
    python -m nanochat.trace --gpt-impl tests/reference_gpt.py --json trace.json --plot trace.png

What is shown is observed, not recomputed: nanochat/tracer.py hooks the model's own modules and wraps
the functions its forward calls, so any implementation of the contract can be traced. The few values
that are derived for display (ReLU before squaring, the attention weights, identity checks) say so.

The code is in three layers that never mix: `parse_settings` turns the command line into validated
`TraceSettings` (every bad option is one line on stderr and exit status 2, before any work);
`run_trace` trains and returns a `TraceResult` of plain numbers, lists and dicts (what --json
writes); `render` and `plot` only format a TraceResult.
"""

import argparse
import json
import math
import os
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from nanochat import data
from nanochat.components import BY_KEY
from nanochat.contract import DEFAULT_IMPL, ContractError, load_implementation
from nanochat.scaling import (NANOCHAT_VOCAB_SIZE, TARGET_DEPTH, build_on_meta, closed_form_counts, config_kwargs_for_depth,
                              measured_counts)
from nanochat.tracer import TensorStats, trace

DEFAULT_DEPTH = 4
DEFAULT_SEQ_LEN = 64
DEFAULT_BATCH_SIZE = 8
DEFAULT_ITERATIONS = 3
# AdamW's first steps move every weight by about lr, so a layer's output moves by about lr * fan_in:
# the default learning rate shrinks as 1/n_embd. 1e-2 at n_embd 256 (depth 4) makes the byte-level
# loss fall visibly within 3 iterations (5.55 -> 4.47 -> 3.32); the same rule gives 2e-3 at depth 20,
# where 1e-2 overshoots and the loss rises again by the third iteration.
LR_AT_256 = 1e-2


def default_lr(n_embd):
    return LR_AT_256 * 256 / n_embd

MASK_CORNER = 8  # the causal mask and attention weights are drawn for at most this many positions
PLOT_INSTALL_HINT = "pip install 'nanochat-verify[plot]' (or: pip install matplotlib)"


# ------------------------------------------------------------------------------------------------
# Settings: the command line, validated before any work


@dataclass(frozen=True)
class TraceSettings:
    gpt_impl: str
    config: dict  # GPTConfig keyword arguments
    batch_size: int = DEFAULT_BATCH_SIZE
    num_iterations: int = DEFAULT_ITERATIONS
    blocks: tuple = ()  # blocks shown in detail; () means the default (first two and last)
    lr: float = LR_AT_256
    seed: int = 0


class _OneLineParser(argparse.ArgumentParser):
    """argparse, except that an error is exactly one line on stderr (no usage block), exit status 2."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {' '.join(str(message).split())}\n")


def _positive_int(text):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text!r}")
    return value


def _positive_float(text):
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text!r}") from None
    if not (value > 0 and math.isfinite(value)):
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text!r}")
    return value


def build_parser():
    p = _OneLineParser(prog="nanochat.trace", description=__doc__.split("\n\n")[0].strip(),
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--depth", type=_positive_int, default=DEFAULT_DEPTH,
                   help="model depth; n_layer, n_embd and n_head follow nanochat's rule (default %(default)s)")
    p.add_argument("--vocab-size", type=_positive_int, default=None,
                   help=f"vocabulary size (default {NANOCHAT_VOCAB_SIZE:,}, nanochat's, so that --depth N is "
                        f"nanochat's depth-N model; the built-in text uses the first {data.VOCAB_SIZE} ids "
                        f"as bytes, and --vocab-size {data.VOCAB_SIZE} gives a much smaller, faster model)")
    p.add_argument("--n-kv-head", type=_positive_int, default=None,
                   help="key/value heads (default n_head); fewer gives grouped-query attention")
    p.add_argument("--seq-len", type=_positive_int, default=DEFAULT_SEQ_LEN,
                   help="tokens per sequence (default %(default)s)")
    p.add_argument("--batch-size", type=_positive_int, default=DEFAULT_BATCH_SIZE,
                   help="sequences per batch (default %(default)s)")
    p.add_argument("--num-iterations", type=_positive_int, default=DEFAULT_ITERATIONS,
                   help="training iterations, each traced (default %(default)s)")
    p.add_argument("--blocks", default=None, metavar="LIST",
                   help="blocks shown in detail: comma-separated indices (negative counts from the end) "
                        "or 'all' (default: the first two and the last)")
    p.add_argument("--lr", type=_positive_float, default=None,
                   help=f"AdamW learning rate (default {LR_AT_256:g} * 256 / n_embd: {LR_AT_256:g} at depth 4)")
    p.add_argument("--seed", type=int, default=0, help="seed for the weights and the batches (default 0)")
    p.add_argument("--gpt-impl", default=DEFAULT_IMPL, metavar="PATH_OR_MODULE",
                   help=f"contract implementation to trace: a .py path or a dotted module (default {DEFAULT_IMPL})")
    p.add_argument("--json", default=None, metavar="PATH",
                   help="also write the trace as JSON: every cached name with its stats, losses, scaling table")
    p.add_argument("--plot", default=None, metavar="PATH",
                   help=f"also write a PNG: attention pattern per head of a block, activation RMS per layer "
                        f"(needs matplotlib: {PLOT_INSTALL_HINT})")
    p.add_argument("--no-color", action="store_true",
                   help="plain text output (also when the NO_COLOR environment variable is set)")
    return p


def parse_settings(argv=None):
    """The validated settings, the loaded implementation and the parsed arguments; on a bad option,
    one line on stderr and SystemExit(2), before the model is built."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        impl = load_implementation(args.gpt_impl)
    except ContractError as e:
        parser.error(str(e))

    vocab_size = NANOCHAT_VOCAB_SIZE if args.vocab_size is None else args.vocab_size
    if vocab_size < data.VOCAB_SIZE:
        parser.error(f"--vocab-size {vocab_size} is too small: the byte-level text needs {data.VOCAB_SIZE} ids")
    if args.seq_len > data.max_sequence_len():
        parser.error(f"--seq-len {args.seq_len} is longer than the built-in text allows ({data.max_sequence_len()})")
    config = config_kwargs_for_depth(args.depth, vocab_size=vocab_size, sequence_len=args.seq_len)
    if args.n_kv_head is not None:
        config["n_kv_head"] = args.n_kv_head
    problem = _config_problem(args.depth, config)
    if problem:
        parser.error(problem)
    try:
        impl.GPTConfig(**config)  # the implementation may know more reasons to refuse
    except (ValueError, TypeError) as e:
        parser.error(f"the implementation refuses the configuration {config}: {e}")

    blocks = _parse_blocks(parser, args.blocks, config["n_layer"])
    for option, path in (("--json", args.json), ("--plot", args.plot)):
        if path is not None:
            problem = _unwritable(path)
            if problem:
                parser.error(f"{option} {path}: {problem}")
    if args.plot is not None:
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            parser.error(f"--plot needs matplotlib, which is not installed: {PLOT_INSTALL_HINT}")
    settings = TraceSettings(gpt_impl=args.gpt_impl, config=config, batch_size=args.batch_size,
                             num_iterations=args.num_iterations, blocks=blocks, seed=args.seed,
                             lr=default_lr(config["n_embd"]) if args.lr is None else args.lr)
    return settings, impl, args


def _config_problem(depth, c):
    """Why this configuration cannot be built, in terms of the options, or None (checked here because
    another implementation's GPTConfig need not validate anything)."""
    derived = f"--depth {depth} gives n_embd={c['n_embd']}, n_head={c['n_head']}"
    if c["n_embd"] % c["n_head"]:
        return f"{derived}, and n_embd is not divisible by n_head (head_dim = n_embd / n_head)"
    if c["n_head"] % c["n_kv_head"]:
        return (f"--n-kv-head {c['n_kv_head']} must divide n_head={c['n_head']} ({derived}): "
                f"each key/value head serves a whole group of query heads")
    head_dim = c["n_embd"] // c["n_head"]
    if head_dim % 2:
        return f"{derived}, so head_dim={head_dim} is odd: RoPE rotates pairs of dimensions, head_dim must be even"
    return None


def _parse_blocks(parser, text, n_layer):
    if text is None:
        return tuple(sorted({0, 1, n_layer - 1} & set(range(n_layer))))
    if text.strip() == "all":
        return tuple(range(n_layer))
    blocks = set()
    for part in text.split(","):
        try:
            i = int(part)
        except ValueError:
            parser.error(f"--blocks {text!r}: expected comma-separated block indices or 'all'")
        if not -n_layer <= i < n_layer:
            parser.error(f"--blocks {text!r}: block {i} does not exist (the model has {n_layer} blocks, 0..{n_layer - 1})")
        blocks.add(i % n_layer)
    return tuple(sorted(blocks))


def _unwritable(path):
    """Why a file cannot be written at `path`, or None. Checked up front so that a long run is not
    lost to a typo at the end; nothing is created."""
    p = Path(path)
    if p.is_dir():
        return "is a directory"
    parent = p.parent if str(p.parent) else Path(".")
    if not parent.is_dir():
        return f"the directory {str(parent)!r} does not exist"
    if not os.access(parent, os.W_OK | os.X_OK) or (p.exists() and not os.access(p, os.W_OK)):
        return "not writable"
    return None


# ------------------------------------------------------------------------------------------------
# The run: real training iterations, each traced; the result is plain data


@dataclass
class TraceResult:
    implementation: str
    settings: dict
    config: dict
    sample: str  # the first training sequence, decoded
    iterations: list  # one dict per iteration: loss, grad_norm, nonzero_grads, seconds
    activations: dict  # cached name -> TensorStats fields (+ derived flag), last iteration
    gradients: dict  # parameter name -> TensorStats fields + norm, last iteration
    sections: dict  # component key (nanochat.components) -> what that section shows
    plot: dict = field(default_factory=dict)  # attention pattern and RMS per layer, for --plot only

    @property
    def losses(self):
        return [it["loss"] for it in self.iterations]

    def to_json(self):
        out = asdict(self)
        del out["plot"]  # a (H, T, T) pattern is for the picture, not the record
        out["losses"] = self.losses
        return out


def run_trace(impl, settings, on_iteration=None):
    """Train impl.GPT for settings.num_iterations AdamW steps on the built-in text, tracing each
    forward and backward, and summarise the last traced iteration as a TraceResult.
    `on_iteration(record)` is called after each iteration (the progress bar)."""
    torch.manual_seed(settings.seed)
    config = impl.GPTConfig(**settings.config)
    model = impl.GPT(config)
    model.init_weights()  # the contract does not promise that the constructor initialises
    model.train()
    # foreach=False: no temporary copies of every state at once, which matters at 561M parameters
    optimizer = torch.optim.AdamW(model.parameters(), lr=settings.lr, betas=(0.9, 0.95), eps=1e-8,
                                  weight_decay=0.0, foreach=False)
    text = data.tokens()
    batches = torch.Generator().manual_seed(settings.seed)
    T = settings.config["sequence_len"]
    iterations, summary, sample = [], None, ""

    for number in range(1, settings.num_iterations + 1):
        idx, targets = data.random_batch(text, settings.batch_size, T, batches)
        if number == 1:
            sample = data.decode(idx[0].tolist())
        start = time.perf_counter()
        with trace(model) as cache:
            loss = model(idx, targets)
            loss.backward()
        record = _iteration_record(number, model, loss)
        summarising = time.perf_counter()
        if number == settings.num_iterations:
            # summarise before the step, while every tensor still belongs to this iteration
            summary = _summarise(impl, model, cache, settings)
        start += time.perf_counter() - summarising  # a step's time is the training, not the summary
        del cache  # it holds every gradient; at 561M parameters two sets would not fit well
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        record["seconds"] = time.perf_counter() - start
        iterations.append(record)
        if on_iteration is not None:
            on_iteration(record)

    summary["sections"]["loss"]["per_iteration"] = [it["loss"] for it in iterations]
    summary["sections"]["gradients"]["per_iteration"] = [
        {k: it[k] for k in ("iteration", "grad_norm", "nonzero_grads", "nonzero_grad_names")} for it in iterations]
    summary["sections"]["scaling"] = _scaling(impl, model)
    return TraceResult(
        implementation=f"{settings.gpt_impl} ({Path(impl.__file__).resolve()})",
        settings={k: v for k, v in asdict(settings).items() if k != "config"} | {"optimizer": "AdamW"},
        config=settings.config | {"head_dim": config.n_embd // config.n_head},
        sample=sample, iterations=iterations, **summary)


def _iteration_record(number, model, loss):
    names = [name for name, p in model.named_parameters() if p.grad is not None and bool(p.grad.any())]
    sq = sum(torch.linalg.vector_norm(p.grad.float()).item() ** 2 for p in model.parameters() if p.grad is not None)
    n_params = sum(1 for _ in model.parameters())
    return {"iteration": number, "loss": loss.item(), "grad_norm": math.sqrt(sq),
            "nonzero_grads": len(names), "parameters": n_params,
            # the names only while few are nonzero: at init, the zeroed lm_head blocks all the others
            "nonzero_grad_names": names if len(names) <= 3 else None}


def _stats(t):
    return asdict(TensorStats.of(t))


def _max_abs(a, b):
    return (a.double() - b.double()).abs().max().item()


def _summarise(impl, model, cache, settings):
    cfg = model.config
    L, H, Hkv = cfg.n_layer, cfg.n_head, cfg.n_kv_head
    blocks = settings.blocks or tuple(sorted({0, 1, L - 1} & set(range(L))))
    activations = {name: _stats(cache[name]) | {"derived": name in cache.derived} for name in cache}
    gradients = {name: _stats(g) | {"norm": torch.linalg.vector_norm(g.float()).item()}
                 for name, g in cache.grads.items()}
    attention = {i: _attention_facts(cache, i, H, Hkv) for i in blocks}
    sections = {
        "embedding": _embedding_section(model, cache),
        "rope": _rope_section(model, cache, blocks[0]),
        "block_stack": _block_stack_section(cache, L, blocks),
        "block": {"blocks": [_block_facts(cache, i) for i in blocks]},
        "attention": _attention_section(cache, cfg, attention),
        "rmsnorm": _rmsnorm_section(model, cache, L),
        "mlp": {"blocks": [_mlp_facts(cache, i) for i in blocks]},
        "final_norm": {"before": f"transformer.h.{L - 1}.output", "after": "lm_head.input"},
        "lm_head": _lm_head_section(model, cache),
        "loss": _loss_section(cache, cfg),
        "gradients": _gradient_section(cache, L),
        "scaling": None,  # filled in after training, from the model and the 561M target
    }
    plot_block = blocks[0]
    plot = {"block": plot_block, "pattern": attention[plot_block].pop("full_pattern"),
            "layer_rms": {key: [activations[f"transformer.h.{i}.{name}"]["rms"] for i in range(L)]
                          for key, name in (("block input", "input"), ("attention output", "attn.output"),
                                            ("MLP output", "mlp.output"), ("block output", "output"))}}
    for facts in attention.values():
        facts.pop("full_pattern", None)
    return {"activations": activations, "gradients": gradients, "sections": sections, "plot": plot}


def _embedding_section(model, cache):
    return {"wte_weight_shape": list(model.transformer.wte.weight.shape), "idx_shape": list(cache["idx"].shape),
            "before_norm": "transformer.wte.output",
            "after_norm": "transformer.h.0.input"}  # the normalised embedding is what block 0 receives


def _rope_section(model, cache, block):
    p = f"transformer.h.{block}.attn"
    q, q_rope = cache[f"{p}.q"], cache[f"{p}.q_rope"]
    facts = {
        "cos": _stats(model.cos), "sin": _stats(model.sin), "rotary_positions": model.cos.size(1),
        "block": block, "q": f"{p}.q", "q_rope": f"{p}.q_rope", "k": f"{p}.k", "k_rope": f"{p}.k_rope",
        # derived checks on the observed before/after pair
        "position0_unchanged": _max_abs(q[:, 0], q_rope[:, 0]),  # angle 0: cos 1, sin 0
        "length_change": (q_rope.double().norm(dim=-1) / q.double().norm(dim=-1).clamp_min(1e-30) - 1).abs().max().item(),
        "v_unrotated": None,
    }
    if f"{p}.sdpa_v" in cache and f"{p}.sdpa_v" not in cache.derived:
        # V as SDPA received it against V as projected: RoPE never touched it
        facts["v_unrotated"] = _max_abs(cache[f"{p}.sdpa_v"].transpose(1, 2), cache[f"{p}.v"])
    return facts


def _block_stack_section(cache, L, blocks):
    def rms(name):
        return cache.stats(name).rms if name in cache else None
    rows = [{"block": i, "detailed": i in blocks,
             "input_rms": rms(f"transformer.h.{i}.input"), "attn_output_rms": rms(f"transformer.h.{i}.attn.output"),
             "mlp_output_rms": rms(f"transformer.h.{i}.mlp.output"), "output_rms": rms(f"transformer.h.{i}.output"),
             "output_grad_rms": rms(f"transformer.h.{i}.output.grad"),
             "relu2_zero_fraction": cache.stats(f"transformer.h.{i}.mlp.act").zero_fraction}
            for i in range(L)]
    return {"n_layer": L, "detailed": list(blocks), "layers": rows}


def _block_facts(cache, i):
    p = f"transformer.h.{i}"
    x, a, m, y = (cache[f"{p}.{n}"] for n in ("input", "attn.output", "mlp.output", "output"))
    return {"block": i, "input": f"{p}.input", "attn_input": f"{p}.attn.input", "attn_output": f"{p}.attn.output",
            "mlp_input": f"{p}.mlp.input", "mlp_output": f"{p}.mlp.output", "output": f"{p}.output",
            # derived: the block's output is its input plus both branches, i.e. two residual adds
            "residual_identity_error": _max_abs(y, x + a + m)}


def _attention_facts(cache, i, H, Hkv):
    p = f"transformer.h.{i}.attn"
    pattern = cache.attention_pattern(i)  # derived, (B, H, T, T)
    v = cache[f"{p}.v"].float().transpose(1, 2).repeat_interleave(H // Hkv, dim=1)  # (B, H, T, D)
    out = cache[f"{p}.sdpa_out"].float()
    n = min(MASK_CORNER, pattern.size(-1))
    corner = pattern[0, 0, :n, :n]
    entropy = -torch.special.xlogy(pattern, pattern).sum(-1).mean(dim=(0, 2))  # per head, nats
    names = ("input", "q", "k", "v", "q_rope", "k_rope", "q_norm", "k_norm",
             "sdpa_q", "sdpa_k", "sdpa_v", "sdpa_out", "heads_concat", "output")
    return {
        "block": i, "names": {n_: f"{p}.{n_}" for n_ in names if f"{p}.{n_}" in cache},
        "sdpa_call": cache.attention_calls.get(p),  # None: attention computed without torch's SDPA
        "mask_corner": [[j <= r for j in range(n)] for r in range(n)],
        "pattern_corner": [[round(float(w), 4) for w in row] for row in corner],
        "softmax_row_sum_error": (pattern.sum(-1) - 1).abs().max().item(),
        "entropy_per_head": [round(e, 4) for e in entropy.tolist()],
        # derived weights times the observed V must give the observed attention output
        "pattern_reproduces_output": (pattern @ v - out).abs().max().item(),
        "full_pattern": pattern[0].tolist(),
    }


def _attention_section(cache, cfg, attention):
    H, Hkv, D, L = cfg.n_head, cfg.n_kv_head, cfg.n_embd // cfg.n_head, cfg.n_layer
    itemsize = cache["transformer.h.0.attn.k"].element_size()
    per_token = 2 * L * Hkv * D * itemsize  # keys and values of every layer
    per_token_mha = 2 * L * H * D * itemsize
    return {"n_head": H, "n_kv_head": Hkv, "head_dim": D, "group_size": H // Hkv,
            "kv_cache_bytes_per_token": per_token, "kv_cache_bytes_per_token_without_gqa": per_token_mha,
            "kv_cache_saving": per_token_mha / per_token,
            "kv_cache_bytes_at_sequence_len": per_token * cfg.sequence_len,
            "blocks": list(attention.values())}


def _rmsnorm_section(model, cache, L):
    def rms_range(names):
        values = [cache.stats(n).rms for n in names]
        return [min(values), max(values)]
    norm_params = [n for n, _ in model.named_parameters() if "norm" in n.lower() or ".ln" in n.lower()]
    return {"learnable_parameters": norm_params,
            "after_embedding": {"name": "transformer.h.0.input", "rms": rms_range(["transformer.h.0.input"])},
            "pre_attention": {"name": "transformer.h.*.attn.input",
                              "rms": rms_range([f"transformer.h.{i}.attn.input" for i in range(L)])},
            "pre_mlp": {"name": "transformer.h.*.mlp.input",
                        "rms": rms_range([f"transformer.h.{i}.mlp.input" for i in range(L)])},
            "final": {"name": "lm_head.input", "rms": rms_range(["lm_head.input"])}}


def _mlp_facts(cache, i):
    p = f"transformer.h.{i}.mlp"
    fc, act = cache[f"{p}.fc"], cache[f"{p}.act"]
    relu = fc.clamp(min=0)  # derived: ReLU before the squaring
    return {"block": i, "input": f"{p}.input", "fc": f"{p}.fc", "act": f"{p}.act", "output": f"{p}.output",
            "relu": _stats(relu), "relu_zero_fraction": (relu == 0).double().mean().item(),
            "relu2_zero_fraction": (act == 0).double().mean().item(),
            "relu2_error": _max_abs(act, relu.square())}  # derived check: act is ReLU(fc)²


def _lm_head_section(model, cache):
    raw, capped = cache["lm_head.output"], cache["logits"]
    return {"weight_shape": list(model.lm_head.weight.shape),
            "untied": model.lm_head.weight.data_ptr() != model.transformer.wte.weight.data_ptr(),
            "raw": "lm_head.output", "capped": "logits",
            "max_abs_raw": raw.abs().max().item(), "max_abs_capped": capped.abs().max().item(),
            # derived check of the documented soft cap against the observed pair
            "softcap_error": _max_abs(capped, 15 * torch.tanh(raw.double() / 15))}


def _loss_section(cache, cfg):
    loss = cache["loss"].item()
    return {"loss": loss, "uniform_loss": math.log(cfg.vocab_size), "perplexity": math.exp(loss),
            "logits_shape": list(cache["logits"].shape), "per_iteration": None}


def _gradient_section(cache, L):
    stream = [{"name": name, "rms": cache.stats(name).rms}
              for name in ["transformer.wte.output.grad"] + [f"transformer.h.{i}.output.grad" for i in range(L)]
              if name in cache]
    return {"residual_stream": stream, "per_iteration": None}


def _scaling(impl, model):
    def table(config, built):
        counts = {"closed_form": closed_form_counts(config), "measured": measured_counts(built)}
        counts["matches"] = counts["closed_form"] == counts["measured"]
        counts["flops_per_token"] = built.estimate_flops() if hasattr(built, "estimate_flops") else None
        counts["config"] = {k: getattr(config, k) for k in
                            ("sequence_len", "vocab_size", "n_layer", "n_head", "n_kv_head", "n_embd")}
        return counts
    target_config = impl.GPTConfig(**config_kwargs_for_depth(TARGET_DEPTH))
    return {"traced": table(model.config, model),
            "target": {"depth": TARGET_DEPTH} | table(target_config, build_on_meta(impl, target_config))}


# ------------------------------------------------------------------------------------------------
# Rendering: a TraceResult as rich tables


def make_console(no_color=False, file=None):
    """A rich Console; no colour or style at all under --no-color or a non-empty NO_COLOR (no-color.org)."""
    from rich.console import Console
    plain = no_color or os.environ.get("NO_COLOR", "") != ""
    console = Console(file=file, color_system=None if plain else "auto", highlight=not plain)
    if not console.is_terminal and "COLUMNS" not in os.environ:
        console.width = 120  # a file or a pipe: rich's 80 columns would wrap every table
    return console


def _fmt(x):
    if x is None:
        return "—"
    if isinstance(x, bool):
        return "yes" if x else "no"
    if isinstance(x, int):
        return f"{x:,}"
    if isinstance(x, float):
        return f"{x:.4g}"
    if isinstance(x, (list, tuple)):
        return "(" + ", ".join(str(v) for v in x) + ")"
    return str(x)


def _check(ok):
    return "[green]✓[/]" if ok else "[red]✗[/]"


def render(result, console):
    """Print a TraceResult section by section, in the order of the forward pass."""
    from rich.rule import Rule
    from rich.table import Table

    acts, s = result.activations, result.sections

    def heading(key, extra=""):
        c = BY_KEY[key]
        console.print()
        console.print(Rule(f"[bold]{c.number} · {c.title}[/]{extra}", align="left"))

    def stats_table(rows):
        """rows: (label, cached name or stats dict)."""
        t = Table(box=None, padding=(0, 1), header_style="bold")
        for col in ("tensor", "shape", "mean", "std", "min", "max", "rms", "zeros"):
            t.add_column(col, justify="left" if col in ("tensor", "shape") else "right")
        for label, ref in rows:
            st = acts.get(ref) if isinstance(ref, str) else ref
            if st is None:
                t.add_row(label, "[dim]not observed[/]", *[""] * 6)
                continue
            if isinstance(ref, str) and st.get("derived"):
                label += " [dim](derived layout)[/]"
            t.add_row(label, _fmt(st["shape"]), *(_fmt(st[k]) for k in ("mean", "std", "min", "max", "rms")),
                      f"{100 * st['zero_fraction']:.1f}%")
        console.print(t)

    cfg = result.config
    console.print(Rule("[bold]nanochat trace[/]"))
    console.print(f"implementation  {result.implementation}")
    console.print(f"config          n_layer={cfg['n_layer']} n_embd={cfg['n_embd']} n_head={cfg['n_head']} "
                  f"n_kv_head={cfg['n_kv_head']} head_dim={cfg['head_dim']} vocab_size={cfg['vocab_size']} "
                  f"sequence_len={cfg['sequence_len']}")
    st = result.settings
    console.print(f"training        {st['num_iterations']} iterations of AdamW (lr {st['lr']:g}), batch "
                  f"{st['batch_size']} x {cfg['sequence_len']} bytes of the built-in text, seed {st['seed']}")
    console.print(f"first sequence  {result.sample[:70]!r}")
    losses = result.losses
    console.print(f"loss            {' → '.join(f'{x:.4f}' for x in losses)}  "
                  f"{_check(len(losses) < 2 or losses[-1] < losses[0])} "
                  f"(shown below: the tensors of iteration {len(losses)})")

    # 1 token embeddings
    e = s["embedding"]
    heading("embedding")
    console.print(f"wte.weight {_fmt(e['wte_weight_shape'])} (vocab_size, n_embd): token ids {_fmt(e['idx_shape'])} "
                  f"→ vectors, then RMSNorm")
    stats_table([("wte(idx)  before RMSNorm", e["before_norm"]), ("norm(wte(idx))  after", e["after_norm"])])

    # 2 RoPE
    r = s["rope"]
    heading("rope")
    console.print(f"buffers cos, sin {_fmt(r['cos']['shape'])} {r['cos']['dtype']}: {r['rotary_positions']:,} "
                  f"positions precomputed, no learned parameters")
    stats_table([("cos", r["cos"]), ("sin", r["sin"]),
                 (f"block {r['block']} q  before rotation", r["q"]), ("q  after rotation", r["q_rope"]),
                 ("k  before rotation", r["k"]), ("k  after rotation", r["k_rope"])])
    console.print(f"[dim]derived:[/] position 0 unchanged (max |Δ| {_fmt(r['position0_unchanged'])}); "
                  f"vector lengths kept (max relative change {_fmt(r['length_change'])}, bf16 tables); "
                  + ("V reaches attention unrotated (max |Δ| " + _fmt(r["v_unrotated"]) + ")"
                     if r["v_unrotated"] is not None else "V: no SDPA call to compare at"))

    # 3 block stack
    b = s["block_stack"]
    heading("block_stack", f"  ({b['n_layer']} blocks; in detail: {', '.join(map(str, b['detailed']))})")
    t = Table(box=None, padding=(0, 1), header_style="bold")
    for col in ("block", "input rms", "attn out rms", "mlp out rms", "output rms", "∂loss/∂output rms", "ReLU² zeros"):
        t.add_column(col, justify="right")
    for row in b["layers"]:
        t.add_row(f"{row['block']}{'*' if row['detailed'] else ''}",
                  *(_fmt(row[k]) for k in ("input_rms", "attn_output_rms", "mlp_output_rms", "output_rms",
                                           "output_grad_rms")),
                  f"{100 * row['relu2_zero_fraction']:.1f}%")
    console.print(t)
    console.print("[dim]* shown in detail below; x = x + attn(norm(x)); x = x + mlp(norm(x))[/]")

    attention = {f["block"]: f for f in s["attention"]["blocks"]}
    mlps = {f["block"]: f for f in s["mlp"]["blocks"]}
    for blk in s["block"]["blocks"]:
        i = blk["block"]
        heading("block", f"  — block {i}")
        stats_table([("x  block input", blk["input"]), ("norm(x)  attention input", blk["attn_input"]),
                     ("attn(norm(x))", blk["attn_output"]), ("norm(x + attn)  MLP input", blk["mlp_input"]),
                     ("mlp(norm(x))", blk["mlp_output"]), ("block output", blk["output"])])
        console.print(f"[dim]derived:[/] output = input + attn + mlp, max |Δ| {_fmt(blk['residual_identity_error'])} "
                      f"{_check(blk['residual_identity_error'] < 1e-4)}")
        _render_attention(console, stats_table, s["attention"], attention[i], heading)
        _render_mlp(console, stats_table, mlps[i], heading)

    # 6 RMSNorm everywhere
    n = s["rmsnorm"]
    heading("rmsnorm")
    t = Table(box=None, padding=(0, 1), header_style="bold")
    for col in ("where", "tensor", "rms (min … max over blocks)"):
        t.add_column(col)
    for key, label in (("after_embedding", "after the embedding"), ("pre_attention", "before attention"),
                       ("pre_mlp", "before the MLP"), ("final", "before the LM head")):
        lo, hi = n[key]["rms"]
        t.add_row(label, n[key]["name"], f"{lo:.4f} … {hi:.4f}")
    console.print(t)
    console.print(f"x / sqrt(mean(x²) + eps) over the last dim; learnable parameters: "
                  f"{len(n['learnable_parameters'])} {_check(not n['learnable_parameters'])}")

    # 9 final norm
    f = s["final_norm"]
    heading("final_norm")
    stats_table([("last block output", f["before"]), ("norm(x)  LM head input", f["after"])])

    # 8 LM head
    h = s["lm_head"]
    heading("lm_head")
    console.print(f"lm_head.weight {_fmt(h['weight_shape'])}, untied from wte {_check(h['untied'])}")
    stats_table([("logits before softcap", h["raw"]), ("15·tanh(logits/15)", h["capped"])])
    console.print(f"max |logit| {h['max_abs_raw']:.4g} → {h['max_abs_capped']:.4g} (< 15 {_check(h['max_abs_capped'] < 15)}); "
                  f"[dim]derived:[/] softcap identity max |Δ| {_fmt(h['softcap_error'])}")

    # 11 loss
    lo = s["loss"]
    heading("loss")
    t = Table(box=None, padding=(0, 1), header_style="bold")
    for col in ("iteration", "loss", "change", "seconds"):
        t.add_column(col, justify="right")
    previous = None
    for it in result.iterations:
        t.add_row(str(it["iteration"]), f"{it['loss']:.4f}",
                  "" if previous is None else f"{it['loss'] - previous:+.4f}", f"{it['seconds']:.2f}")
        previous = it["loss"]
    console.print(t)
    console.print(f"cross-entropy of logits {_fmt(lo['logits_shape'])} against the next bytes; ln(vocab_size) = "
                  f"{lo['uniform_loss']:.4f} is the uniform guess; last perplexity {lo['perplexity']:.2f}")

    # 12 gradients
    g = s["gradients"]
    heading("gradients")
    t = Table(box=None, padding=(0, 1), header_style="bold")
    for col in ("iteration", "grad norm", "parameters with nonzero grad"):
        t.add_column(col, justify="right")
    for it in g["per_iteration"]:
        names = f"  ({', '.join(it['nonzero_grad_names'])})" if it["nonzero_grad_names"] else ""
        t.add_row(str(it["iteration"]), f"{it['grad_norm']:.4g}", f"{it['nonzero_grads']}{names}")
    console.print(t)
    console.print(f"parameter gradients, iteration {len(result.iterations)}")
    t = Table(box=None, padding=(0, 1), header_style="bold")
    for col in ("parameter", "shape", "norm", "rms", "max |g|", "zeros"):
        t.add_column(col, justify="left" if col in ("parameter", "shape") else "right")
    for name, st in result.gradients.items():
        t.add_row(name, _fmt(st["shape"]), _fmt(st["norm"]), _fmt(st["rms"]),
                  _fmt(max(abs(st["min"]), abs(st["max"]))), f"{100 * st['zero_fraction']:.1f}%")
    console.print(t)
    console.print("gradient RMS along the residual stream (∂loss/∂x): " +
                  ", ".join(f"{row['name'].removeprefix('transformer.').removesuffix('.grad')} {row['rms']:.3g}"
                            for row in g["residual_stream"]))

    _render_scaling(console, s["scaling"], heading)


def _render_attention(console, stats_table, overall, a, heading):
    from rich.table import Table
    i = a["block"]
    heading("attention", f"  — block {i}")
    nm = a["names"]

    def row(label, key):
        return (label, nm.get(key, f"transformer.h.{i}.attn.{key}"))
    console.print("[bold]projections[/] c_q, c_k, c_v as heads (B, T, heads, head_dim)")
    stats_table([row("q = c_q(x)", "q"), row("k = c_k(x)", "k"), row("v = c_v(x)", "v")])
    console.print("[bold]RoPE[/] on q and k only, [bold]then QK norm[/] (RMSNorm of each head vector)")
    stats_table([row("q rotated", "q_rope"), row("k rotated", "k_rope"), row("q normed", "q_norm"),
                 row("k normed", "k_norm")])
    H, Hkv = overall["n_head"], overall["n_kv_head"]
    if overall["group_size"] > 1:
        console.print(f"[bold]grouped-query attention[/] {H}:{Hkv} — query head h reads kv head h // "
                      f"{overall['group_size']}; KV cache {overall['kv_cache_bytes_per_token']:,} bytes/token instead "
                      f"of {overall['kv_cache_bytes_per_token_without_gqa']:,} ({overall['kv_cache_saving']:g}x smaller, "
                      f"{overall['kv_cache_bytes_at_sequence_len']:,} bytes at the full sequence length)")
    else:
        hint = f"; a divisor of {H} below it as --n-kv-head would shrink it" if H > 1 else ""
        console.print(f"[bold]multi-head attention[/] {H}:{Hkv} (n_kv_head = n_head: no grouping); KV cache "
                      f"{overall['kv_cache_bytes_per_token']:,} bytes/token{hint}")
    call = a["sdpa_call"]
    how = (f"torch SDPA called with {', '.join(f'{k}={v}' for k, v in call.items())}" if call is not None
           else "computed without torch's SDPA (tensors below are layouts of the observed q, k, v, heads)")
    console.print(f"[bold]scaled dot-product attention[/] softmax(q·kᵀ/√d + causal mask)·v — {how}")
    stats_table([row("q at attention", "sdpa_q"), row("k at attention", "sdpa_k"), row("v at attention", "sdpa_v"),
                 row("attention output", "sdpa_out")])
    n = len(a["mask_corner"])
    console.print(f"[bold]causal mask and softmax weights[/] (head 0, sequence 0, first {n} positions; "
                  f"[dim]derived from q_norm, k_norm[/])")
    grid = Table(box=None, padding=(0, 1))
    grid.add_column("query")
    for j in range(n):
        grid.add_column(str(j), justify="right")
    for r_, (mask_row, weights) in enumerate(zip(a["mask_corner"], a["pattern_corner"])):
        grid.add_row(str(r_), *(f"{w:.2f}" if allowed else "[dim]·[/]" for allowed, w in zip(mask_row, weights)))
    console.print(grid)
    console.print(f"[dim]derived:[/] rows sum to 1 (max |Δ| {_fmt(a['softmax_row_sum_error'])}); weights·v reproduce "
                  f"the observed output (max |Δ| {_fmt(a['pattern_reproduces_output'])}) "
                  f"{_check(a['pattern_reproduces_output'] < 1e-4)}; entropy per head "
                  f"{', '.join(f'{e:.2f}' for e in a['entropy_per_head'])} nats")
    console.print("[bold]heads concatenated[/] (B, H, T, D) → (B, T, H·D), [bold]then c_proj[/]")
    stats_table([row("heads side by side", "heads_concat"), row("c_proj output", "output")])


def _render_mlp(console, stats_table, m, heading):
    heading("mlp", f"  — block {m['block']}")
    console.print("n_embd → 4·n_embd → n_embd, ReLU² in between, no bias")
    stats_table([("MLP input", m["input"]), ("c_fc", m["fc"]), ("ReLU [dim](derived: fc.clamp(min=0))[/]", m["relu"]),
                 ("ReLU² = c_proj input", m["act"]), ("c_proj output", m["output"])])
    console.print(f"sparsity: {100 * m['relu_zero_fraction']:.1f}% zeros after ReLU, "
                  f"{100 * m['relu2_zero_fraction']:.1f}% after squaring; [dim]derived:[/] act = ReLU(fc)², "
                  f"max |Δ| {_fmt(m['relu2_error'])}")


def _render_scaling(console, sc, heading):
    from rich.table import Table
    heading("scaling")
    for key, title in (("traced", "the traced model"),
                       ("target", f"depth {sc['target']['depth']}, nanochat's 561M target (built on the meta device)")):
        part = sc[key]
        c = part["config"]
        m = part["measured"]
        console.print(f"[bold]{title}[/]: n_layer={c['n_layer']} n_embd={c['n_embd']} n_head={c['n_head']} "
                      f"n_kv_head={c['n_kv_head']} vocab_size={c['vocab_size']:,}")
        t = Table(box=None, padding=(0, 1), header_style="bold")
        for col in ("component", "parameters", "share", "closed form"):
            t.add_column(col, justify="left" if col == "component" else "right")
        rows = (("wte (token embedding)", "wte"), ("lm_head (untied)", "lm_head"),
                ("attention, per block", "attn_per_block"), ("MLP, per block", "mlp_per_block"),
                ("one block", "per_block"), (f"{c['n_layer']} blocks", "blocks"), ("total", "total"))
        for label, k in rows:
            t.add_row(label, f"{m[k]:,}", f"{100 * m[k] / m['total']:.1f}%",
                      _check(m[k] == part["closed_form"][k]))
        console.print(t)
        flops = part["flops_per_token"]
        console.print(f"total {m['total']:,} parameters ({m['total'] / 1e6:.1f}M), closed form 2·V·d + L·(attn + MLP) "
                      f"{_check(part['matches'])}; training FLOPs per token (GPT.estimate_flops, T={c['sequence_len']}): "
                      + (f"{flops:,} ({flops / 1e9:.2f} GFLOP)" if flops is not None else "— (not provided)"))


# ------------------------------------------------------------------------------------------------
# Plot


def plot(result, path):
    """A PNG: the attention pattern of each head of one block (sequence 0), and the RMS per layer."""
    import matplotlib
    matplotlib.use("Agg")  # files only, never a window
    import matplotlib.pyplot as plt
    from matplotlib.colors import PowerNorm
    from matplotlib.ticker import MaxNLocator

    pattern = result.plot["pattern"]  # (H, T, T)
    H = len(pattern)
    cols = min(H, 4)
    rows = math.ceil(H / cols)
    fig = plt.figure(figsize=(3 * cols + 5, 3 * rows), layout="constrained")
    grid = fig.add_gridspec(rows, cols + 2)
    for h in range(H):
        ax = fig.add_subplot(grid[h // cols, h % cols])
        # a square-root colour scale: most weights are small, a few rows put nearly all on one key
        ax.imshow(pattern[h], cmap="viridis", norm=PowerNorm(gamma=0.5, vmin=0.0, vmax=1.0))
        ax.set_title(f"block {result.plot['block']} head {h}", fontsize=9)
        ax.set_xlabel("key position", fontsize=8)
        ax.set_ylabel("query position", fontsize=8)
    ax = fig.add_subplot(grid[:, cols:])
    for label, values in result.plot["layer_rms"].items():
        ax.plot(range(len(values)), values, marker="o", label=label)
    ax.set_xlabel("block")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel("RMS")
    ax.set_title(f"activation RMS per layer (iteration {len(result.iterations)})", fontsize=9)
    ax.legend(fontsize=8)
    fig.savefig(path, dpi=100)
    plt.close(fig)


# ------------------------------------------------------------------------------------------------
# Entry point


def main(argv=None):
    settings, impl, args = parse_settings(argv)
    console = make_console(args.no_color)

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
    columns = (TextColumn("training"), BarColumn(), MofNCompleteColumn(),
               TextColumn("loss {task.fields[loss]}"), TimeElapsedColumn())
    with Progress(*columns, console=console) as progress:
        task = progress.add_task("train", total=settings.num_iterations, loss="…")
        result = run_trace(impl, settings,
                           on_iteration=lambda rec: progress.update(task, advance=1, loss=f"{rec['loss']:.4f}"))
    render(result, console)
    if args.json:
        Path(args.json).write_text(json.dumps(result.to_json(), indent=1) + "\n")
        console.print(f"\nwrote {args.json}")
    if args.plot:
        plot(result, args.plot)
        console.print(f"wrote {args.plot}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
