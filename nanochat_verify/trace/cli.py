"""
python -m nanochat_verify.trace: train a small GPT for a few iterations on the CPU and show every component
of the component table on that real computation, then the model-scaling analysis (561M target).

    python -m nanochat_verify.trace                          # nanochat's depth 4 (36.7M), 3 iterations, ~10 s
    python -m nanochat_verify.trace --vocab-size 256         # the same depth with a byte vocabulary, ~3 s
    python -m nanochat_verify.trace --depth 20 --seq-len 64 --batch-size 1   # the real 561M model, ~11 GB
    python -m nanochat_verify.trace --gpt-impl tests/reference_gpt.py --json trace.json --plot trace.png

What is shown is observed, not recomputed: hooks.py hooks the model's own modules and wraps the functions
its forward calls, so any implementation of the contract can be traced. The few values that are derived
for display (ReLU before squaring, the attention weights, identity checks) say so.

The code is in layers that never mix: `parse_settings` (here) turns the command line into validated
`TraceSettings` (every bad option is one line on stderr and exit status 2, before any work);
`run_trace` (training.py) trains and returns a `TraceResult` of plain numbers, lists and dicts (what --json
writes), summarised by sections.py; render.py only formats a TraceResult. An implementation whose tensors do not have
the shapes the contract gives them stops the trace with one line naming the tensor and its shape
(exit status 1); Ctrl-C stops it with one line and exit status 130.
"""

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path

from nanochat_verify import memory, options
from nanochat_verify.argtypes import positive_int, positive_number
from nanochat_verify.base import choose_card
from nanochat_verify.card import FEATURES, CardError
from nanochat_verify.commandline import (OneLineParser, Terminated, project_root,
                                         resolve_implementation, terminate_like_interrupt, unwritable)
from nanochat_verify.contract import ContractError, load_implementation, source_path
from nanochat_verify.exits import Exit
from nanochat_verify.scaling import NANOCHAT_VOCAB_SIZE, build_on_meta, closed_form_counts, config_kwargs_for_depth
from nanochat_verify.settings import default_implementation_file
from nanochat_verify.trace import text
from nanochat_verify.trace.render import make_console, plot, render
from nanochat_verify.trace.sections import TraceError
from nanochat_verify.trace.training import run_trace, trace_bytes

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

PLOT_INSTALL_HINT = "pip install 'nanochat-verify[plot]' (or: pip install matplotlib)"


@dataclass(frozen=True)
class TraceSettings:
    gpt_impl: str
    card: object  # the Architecture whose values the trace checks
    config: dict  # GPTConfig keyword arguments
    batch_size: int = DEFAULT_BATCH_SIZE
    num_iterations: int = DEFAULT_ITERATIONS
    blocks: tuple = ()  # blocks shown in detail; () means the default (first two and last)
    lr: float = LR_AT_256
    seed: int = 0
    architecture: str | None = None  # the card (None: the project's pyproject.toml, else seed)
    features: tuple = ()  # the card's optional modern components switched on


def build_parser():
    p = OneLineParser(prog="nanochat_verify.trace", description=__doc__.split("\n\n")[0].strip(),
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--depth", type=positive_int, default=DEFAULT_DEPTH,
                   help="model depth; n_layer, n_embd and n_head follow nanochat's rule (default %(default)s)")
    p.add_argument("--vocab-size", type=positive_int, default=None,
                   help=f"vocabulary size (default {NANOCHAT_VOCAB_SIZE:,}, nanochat's, so that --depth N is "
                        f"nanochat's depth-N model; the built-in text uses the first {text.VOCAB_SIZE} ids "
                        f"as bytes, and --vocab-size {text.VOCAB_SIZE} gives a much smaller, faster model)")
    p.add_argument("--n-kv-head", type=positive_int, default=None,
                   help="key/value heads (default n_head); fewer gives grouped-query attention")
    p.add_argument("--seq-len", type=positive_int, default=DEFAULT_SEQ_LEN,
                   help="tokens per sequence (default %(default)s)")
    p.add_argument("--batch-size", type=positive_int, default=DEFAULT_BATCH_SIZE,
                   help="sequences per batch (default %(default)s)")
    p.add_argument("--num-iterations", type=positive_int, default=DEFAULT_ITERATIONS,
                   help="training iterations, each traced (default %(default)s)")
    p.add_argument("--blocks", default=None, metavar="LIST",
                   help="blocks shown in detail: comma-separated indices (negative counts from the end) "
                        "or 'all' (default: the first two and the last)")
    p.add_argument("--lr", type=positive_number, default=None,
                   help=f"AdamW learning rate (default {LR_AT_256:g} * 256 / n_embd: {LR_AT_256:g} at depth 4)")
    p.add_argument("--seed", type=int, default=0, help="seed for the weights and the batches (default 0)")
    options.add_to_argparse(p, options.GPT_IMPL, options.ARCHITECTURE, options.IMPORT_TIMEOUT)
    p.add_argument("--features", default=None, metavar="LIST",
                   help="modern components to switch on where the card has them as options: a comma-separated "
                        f"list of {', '.join(FEATURES)}, or 'all' (default: none)")
    p.add_argument("--json", default=None, metavar="PATH",
                   help="also write the trace as JSON: every cached name with its stats, losses, scaling table")
    p.add_argument("--plot", default=None, metavar="PATH",
                   help=f"also write a PNG: attention pattern per head of a block, activation RMS per layer "
                        f"(needs matplotlib: {PLOT_INSTALL_HINT})")
    p.add_argument("--allow-large", action="store_true",
                   help="build and train the model even when the memory it needs (estimated from the config "
                        "before anything is built) is more than this machine has available")
    p.add_argument("--no-color", action="store_true",
                   help="plain text output (also when the NO_COLOR environment variable is set)")
    return p


