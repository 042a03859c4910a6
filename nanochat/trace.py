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
writes); `render` and `plot` only format a TraceResult. An implementation whose tensors do not have
the shapes the contract gives them stops the trace with one line naming the tensor and its shape
(exit status 1); Ctrl-C stops it with one line and exit status 130.
"""

import argparse
import json
import math
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from nanochat import data
from nanochat.cli import OneLineParser, unwritable
from nanochat.contract import DEFAULT_IMPL, ContractError, load_implementation
from nanochat.architecture import FEATURES, CardError, load_card
from nanochat.scaling import (NANOCHAT_VOCAB_SIZE, build_on_meta, closed_form_counts, config_kwargs_for_depth,
                              measured_counts)
from nanochat.trace_report import make_console, plot, render
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
    architecture: str | None = None  # the card (None: the project's pyproject.toml, else seed)
    features: tuple = ()  # the card's optional modern components switched on


class TraceError(Exception):
    """The traced implementation does not behave as the contract says (a tensor of the wrong shape)."""


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
    p = OneLineParser(prog="nanochat.trace", description=__doc__.split("\n\n")[0].strip(),
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
    p.add_argument("--architecture", default=None, metavar="NAME_OR_PATH",
                   help="architecture card whose values the trace checks (default: the project's, seed)")
    p.add_argument("--features", default=None, metavar="LIST",
                   help="modern components to switch on where the card has them as options: a comma-separated "
                        f"list of {', '.join(FEATURES)}, or 'all' (default: none)")
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
    if not args.gpt_impl.strip():
        parser.error("--gpt-impl is empty: name a .py file or a dotted module (default nanochat.gpt)")
    try:
        impl = load_implementation(args.gpt_impl)
    except ContractError as e:
        parser.error(str(e))
    except Exception as e:  # noqa: BLE001 - whatever importing a user's module raises is a usage error
        parser.error(f"--gpt-impl {args.gpt_impl!r}: loading it failed: {type(e).__name__}: {e}")

    try:
        card = load_card(args.architecture)
    except CardError as e:
        parser.error(str(e))
    features = _parse_features(parser, args.features, card)

    vocab_size = NANOCHAT_VOCAB_SIZE if args.vocab_size is None else args.vocab_size
    if vocab_size < data.VOCAB_SIZE:
        parser.error(f"--vocab-size {vocab_size} is too small: the byte-level text needs {data.VOCAB_SIZE} ids")
    if args.seq_len > data.max_sequence_len():
        parser.error(f"--seq-len {args.seq_len} is longer than the built-in text allows ({data.max_sequence_len()})")
    config = config_kwargs_for_depth(args.depth, vocab_size=vocab_size, sequence_len=args.seq_len)
    if args.n_kv_head is not None:
        config["n_kv_head"] = args.n_kv_head
    config.update(card.config_for(*features))
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
            problem = unwritable(path)
            if problem:
                parser.error(f"{option} {path}: {problem}")
    if args.plot is not None:
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            parser.error(f"--plot needs matplotlib, which is not installed: {PLOT_INSTALL_HINT}")
    settings = TraceSettings(gpt_impl=args.gpt_impl, config=config, batch_size=args.batch_size,
                             num_iterations=args.num_iterations, blocks=blocks, seed=args.seed,
                             architecture=args.architecture, features=features,
                             lr=default_lr(config["n_embd"]) if args.lr is None else args.lr)
    return settings, impl, args


def _parse_features(parser, text, card):
    """The optional modern components to switch on: a comma-separated list or 'all' of those the card has."""
    if text is None or text.strip() == "none":
        return ()
    offered = [f for f in FEATURES if card.features[f] == "optional"]
    if text.strip() == "all":
        return tuple(offered)
    wanted = tuple(w.strip() for w in text.split(",") if w.strip())
    for w in wanted:
        if w not in FEATURES:
            parser.error(f"--features {text!r}: unknown component {w!r}; known: {', '.join(FEATURES)}")
        if not card.has(w):
            parser.error(f"--features {text!r}: the card {card.name!r} has no {w}")
    return tuple(w for w in wanted if w in offered)  # the card's always-on components are on anyway


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
    card = load_card(settings.architecture)
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
            _check_shapes(cache, config, idx.shape, loss)
            loss.backward()
        record = _iteration_record(number, model, loss)
        summarising = time.perf_counter()
        if number == settings.num_iterations:
            # summarise before the step, while every tensor still belongs to this iteration
            summary = _summarise(impl, model, cache, settings, card)
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
    summary["sections"]["scaling"] = _scaling(impl, model, card)
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


def _expected_shapes(cache, config, idx_shape):
    """{cached name: (shape the contract gives it, what it is)} for the tensors the summary compares."""
    B, T = idx_shape
    C, H, Hkv, V = config.n_embd, config.n_head, config.n_kv_head, config.vocab_size
    D = C // H
    # lm_head.output is not here: a padded vocabulary gives it more columns, sliced off before the logits
    want = {"logits": ((B, T, V), "forward must return (B, T, vocab_size) logits"),
            "lm_head.input": ((B, T, C), "the final norm keeps (B, T, n_embd)")}
    for i in range(config.n_layer):
        p = f"transformer.h.{i}"
        for name in ("input", "output", "attn.output", "mlp.output"):
            want[f"{p}.{name}"] = ((B, T, C), "a block and its branches keep (B, T, n_embd)")
        for name, heads in (("q", H), ("q_rope", H), ("k", Hkv), ("k_rope", Hkv), ("v", Hkv)):
            want[f"{p}.attn.{name}"] = ((B, T, heads, D), "attention heads are (B, T, heads, head_dim)")
    fc = cache.get("transformer.h.0.mlp.fc")
    if fc is not None:  # the hidden width is the card's; ReLU² keeps it
        for i in range(config.n_layer):
            want[f"transformer.h.{i}.mlp.act"] = ((B, T, fc.shape[-1]), "ReLU² keeps the shape of c_fc's output")
    return want


def _check_shapes(cache, config, idx_shape, loss):
    """Stop with the name and shape of the first traced tensor that is not what the contract says,
    before the summary compares tensors that cannot be compared."""
    if loss.dim() != 0:
        raise TraceError(f"forward(idx, targets) must return a scalar loss, got shape {tuple(loss.shape)}")
    for name, (shape, what) in _expected_shapes(cache, config, idx_shape).items():
        if name in cache and tuple(cache[name].shape) != shape:
            raise TraceError(f"{name} has shape {tuple(cache[name].shape)}, expected {shape}: {what}")


def _max_abs(a, b, what="the two tensors"):
    """The largest difference between two tensors that should be equal; TraceError, naming both
    shapes, when they cannot even be compared."""
    if a.shape != b.shape:
        raise TraceError(f"cannot compare {what}: shapes {tuple(a.shape)} and {tuple(b.shape)} differ")
    return (a.double() - b.double()).abs().max().item()


def _summarise(impl, model, cache, settings, card):
    cfg = model.config
    L, H, Hkv = cfg.n_layer, cfg.n_head, cfg.n_kv_head
    blocks = settings.blocks or tuple(sorted({0, 1, L - 1} & set(range(L))))
    activations = {name: _stats(cache[name]) | {"derived": name in cache.derived} for name in cache}
    gradients = {name: _stats(g) | {"norm": torch.linalg.vector_norm(g.float()).item()}
                 for name, g in cache.grads.items()}
    windows = card.window_sizes(cfg.sequence_len, L, card.active("sliding_window", cfg))
    attention = {i: _attention_facts(cache, i, H, Hkv, card.qk_gain, windows[i]) for i in blocks}
    sections = {
        "embedding": _embedding_section(model, cache),
        "rope": _rope_section(model, cache, blocks[0]),
        "block_stack": _block_stack_section(cache, L, blocks),
        "block": {"blocks": [_block_facts(cache, i) for i in blocks]},
        "attention": _attention_section(cache, cfg, attention),
        "rmsnorm": _rmsnorm_section(model, cache, L),
        "mlp": {"blocks": [_mlp_facts(cache, i) for i in blocks]},
        "final_norm": {"before": f"transformer.h.{L - 1}.output", "after": "lm_head.input"},
        "lm_head": _lm_head_section(model, cache, card),
        "loss": _loss_section(cache, cfg),
        "gradients": _gradient_section(cache, L),
        "scaling": None,  # filled in after training, from the model and the card's target
        **_modern_sections(model, cache, card),
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
        "position0_unchanged": _max_abs(q[:, 0], q_rope[:, 0], f"{p}.q and q_rope at position 0"),  # angle 0
        "length_change": (q_rope.double().norm(dim=-1) / q.double().norm(dim=-1).clamp_min(1e-30) - 1).abs().max().item(),
        "v_unrotated": None,
    }
    if f"{p}.sdpa_v" in cache and f"{p}.sdpa_v" not in cache.derived:
        # V as SDPA received it against V as projected: RoPE never touched it
        facts["v_unrotated"] = _max_abs(cache[f"{p}.sdpa_v"].transpose(1, 2), cache[f"{p}.v"], f"{p}.sdpa_v and v")
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
            "residual_identity_error": _max_abs(y, x + a + m, f"{p}.output and input + attn + mlp")}


def _attention_facts(cache, i, H, Hkv, qk_gain=1.0, window=None):
    p = f"transformer.h.{i}.attn"
    pattern = cache.attention_pattern(i, qk_gain, window)  # derived, (B, H, T, T)
    # V as attention received it (value embeddings mixed in) where an SDPA call was observed
    if f"{p}.sdpa_v" in cache and f"{p}.sdpa_v" not in cache.derived:
        v = cache[f"{p}.sdpa_v"].float()  # (B, Hkv, T, D)
    else:
        v = cache[f"{p}.v"].float().transpose(1, 2)
    v = v.repeat_interleave(H // Hkv, dim=1)  # (B, H, T, D)
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
            "relu2_error": _max_abs(act, relu.square(), f"{p}.act and ReLU(fc)²")}  # derived check


def _lm_head_section(model, cache, card):
    capped = cache["logits"]
    raw = cache["lm_head.output"][..., :capped.size(-1)]  # a padded vocabulary's extra rows are sliced off
    cap = card.softcap
    return {"weight_shape": list(model.lm_head.weight.shape), "softcap": cap,
            "untied": model.lm_head.weight.data_ptr() != model.transformer.wte.weight.data_ptr(),
            "raw": "lm_head.output", "capped": "logits",
            "max_abs_raw": raw.abs().max().item(), "max_abs_capped": capped.abs().max().item(),
            # derived check of the documented soft cap against the observed pair
            "softcap_error": _max_abs(capped, cap * torch.tanh(raw.double() / cap), "logits and the capped lm_head output")}


def _modern_sections(model, cache, card):
    """The modern components (nanochat 92d63d4) the traced model has on: what each did in this iteration.
    Observed: the gates' raw outputs and the parameters; derived: the gates' values from those."""
    cfg, L = model.config, model.config.n_layer
    on = {f: card.active(f, cfg) for f in FEATURES}
    sections = {}
    if on["sliding_window"]:
        observed = [getattr(b.attn, "window", None) for b in model.transformer.h]
        if all(w is None for w in observed) and hasattr(model, "window_sizes"):  # nanochat keeps (W, 0) pairs
            observed = [w[0] for w in model.window_sizes]
        sections["sliding_window"] = {"pattern": card.sliding_window["pattern"], "windows": observed,
                                      "card_windows": card.window_sizes(cfg.sequence_len, L)}
    if on["value_embeddings"]:
        scale = card.value_embeddings["gate_scale"]
        layers = sorted(int(k) for k in getattr(model, "value_embeds", {}).keys())
        sections["value_embeddings"] = {
            "layers": layers, "card_layers": card.ve_layers(L), "gate_scale": scale,
            "gates": {i: _stats(scale * torch.sigmoid(cache[f"transformer.h.{i}.attn.ve_gate"].float()))
                      for i in layers if f"transformer.h.{i}.attn.ve_gate" in cache},
            "embeddings": {i: f"value_embeds.{i}.output" for i in layers}}
    if on["lambdas"]:
        sections["lambdas"] = {"resid": model.resid_lambdas.detach().tolist(), "x0": model.x0_lambdas.detach().tolist()}
    if on["smear"]:
        lam = model.smear_lambda.detach().float()
        sections["smear"] = {"lambda": lam.item(), "channels": card.smear["channels"],
                             "gate": _stats(lam * torch.sigmoid(cache["smear_gate.output"].float()))
                             if "smear_gate.output" in cache else None}
    if on["backout"]:
        sections["backout"] = {"lambda": model.backout_lambda.detach().float().item(),
                               "layer": card.backout_layer(L), "mid": f"transformer.h.{card.backout_layer(L)}.output"}
    if on["padded_vocab"]:
        sections["padded_vocab"] = {"vocab_size": cfg.vocab_size, "rows": model.lm_head.weight.shape[0],
                                    "multiple": card.padded_vocab["multiple"]}
    return sections


def _loss_section(cache, cfg):
    loss = cache["loss"].item()
    return {"loss": loss, "uniform_loss": math.log(cfg.vocab_size), "perplexity": math.exp(loss),
            "logits_shape": list(cache["logits"].shape), "per_iteration": None}


def _gradient_section(cache, L):
    stream = [{"name": name, "rms": cache.stats(name).rms}
              for name in ["transformer.wte.output.grad"] + [f"transformer.h.{i}.output.grad" for i in range(L)]
              if name in cache]
    return {"residual_stream": stream, "per_iteration": None}


def _scaling(impl, model, card):
    def table(config, built):
        counts = {"closed_form": closed_form_counts(config, card), "measured": measured_counts(built)}
        counts["matches"] = counts["closed_form"] == counts["measured"]
        counts["flops_per_token"] = built.estimate_flops() if hasattr(built, "estimate_flops") else None
        counts["config"] = {k: getattr(config, k) for k in
                            ("sequence_len", "vocab_size", "n_layer", "n_head", "n_kv_head", "n_embd")}
        return counts
    target_config = impl.GPTConfig(**config_kwargs_for_depth(card.target_depth))
    return {"traced": table(model.config, model),
            "target": {"depth": card.target_depth, "millions": card.target_millions}
            | table(target_config, build_on_meta(impl, target_config))}


# ------------------------------------------------------------------------------------------------
# Entry point


def main(argv=None):
    settings, impl, args = parse_settings(argv)
    console = make_console(args.no_color)
    try:
        return _run(settings, impl, args, console)
    except KeyboardInterrupt:
        print("nanochat.trace: interrupted", file=sys.stderr)
        return 130
    except TraceError as e:
        print(f"nanochat.trace: error: {e}", file=sys.stderr)
        return 1


def _run(settings, impl, args, console):

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
