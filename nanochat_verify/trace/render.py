"""
The terminal and picture side of the tracer: a TraceResult (plain data, see training.py) shown section by
section in the order of the component table (the seed's 1-12, then the modern components 13-18), as rich
tables, and as a PNG with matplotlib. Nothing here touches a model; everything shown was computed by
`run_trace`.

Every check shown (✓ or ✗) is measured against the architecture card the trace was told; `render` returns
the checks that failed, and the command line exits non-zero when there is one.
"""

import math
import os

from nanochat_verify.components import COMPONENTS


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


# tolerances of the derived identity checks: what float32 arithmetic allows, and what bfloat16 rotary tables
# allow for the vector lengths (cos² + sin² is 1 only to bfloat16's precision)
EXACT = 1e-5
LOW_PRECISION_TABLES = 2e-2


class Sections:
    """One trace shown on a console, a method per component; `failed` collects the checks that did not hold."""

    def __init__(self, result, console, card):
        self.result, self.console, self.card = result, console, card
        self.acts, self.s = result.activations, result.sections
        self.failed = []

    # ---- shared pieces ---------------------------------------------------------------------------

    def check(self, ok, what):
        """✓ or ✗, and a failed check remembered with what it checked."""
        if not ok:
            self.failed.append(what)
        return "[green]✓[/]" if ok else "[red]✗[/]"

    def heading(self, key, extra=""):
        from rich.rule import Rule
        c = next(c for c in COMPONENTS if c.key == key)
        self.console.print()
        self.console.print(Rule(f"[bold]{c.number} · {c.title_for(self.card)}[/]{extra}", align="left"))

    def stats_table(self, rows):
        """rows: (label, cached name or stats dict)."""
        from rich.table import Table
        t = Table(box=None, padding=(0, 1), header_style="bold")
        for col in ("tensor", "shape", "mean", "std", "min", "max", "rms", "zeros"):
            t.add_column(col, justify="left" if col in ("tensor", "shape") else "right")
        for label, ref in rows:
            st = self.acts.get(ref) if isinstance(ref, str) else ref
            if st is None:
                t.add_row(label, "[dim]not observed[/]", *[""] * 6)
                continue
            if isinstance(ref, str) and st.get("derived"):
                label += " [dim](derived layout)[/]"
            t.add_row(label, _fmt(st["shape"]), *(_fmt(st[k]) for k in ("mean", "std", "min", "max", "rms")),
                      percent_of(st["zero_fraction"]))
        self.console.print(t)

    def table(self, columns, rows, left=()):
        from rich.table import Table
        t = Table(box=None, padding=(0, 1), header_style="bold")
        for col in columns:
            t.add_column(col, justify="left" if col in left else "right")
        for row in rows:
            t.add_row(*row)
        self.console.print(t)

    # ---- the header --------------------------------------------------------------------------------

    def header(self):
        from rich.rule import Rule
        r, cfg, st = self.result, self.result.config, self.result.settings
        print_ = self.console.print
        print_(Rule("[bold]nanochat trace[/]"))
        print_(f"implementation  {r.implementation}")
        print_(f"architecture    card {self.card.name}: {self.card.title}")
        print_(f"config          n_layer={cfg['n_layer']} n_embd={cfg['n_embd']} n_head={cfg['n_head']} "
               f"n_kv_head={cfg['n_kv_head']} head_dim={cfg['head_dim']} vocab_size={cfg['vocab_size']} "
               f"sequence_len={cfg['sequence_len']}")
        print_(f"training        {st['num_iterations']} iterations of AdamW (lr {st['lr']:g}), batch "
               f"{st['batch_size']} x {cfg['sequence_len']} bytes of the built-in text, seed {st['seed']}")
        print_(f"first sequence  {r.sample[:70]!r}")
        losses = r.losses
        print_(f"loss            {' → '.join(f'{x:.4f}' for x in losses)}  "
               f"{self.check(len(losses) < 2 or losses[-1] < losses[0], 'the loss falls over the iterations')} "
               f"(shown below: the tensors of iteration {len(losses)})")

    # ---- 1-12 --------------------------------------------------------------------------------------

    def embedding(self):
        e = self.s["embedding"]
        self.heading("embedding")
        self.console.print(f"wte.weight {_fmt(e['wte_weight_shape'])} (vocab_size, n_embd): token ids "
                           f"{_fmt(e['idx_shape'])} → vectors, then RMSNorm")
        self.stats_table([("wte(idx)  before RMSNorm", e["before_norm"]), ("norm(wte(idx))  after", e["after_norm"])])

    def rope(self):
        r = self.s["rope"]
        self.heading("rope")
        self.console.print(f"buffers cos, sin {_fmt(r['cos']['shape'])} {r['cos']['dtype']}: "
                           f"{r['rotary_positions']:,} positions precomputed, no learned parameters")
        self.stats_table([("cos", r["cos"]), ("sin", r["sin"]),
                          (f"block {r['block']} q  before rotation", r["q"]), ("q  after rotation", r["q_rope"]),
                          ("k  before rotation", r["k"]), ("k  after rotation", r["k_rope"])])
        tolerance = LOW_PRECISION_TABLES if r["cos"]["dtype"] in ("bfloat16", "float16") else EXACT
        v = (f"V reaches attention unrotated (max |Δ| {_fmt(r['v_unrotated'])}) "
             f"{self.check(r['v_unrotated'] < EXACT, 'RoPE leaves V alone')}" if r["v_unrotated"] is not None
             else "V: no SDPA call to compare at")
        self.console.print(
            f"[dim]derived:[/] position 0 unchanged (max |Δ| {_fmt(r['position0_unchanged'])}) "
            f"{self.check(r['position0_unchanged'] < EXACT, 'RoPE leaves position 0 unchanged')}; vector lengths "
            f"kept (max relative change {_fmt(r['length_change'])}, {r['cos']['dtype']} tables) "
            f"{self.check(r['length_change'] < tolerance, 'RoPE keeps vector lengths')}; {v}")

    def block_stack(self):
        b = self.s["block_stack"]
        self.heading("block_stack", f"  ({b['n_layer']} blocks; in detail: {', '.join(map(str, b['detailed']))})")
        self.table(("block", "input rms", "attn out rms", "mlp out rms", "output rms", "∂loss/∂output rms",
                    "ReLU² zeros"),
                   [(f"{row['block']}{'*' if row['detailed'] else ''}",
                     *(_fmt(row[k]) for k in ("input_rms", "attn_output_rms", "mlp_output_rms", "output_rms",
                                              "output_grad_rms")),
                     percent_of(row["relu2_zero_fraction"])) for row in b["layers"]])
        self.console.print("[dim]* shown in detail in sections 4, 5 and 7; x = x + attn(norm(x)); x = x + mlp(norm(x))[/]")

    def block(self):
        for blk in self.s["block"]["blocks"]:
            i = blk["block"]
            self.heading("block", f"  — block {i}")
            self.stats_table([("x  block input", blk["input"]), ("norm(x)  attention input", blk["attn_input"]),
                              ("attn(norm(x))", blk["attn_output"]), ("norm(x + attn)  MLP input", blk["mlp_input"]),
                              ("mlp(norm(x))", blk["mlp_output"]), ("block output", blk["output"])])
            ok = blk["residual_identity_error"] < 1e-4
            self.console.print(f"[dim]derived:[/] output = input + attn + mlp, max |Δ| "
                               f"{_fmt(blk['residual_identity_error'])} "
                               f"{self.check(ok, f'block {i}: output = input + attn + mlp')}")

    def attention(self):
        overall = self.s["attention"]
        for a in overall["blocks"]:
            self._attention_block(overall, a)

    def _attention_block(self, overall, a):
        i, nm = a["block"], a["names"]
        self.heading("attention", f"  — block {i}")

        def row(label, key):
            return (label, nm.get(key, f"transformer.h.{i}.attn.{key}"))
        print_ = self.console.print
        print_("[bold]projections[/] c_q, c_k, c_v as heads (B, T, heads, head_dim)")
        self.stats_table([row("q = c_q(x)", "q"), row("k = c_k(x)", "k"), row("v = c_v(x)", "v")])
        print_("[bold]RoPE[/] on q and k only, [bold]then QK norm[/] (RMSNorm of each head vector)")
        self.stats_table([row("q rotated", "q_rope"), row("k rotated", "k_rope"), row("q normed", "q_norm"),
                          row("k normed", "k_norm")])
        H, Hkv = overall["n_head"], overall["n_kv_head"]
        if overall["group_size"] > 1:
            print_(f"[bold]grouped-query attention[/] {H}:{Hkv} — query head h reads kv head h // "
                   f"{overall['group_size']}; KV cache {overall['kv_cache_bytes_per_token']:,} bytes/token instead "
                   f"of {overall['kv_cache_bytes_per_token_without_gqa']:,} ({overall['kv_cache_saving']:g}x smaller, "
                   f"{overall['kv_cache_bytes_at_sequence_len']:,} bytes at the full sequence length)")
        else:
            hint = f"; a divisor of {H} below it as --n-kv-head would shrink it" if H > 1 else ""
            print_(f"[bold]multi-head attention[/] {H}:{Hkv} (n_kv_head = n_head: no grouping); KV cache "
                   f"{overall['kv_cache_bytes_per_token']:,} bytes/token{hint}")
        call = a["sdpa_call"]
        how = (f"torch SDPA called with {', '.join(f'{k}={v}' for k, v in call.items())}" if call is not None
               else "computed without torch's SDPA (tensors below are layouts of the observed q, k, v, heads)")
        print_(f"[bold]scaled dot-product attention[/] softmax(q·kᵀ/√d + causal mask)·v — {how}")
        self.stats_table([row("q at attention", "sdpa_q"), row("k at attention", "sdpa_k"),
                          row("v at attention", "sdpa_v"), row("attention output", "sdpa_out")])
        n = len(a["mask_corner"])
        print_(f"[bold]causal mask and softmax weights[/] (head 0, sequence 0, first {n} positions; "
               f"[dim]derived from q_norm, k_norm and the card's QK gain {self.card.qk_gain:g}[/])")
        self.table(("query", *map(str, range(n))),
                   [(str(r_), *(f"{w:.2f}" if allowed else "[dim]·[/]" for allowed, w in zip(mask_row, weights)))
                    for r_, (mask_row, weights) in enumerate(zip(a["mask_corner"], a["pattern_corner"]))],
                   left=("query",))
        reproduces = self.check(a["pattern_reproduces_output"] < 1e-4,
                                f"block {i}: softmax(q·k/√d)·v with the card's QK gain reproduces the attention output")
        print_(f"[dim]derived:[/] rows sum to 1 (max |Δ| {_fmt(a['softmax_row_sum_error'])}); weights·v reproduce "
               f"the observed output (max |Δ| {_fmt(a['pattern_reproduces_output'])}) {reproduces}; entropy per head "
               f"{', '.join(f'{e:.2f}' for e in a['entropy_per_head'])} nats")
        print_("[bold]heads concatenated[/] (B, H, T, D) → (B, T, H·D), [bold]then c_proj[/]")
        self.stats_table([row("heads side by side", "heads_concat"), row("c_proj output", "output")])

    def rmsnorm(self):
        n = self.s["rmsnorm"]
        self.heading("rmsnorm")
        rows = []
        for key, label in (("after_embedding", "after the embedding"), ("pre_attention", "before attention"),
                           ("pre_mlp", "before the MLP"), ("final", "before the LM head")):
            lo, hi = n[key]["rms"]
            rows.append((label, n[key]["name"], f"{lo:.4f} … {hi:.4f}"))
        self.table(("where", "tensor", "rms (min … max over blocks)"), rows, left=("where", "tensor"))
        self.console.print(f"x / sqrt(mean(x²) + eps) over the last dim; learnable parameters: "
                           f"{len(n['learnable_parameters'])} "
                           f"{self.check(not n['learnable_parameters'], 'RMSNorm has no learnable parameters')}")

    def mlp(self):
        for m in self.s["mlp"]["blocks"]:
            self.heading("mlp", f"  — block {m['block']}")
            self.console.print(f"n_embd → {self.card.mlp_ratio}·n_embd → n_embd, ReLU² in between, no bias")
            self.stats_table([("MLP input", m["input"]), ("c_fc", m["fc"]),
                              ("ReLU [dim](derived: fc.clamp(min=0))[/]", m["relu"]),
                              ("ReLU² = c_proj input", m["act"]), ("c_proj output", m["output"])])
            ok = self.check(m["relu2_error"] <= EXACT * max(1.0, m["relu"]["max"] ** 2),
                            f"block {m['block']}: the MLP's activation is ReLU(c_fc)²")
            self.console.print(f"sparsity: {percent_of(m['relu_zero_fraction'])} zeros after ReLU, "
                               f"{percent_of(m['relu2_zero_fraction'])} after squaring; [dim]derived:[/] act = "
                               f"ReLU(fc)², max |Δ| {_fmt(m['relu2_error'])} {ok}")

    def lm_head(self):
        h = self.s["lm_head"]
        self.heading("lm_head")
        self.console.print(f"lm_head.weight {_fmt(h['weight_shape'])}, untied from wte "
                           f"{self.check(h['untied'], 'lm_head is untied from wte')}")
        cap = h["softcap"]
        self.stats_table([("logits before softcap", h["raw"]), (f"{cap:g}·tanh(logits/{cap:g})", h["capped"])])
        bounded = self.check(h["max_abs_capped"] <= cap, f"|logits| <= the card's softcap {cap:g}")
        identity = self.check(h["softcap_error"] <= 1e-4 * max(1.0, cap),
                              f"logits = {cap:g}·tanh(raw/{cap:g}) (the card's softcap; the implementation's differs "
                              f"by up to {h['softcap_error']:.3g})")
        self.console.print(f"max |logit| {h['max_abs_raw']:.4g} → {h['max_abs_capped']:.4g} (≤ {cap:g} {bounded}); "
                           f"[dim]derived:[/] softcap identity max |Δ| {_fmt(h['softcap_error'])} {identity}")

    def final_norm(self):
        f = self.s["final_norm"]
        self.heading("final_norm")
        self.stats_table([("last block output", f["before"]), ("norm(x)  LM head input", f["after"])])

    def scaling(self):
        sc = self.s["scaling"]
        self.heading("scaling")
        for key, title in (("traced", "the traced model"),
                           ("target", f"depth {sc['target']['depth']}, the card's {sc['target']['millions']}M target "
                                      f"(built on the meta device)")):
            part = sc[key]
            c, m = part["config"], part["measured"]
            self.console.print(f"[bold]{title}[/]: n_layer={c['n_layer']} n_embd={c['n_embd']} n_head={c['n_head']} "
                               f"n_kv_head={c['n_kv_head']} vocab_size={c['vocab_size']:,}")
            rows = (("wte (token embedding)", "wte"), ("lm_head (untied)", "lm_head"),
                    ("attention, per block", "attn_per_block"), ("MLP, per block", "mlp_per_block"),
                    ("one block", "per_block"), (f"{c['n_layer']} blocks", "blocks"), ("total", "total"))
            self.table(("component", "parameters", "share", "closed form"),
                       [(label, f"{m[k]:,}", f"{100 * m[k] / m['total']:.1f}%",
                         self.check(m[k] == part["closed_form"][k], f"{title}: {label} as the closed form counts"))
                        for label, k in rows], left=("component",))
            flops = part["flops_per_token"]
            self.console.print(
                f"total {m['total']:,} parameters ({m['total'] / 1e6:.1f}M), closed form 2·V·d + L·(attn + MLP) "
                f"{self.check(part['matches'], f'{title}: every count as the closed form gives it')}; training FLOPs "
                f"per token (GPT.estimate_flops, T={c['sequence_len']}): "
                + (f"{flops:,} ({flops / 1e9:.2f} GFLOP)" if flops is not None else "— (not provided)"))

    def loss(self):
        lo = self.s["loss"]
        self.heading("loss")
        rows, previous = [], None
        for it in self.result.iterations:
            rows.append((str(it["iteration"]), f"{it['loss']:.4f}",
                         "" if previous is None else f"{it['loss'] - previous:+.4f}", f"{it['seconds']:.2f}"))
            previous = it["loss"]
        self.table(("iteration", "loss", "change", "seconds"), rows)
        self.console.print(f"cross-entropy of logits {_fmt(lo['logits_shape'])} against the next bytes; "
                           f"ln(vocab_size) = {lo['uniform_loss']:.4f} is the uniform guess; last perplexity "
                           f"{lo['perplexity']:.2f}")

    def gradients(self):
        g = self.s["gradients"]
        self.heading("gradients")
        self.table(("iteration", "grad norm", "parameters with nonzero grad"),
                   [(str(it["iteration"]), f"{it['grad_norm']:.4g}",
                     f"{it['nonzero_grads']}" + (f"  ({', '.join(it['nonzero_grad_names'])})"
                                                 if it["nonzero_grad_names"] else ""))
                    for it in g["per_iteration"]])
        self.console.print(f"parameter gradients, iteration {len(self.result.iterations)}")
        self.table(("parameter", "shape", "norm", "rms", "max |g|", "zeros"),
                   [(name, _fmt(st["shape"]), _fmt(st["norm"]), _fmt(st["rms"]),
                     _fmt(max(abs(st["min"]), abs(st["max"]))), percent_of(st["zero_fraction"]))
                    for name, st in self.result.gradients.items()], left=("parameter", "shape"))
        self.console.print("gradient RMS along the residual stream (∂loss/∂x): " +
                           ", ".join(f"{row['name'].removeprefix('transformer.').removesuffix('.grad')} {row['rms']:.3g}"
                                     for row in g["residual_stream"]))

    # ---- 13-18: the modern components the traced model has on -------------------------------------

    def sliding_window(self):
        w = self.s["sliding_window"]
        self.heading("sliding_window", f"  (pattern {w['pattern']}, last layer long)")
        self.console.print("left window per layer (a query sees itself and W keys before it): "
                           + ", ".join(f"{i}: {win}" for i, win in enumerate(w["windows"]))
                           + f"  {self.check(w['windows'] == w['card_windows'], 'the windows are the card’s')} "
                             "as the card says")

    def value_embeddings(self):
        v = self.s["value_embeddings"]
        self.heading("value_embeddings", f"  (layers {', '.join(map(str, v['layers']))})")
        self.console.print(f"on layers {v['layers']} "
                           f"{self.check(v['layers'] == v['card_layers'], 'value embeddings on the card’s layers')}; "
                           f"gate = {v['gate_scale']:g}·sigmoid(ve_gate(x[..., :{v['gate_channels']}])) per kv head, "
                           f"added times ve to V")
        self.stats_table([(f"layer {i} value embedding", name) for i, name in v["embeddings"].items()]
                         + [(f"layer {i} gate [dim](derived from the raw gate)[/]", st) for i, st in v["gates"].items()])

    def lambdas(self):
        lam = self.s["lambdas"]
        self.heading("lambdas")
        self.console.print("x = resid_lambda·x + x0_lambda·x0 before each block: resid "
                           + ", ".join(f"{x:.4g}" for x in lam["resid"]) + "; x0 "
                           + ", ".join(f"{x:.4g}" for x in lam["x0"]))

    def smear(self):
        sm = self.s["smear"]
        self.heading("smear")
        self.console.print(f"x_t += smear_lambda·sigmoid(smear_gate(x_t[:{sm['channels']}]))·x_(t-1); "
                           f"smear_lambda {sm['lambda']:.4g}")
        if sm["gate"] is not None:
            self.stats_table([("smear gate [dim](derived from the raw gate)[/]", sm["gate"])])

    def backout(self):
        b = self.s["backout"]
        self.heading("backout")
        self.console.print(f"x_last − backout_lambda·x_mid before the final norm: lambda {b['lambda']:.4g}, "
                           f"x_mid = output of block {b['layer']}")

    def declared(self, key):
        """A component with no section of its own: its card values and its declared parameter groups."""
        d = self.s[key]
        self.heading(key)
        if d["settings"]:
            self.console.print("card: " + ", ".join(f"{k} = {v}" for k, v in d["settings"].items()))
        rows = [(name, st) for g in d["groups"].values() for name, st in g["parameters"].items()]
        rows += [(f"{name} [dim](output)[/]", ref) for g in d["groups"].values() for name, ref in g["outputs"].items()]
        self.stats_table(rows)

    def padded_vocab(self):
        pv = self.s["padded_vocab"]
        self.heading("padded_vocab")
        self.console.print(f"wte and lm_head hold {pv['rows']:,} rows for vocab_size {pv['vocab_size']:,} "
                           f"(a multiple of {pv['multiple']}); the logits are sliced back to {pv['vocab_size']:,}")


def render(result, console, card):
    """Print a TraceResult, a section per component in the order of the component table; return the
    descriptions of the checks that failed (empty: every check held)."""
    sections = Sections(result, console, card)
    sections.header()
    for component in COMPONENTS:
        if component.key in result.sections:
            if result.sections[component.key].get("declared"):
                sections.declared(component.key)
            else:
                getattr(sections, component.key)()
    if sections.failed:
        console.print()
        console.print(f"[bold red]{len(sections.failed)} check(s) failed against the card {card.name}:[/] "
                      + "; ".join(sections.failed))
    return sections.failed


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


