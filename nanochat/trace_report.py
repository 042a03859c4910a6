"""
The terminal and picture side of `python -m nanochat.trace`: a TraceResult (plain data, see
nanochat/trace.py) rendered as rich tables section by section, and as a PNG with matplotlib.
Nothing here touches a model; everything shown was computed by `run_trace`.
"""

import math
import os

from nanochat.architecture import load_card
from nanochat.components import BY_KEY


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


def percent_of(fraction):
    """A share as a percentage with one decimal, or more where one would round a share that is
    neither none nor all to 0% or 100%: 28 nonzero rows of a 65,536-row gradient read 99.96%, never
    100.0% (which would say the gradient is all zeros)."""
    if fraction <= 0 or fraction >= 1:
        return f"{100 * fraction:.1f}%"
    for decimals in range(1, 10):
        text = f"{100 * fraction:.{decimals}f}"
        if float(text) not in (0.0, 100.0):
            return text + "%"
    return "<100%" if fraction > 0.5 else ">0%"


def _check(ok):
    return "[green]✓[/]" if ok else "[red]✗[/]"


def render(result, console):
    """Print a TraceResult section by section, in the order of the forward pass."""
    from rich.rule import Rule
    from rich.table import Table

    acts, s = result.activations, result.sections

    card = load_card(result.settings.get("architecture"))

    def heading(key, extra=""):
        c = BY_KEY[key]
        console.print()
        console.print(Rule(f"[bold]{c.number} · {c.title_for(card)}[/]{extra}", align="left"))

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
                      percent_of(st["zero_fraction"]))
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
                  percent_of(row["relu2_zero_fraction"]))
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
    cap = h["softcap"]
    stats_table([("logits before softcap", h["raw"]), (f"{cap:g}·tanh(logits/{cap:g})", h["capped"])])
    console.print(f"max |logit| {h['max_abs_raw']:.4g} → {h['max_abs_capped']:.4g} (≤ {cap:g} "
                  f"{_check(h['max_abs_capped'] <= cap)}); "
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
                  _fmt(max(abs(st["min"]), abs(st["max"]))), percent_of(st["zero_fraction"]))
    console.print(t)
    console.print("gradient RMS along the residual stream (∂loss/∂x): " +
                  ", ".join(f"{row['name'].removeprefix('transformer.').removesuffix('.grad')} {row['rms']:.3g}"
                            for row in g["residual_stream"]))

    _render_modern(console, stats_table, s, heading)
    _render_scaling(console, s["scaling"], heading)


def _render_modern(console, stats_table, s, heading):
    """The modern components (rows 13-18) the traced model has on."""
    if "sliding_window" in s:
        w = s["sliding_window"]
        heading("sliding_window", f"  (pattern {w['pattern']}, last layer long)")
        console.print("left window per layer (a query sees itself and W keys before it): "
                      + ", ".join(f"{i}: {win}" for i, win in enumerate(w["windows"]))
                      + f"  {_check(w['windows'] == w['card_windows'])} as the card says")
    if "value_embeddings" in s:
        v = s["value_embeddings"]
        heading("value_embeddings", f"  (layers {', '.join(map(str, v['layers']))})")
        console.print(f"on layers {v['layers']} {_check(v['layers'] == v['card_layers'])}; "
                      f"gate = {v['gate_scale']:g}·sigmoid(ve_gate(x[..., :12])) per kv head, added times ve to V")
        stats_table([(f"layer {i} value embedding", name) for i, name in v["embeddings"].items()]
                    + [(f"layer {i} gate [dim](derived from the raw gate)[/]", st) for i, st in v["gates"].items()])
    if "lambdas" in s:
        lam = s["lambdas"]
        heading("lambdas")
        console.print("x = resid_lambda·x + x0_lambda·x0 before each block: resid "
                      + ", ".join(f"{x:.4g}" for x in lam["resid"]) + "; x0 " + ", ".join(f"{x:.4g}" for x in lam["x0"]))
    if "smear" in s:
        sm = s["smear"]
        heading("smear")
        console.print(f"x_t += smear_lambda·sigmoid(smear_gate(x_t[:{sm['channels']}]))·x_(t-1); "
                      f"smear_lambda {sm['lambda']:.4g}")
        if sm["gate"] is not None:
            stats_table([("smear gate [dim](derived from the raw gate)[/]", sm["gate"])])
    if "backout" in s:
        b = s["backout"]
        heading("backout")
        console.print(f"x_last − backout_lambda·x_mid before the final norm: lambda {b['lambda']:.4g}, "
                      f"x_mid = output of block {b['layer']}")
    if "padded_vocab" in s:
        pv = s["padded_vocab"]
        heading("padded_vocab")
        console.print(f"wte and lm_head hold {pv['rows']:,} rows for vocab_size {pv['vocab_size']:,} "
                      f"(a multiple of {pv['multiple']}); the logits are sliced back to {pv['vocab_size']:,}")


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
    console.print(f"sparsity: {percent_of(m['relu_zero_fraction'])} zeros after ReLU, "
                  f"{percent_of(m['relu2_zero_fraction'])} after squaring; [dim]derived:[/] act = ReLU(fc)², "
                  f"max |Δ| {_fmt(m['relu2_error'])}")


def _render_scaling(console, sc, heading):
    from rich.table import Table
    heading("scaling")
    for key, title in (("traced", "the traced model"),
                       ("target", f"depth {sc['target']['depth']}, the card's {sc['target']['millions']}M target "
                                  f"(built on the meta device)")):
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