def parse_settings(argv=None):
    """The validated settings, the loaded implementation and the parsed arguments; on a bad option,
    one line on stderr and SystemExit(2), before the model is built."""
    parser = build_parser()
    args = parser.parse_args(argv)
    resolve_implementation(parser, args, project_root())
    try:
        impl = load_implementation(args.gpt_impl, options.import_timeout(args.import_timeout, args.settings))
    except ContractError as e:
        parser.error(str(e))
    except Exception as e:  # noqa: BLE001 - whatever importing a user's module raises is a usage error
        parser.error(f"--gpt-impl {args.gpt_impl!r}: loading it failed: {type(e).__name__}: {e}")

    try:
        card, _ = choose_card(args.settings, source_path(impl), args.architecture,
                              default_implementation_file(args.settings))
    except CardError as e:
        parser.error(str(e))
    features = _parse_features(parser, args.features, card)

    vocab_size = NANOCHAT_VOCAB_SIZE if args.vocab_size is None else args.vocab_size
    if vocab_size < text.VOCAB_SIZE:
        parser.error(f"--vocab-size {vocab_size} is too small: the byte-level text needs {text.VOCAB_SIZE} ids")
    if args.seq_len > text.max_sequence_len():
        parser.error(f"--seq-len {args.seq_len} is longer than the built-in text allows ({text.max_sequence_len()})")
    config = config_kwargs_for_depth(args.depth, vocab_size=vocab_size, sequence_len=args.seq_len)
    if args.n_kv_head is not None:
        config["n_kv_head"] = args.n_kv_head
    config.update(card.config_for(*features))
    problem = _config_problem(args.depth, config)
    if problem:
        parser.error(problem)
    try:
        built_config = impl.GPTConfig(**config)  # the implementation may know more reasons to refuse
    except (ValueError, TypeError) as e:
        parser.error(f"the implementation refuses the configuration {config}: {e}")
    if not args.allow_large:
        problem = _memory_problem(impl, built_config, card, args)
        if problem:
            parser.error(problem)

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
    settings = TraceSettings(gpt_impl=args.gpt_impl, card=card, config=config, batch_size=args.batch_size,
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


def _memory_problem(impl, config, card, args):
    """Why this trace would not fit in the memory available now, or None; decided before anything is built: from
    the architecture's closed form first (--depth 1000 is refused at once), then, if that fits, from the model
    built on the meta device (what the implementation really allocates, with no memory)."""
    available = memory.available_bytes()
    if available is None:
        return None
    parameters = closed_form_counts(config, card)["total"]
    needed = trace_bytes(4 * parameters, config, args.batch_size)  # float32, as the tracer trains
    if needed <= available:
        try:
            model = build_on_meta(impl, config)
            tensors = [*model.parameters(), *model.buffers()]
            parameters = sum(t.numel() for t in model.parameters())
            needed = trace_bytes(sum(t.numel() * t.element_size() for t in tensors), config, args.batch_size)
        except Exception:  # noqa: BLE001 - an implementation that cannot be built on meta: the closed form stands
            pass
    if needed <= available:
        return None
    return (f"--depth {args.depth} (n_layer {config.n_layer}, n_embd {config.n_embd}, vocab {config.vocab_size:,}) at "
            f"--batch-size {args.batch_size} --seq-len {args.seq_len} needs about {memory.gb(needed)} of memory "
            f"({parameters:,} parameters with their gradients and AdamW's two moments, and the activations), more "
            f"than the {memory.gb(available)} available; choose a smaller --depth, --batch-size or --seq-len, or pass "
            f"--allow-large to try anyway")


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


def main(argv=None):
    settings, impl, args = parse_settings(argv)
    console = make_console(args.no_color)
    try:
        with terminate_like_interrupt():  # SIGTERM: the same one line and exit status as Ctrl-C
            return _run(settings, impl, args, console)
    except KeyboardInterrupt as e:
        print(f"nanochat_verify.trace: {'terminated' if isinstance(e, Terminated) else 'interrupted'}",
              file=sys.stderr)
        return Exit.INTERRUPTED
    except TraceError as e:
        print(f"nanochat_verify.trace: error: {e}", file=sys.stderr)
        return 1


def _run(settings, impl, args, console):
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
    columns = (TextColumn("training"), BarColumn(), MofNCompleteColumn(),
               TextColumn("loss {task.fields[loss]}"), TimeElapsedColumn())
    with Progress(*columns, console=console) as progress:
        task = progress.add_task("train", total=settings.num_iterations, loss="…")
        result = run_trace(impl, settings,
                           on_iteration=lambda rec: progress.update(task, advance=1, loss=f"{rec['loss']:.4f}"))
    failed = render(result, console, settings.card)
    if args.json:
        Path(args.json).write_text(json.dumps(result.to_json(), indent=1) + "\n")
        console.print(f"\nwrote {args.json}")
    if args.plot:
        plot(result, args.plot)
        console.print(f"wrote {args.plot}")
    return Exit.NOT_VERIFIED if failed else Exit.OK


if __name__ == "__main__":
    sys.exit(main())
