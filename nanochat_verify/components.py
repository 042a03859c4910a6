"""
The component table: the 12 components and 26 sub-components of the seed document, the modern
components of nanochat 92d63d4 (rows 13-18, present when the architecture card has them), and the
supporting areas beyond it (inference, the contract, the project's tools).

Every test carries `@pytest.mark.component(ID, ...)` with IDs from here. An ID is either a
sub-component (`attention.qk_norm`) or a whole component (`rmsnorm`), which stands for all of its
sub-components. `code` names the functions and classes of a contract implementation that implement
the component; the coverage report turns them into line references from the live source ("a|b":
the first of these names that the implementation defines). Titles may hold `{field}`s of the
architecture card (nanochat_verify/card.py), filled in by `title_for`.

A component is declared once, here, for everything that reads it: the report (rows, titles, code), the card
(a modern component's `feature`, the `settings` its card table holds, checked by the card's schema), the
parameter count (nanochat_verify/scaling.py sums the `parameters` of the components that are on), the
initialisation rules (each parameter group is a key of the card's [init]), the tracer (it hooks every
parameter group's `module` and shows a section for each component that is on), and the suite's fixtures
(a group's `neutral` value switches the component off for the tests of the others).
"""

from dataclasses import dataclass


@dataclass(frozen=True)
class SubComponent:
    id: str
    title: str

    def title_for(self, card):
        return fill(self.title, card)


@dataclass(frozen=True)
class Setting:
    """A value of a modern component's card table, with what the card's schema accepts."""
    name: str
    kind: str  # "integer" (>= minimum), "number" (finite, > 0), "boolean", "choice", "pattern" (regex)
    choices: tuple = ()  # "choice": the allowed values; "pattern": one regex
    minimum: int = 1  # "integer"
    help: str = ""


@dataclass(frozen=True)
class ParameterGroup:
    """Parameters a component adds to the model: one rule of the card's [init] (its `name`), counted in the
    closed form, hooked by the tracer, and set to `neutral` where the tests of other components switch it off."""
    name: str
    where: str  # "attn": inside the attention of each of its layers; "embedding": a table per layer; "model": once
    count: object  # (card, config, vocab_size) -> parameters of one instance
    layers: object = None  # (card, n_layer) -> the layers that have one; None: one for the whole model
    module: str | None = None  # the module the tracer hooks ("{i}": the layer); None for a bare nn.Parameter
    neutral: float | None = None  # the value at which the component does nothing (None: zero the weights)
    verifies: str | None = None  # the sub-component its init rule is verified under (None: the component's first)

    def instances(self, card, n_layer):
        return 1 if self.layers is None else len(self.layers(card, n_layer))

    def matches(self, parameter_name):
        """Whether a model's parameter belongs to this group: the bare parameter `name`, or the weight of
        `module` at any layer ("value_embeds.{i}" matches value_embeds.3.weight)."""
        if self.module is None:
            return parameter_name == self.name
        parts, pattern = parameter_name.split("."), self.module.replace("{i}", "*").split(".")
        return len(parts) == len(pattern) + 1 and parts[-1] == "weight" and all(
            a == b or (b == "*" and a.isdigit()) for a, b in zip(parts, pattern))


@dataclass(frozen=True)
class Component:
    key: str
    number: int | None  # row of the seed table; None for the supporting areas beyond it
    title: str
    subcomponents: tuple[SubComponent, ...]
    code: tuple[str, ...]  # qualified names in the implementation module, e.g. "GPT.forward"
    feature: str | None = None  # a modern component: the card feature it is (absent: not applicable)
    settings: tuple = ()  # a feature's values in its card table ([smear] channels = 24)
    parameters: tuple = ()  # the ParameterGroups it adds (a feature) or owns (a seed component: init keys only)

    def title_for(self, card):
        return fill(self.title, card)

    def code_names(self, defined):
        """The names of `code` an implementation defines (`defined`: its qualified names): for "a|b",
        the first of the alternatives it has."""
        names = []
        for entry in self.code:
            found = next((n for n in entry.split("|") if n in defined), None)
            if found:
                names.append(found)
        return names


def _c(key, number, title, subs, code, feature=None, settings=(), parameters=()):
    return Component(key, number, title, tuple(SubComponent(f"{key}.{s}", t) for s, t in subs), tuple(code), feature,
                     tuple(settings), tuple(parameters))


def fill(text, card):
    """A title with the card's values: {softcap}, {rope_base}, {mlp_ratio}, {pattern}, {gate_scale}..."""
    if card is None:
        return text
    values = dict(vars(card))
    for feature in card.features:
        values.update(card.settings(feature))
    return text.format(**values)


def _core(name, verifies=None):
    """A seed component's parameter group: only its [init] rule is read from the declaration (the closed form
    of the seed architecture is the SPEC's 2*V*d + L*(attn + mlp), in nanochat_verify/scaling.py)."""
    return ParameterGroup(name, where="core", count=None, verifies=verifies)


def _kv_dim(config):
    return config.n_kv_head * (config.n_embd // config.n_head)


COMPONENTS = (
    _c("embedding", 1, "Token embeddings (wte)", [("wte", "token ids to vectors, normalized")],
       ["GPT.__init__", "GPT.forward"], parameters=[_core("wte")]),
    _c("rope", 2, "Positional embeddings (RoPE)", [("rotary", "rotation by position, base {rope_base:g}")],
       ["apply_rotary_emb", "precompute_rotary|GPT._precompute_rotary_embeddings"]),
    _c("block_stack", 3, "Stack of Block layers", [("layers", "n_layer blocks applied in order")],
       ["GPT.__init__", "GPT.forward"]),
    _c("block", 4, "Block architecture", [
        ("attention_path", "x + attn(norm(x))"),
        ("mlp_path", "x + mlp(norm(x))"),
    ], ["Block"]),
    _c("attention", 5, "CausalSelfAttention", [
        ("projections", "Q, K, V projections"),
        ("rope", "RoPE on Q and K, never V"),
        ("qk_norm", "QK norm"),
        ("gqa", "Multi-query / grouped-query attention"),
        ("sdpa", "Scaled dot-product attention"),
        ("causal_mask", "Causal mask"),
        ("softmax", "Softmax"),
        ("head_concat", "Head concatenation"),
        ("output_projection", "Output projection"),
    ], ["CausalSelfAttention"], parameters=[_core("c_q"), _core("c_k"), _core("c_v"),
                                                _core("attn.c_proj", verifies="output_projection")]),
    _c("rmsnorm", 6, "RMSNorm", [
        ("after_embedding", "after the token embedding"),
        ("pre_attention", "before attention"),
        ("pre_mlp", "before the MLP"),
        ("final", "before the LM head"),
    ], ["norm", "Block.forward", "GPT.forward"]),
    _c("mlp", 7, "MLP", [
        ("fc", "expansion to {mlp_ratio} x n_embd"),
        ("relu2", "ReLU² activation"),
        ("projection", "projection back to n_embd"),
    ], ["MLP"], parameters=[_core("c_fc"), _core("mlp.c_proj", verifies="projection")]),
    _c("lm_head", 8, "Language modeling head",
       [("untied_softcap", "untied projection, {softcap:g}*tanh(x/{softcap:g}) softcap in {logits_dtype}")],
       ["GPT.forward"], parameters=[_core("lm_head")]),
    _c("final_norm", 9, "Final RMSNorm", [("before_lm_head", "unit-RMS input to the LM head")],
       ["GPT.forward"]),
    _c("scaling", 10, "Model scaling ({target_millions}M target)", [
        ("parameter_count", "closed-form parameter counts"),
        ("cost_estimates", "FLOPs, parameter groups and KV bytes the model estimates, from closed forms"),
    ], ["GPT.__init__", "GPT.num_matmul_params", "GPT.estimate_flops", "GPT.num_scaling_params",
        "GPT.estimate_decode_flops", "GPT.estimate_prefill_flops", "GPT.kv_bytes_per_token", "GPT.kv_read_bytes"]),
    _c("loss", 11, "Loss computation", [("cross_entropy", "cross-entropy with ignore_index=-1")],
       ["GPT.forward"]),
    _c("gradients", 12, "Gradient flow", [("backward", "which parameters receive gradient, and when")],
       ["GPT.init_weights"]),
    # the modern components of nanochat 92d63d4 (features of the card; our gpt.py: config options)
    _c("sliding_window", 13, "Sliding-window attention", [
        ("window_sizes", "per-layer windows from the pattern {pattern}, the last layer long"),
        ("keys", "a query sees itself and the W keys before it"),
        ("decoding", "cached decoding equals the full forward past the window"),
    ], ["GPT._compute_window_sizes|window_sizes", "CausalSelfAttention"], feature="sliding_window", settings=[
        Setting("pattern", "pattern", ("^[SL]+$",), help="tiled over the layers; the last layer is always L"),
        Setting("short_divisor", "integer", help="S = sequence_len / short_divisor ..."),
        Setting("tile", "integer", help="... rounded up to a multiple of tile; L = sequence_len"),
        Setting("short_rounding", "choice", ("up_to_tile", "floor"),
                help="up_to_tile: S = ceil(ceil(sequence_len / short_divisor) / tile) * tile; floor: sequence_len // "
                     "short_divisor"),
        Setting("keys", "choice", ("window_plus_one",), help="(W, 0): a query sees itself and the W keys before it"),
    ]),
    _c("value_embeddings", 14, "Value embeddings", [
        ("layers", "on alternating layers, the last one included"),
        ("gate", "{gate_scale:g}*sigmoid(ve_gate(x[..., :{gate_channels}])) per kv head"),
        ("mixing", "the gated value embedding added to V"),
    ], ["has_ve", "CausalSelfAttention.forward"], feature="value_embeddings", settings=[
        Setting("gate_channels", "integer", help="the gate reads x[..., :gate_channels]"),
        Setting("gate_scale", "number", help="gate = gate_scale * sigmoid(ve_gate(x[..., :gate_channels]))"),
        Setting("layers", "choice", ("alternating_with_last",)),
    ], parameters=[
        ParameterGroup("value_embeds", "embedding", lambda card, c, V: V * _kv_dim(c),
                       layers=lambda card, n: card.ve_layers(n), module="value_embeds.{i}", neutral=0.0,
                       verifies="mixing"),
        ParameterGroup("ve_gate", "attn", lambda card, c, V: card.value_embeddings["gate_channels"] * c.n_kv_head,
                       layers=lambda card, n: card.ve_layers(n), module="transformer.h.{i}.attn.ve_gate",
                       verifies="gate"),
    ]),
    _c("lambdas", 15, "Residual and x0 lambdas", [
        ("init", "per-layer init schedules"),
        ("application", "x = resid_lambda*x + x0_lambda*x0 before each block"),
    ], ["GPT.init_weights", "GPT.forward"], feature="lambdas", parameters=[
        ParameterGroup("resid_lambdas", "model", lambda card, c, V: c.n_layer, neutral=1.0),
        ParameterGroup("x0_lambdas", "model", lambda card, c, V: c.n_layer, neutral=0.0),
    ]),
    _c("smear", 16, "Smear", [
        ("mixing", "the previous token's embedding, gated by x[..., :{channels}]"),
        ("causality", "no position sees a later token"),
    ], ["GPT.forward"], feature="smear", settings=[
        Setting("channels", "integer", help="gate = smear_lambda * sigmoid(smear_gate(x[..., :channels]))"),
        Setting("chunks_after_prefix", "boolean", help="the KV cache carries the last embedding into a chunk of any length"),
    ], parameters=[
        ParameterGroup("smear_gate", "model", lambda card, c, V: card.smear["channels"], module="smear_gate"),
        ParameterGroup("smear_lambda", "model", lambda card, c, V: 1, neutral=0.0),
    ]),
    _c("backout", 17, "Backout", [
        ("subtraction", "a learned share of the mid-stack residual subtracted before the final norm"),
    ], ["GPT.forward"], feature="backout", settings=[
        Setting("layer", "choice", ("half",), help="the residual after block n_layer // 2"),
    ], parameters=[
        ParameterGroup("backout_lambda", "model", lambda card, c, V: 1, neutral=0.0),
    ]),
    _c("padded_vocab", 18, "Padded vocabulary", [
        ("logits", "logits sliced back to vocab_size"),
        ("parameters", "embedding rows padded to a multiple of {multiple}"),
    ], ["GPT.__init__", "GPT.forward"], feature="padded_vocab", settings=[
        Setting("multiple", "integer", help="wte and lm_head rows padded to a multiple of this"),
    ]),
)

SUPPORTING = (
    _c("inference", None, "Inference: KV cache, sampling and the engine", [
        ("kv_cache", "incremental decoding equals one full forward"),
        ("generate", "GPT.generate: the sampling stream"),
        ("sampling", "the engine's sample_next_token: argmax at T=0, softmax(logits/T) over the top k"),
        ("engine", "a batch-1 prefill copied into n rows (KVCache.prefill), n streams decoded at once (Engine)"),
    ], ["GPT.generate"]),
    _c("flash_cache", None, "Inference: flash-attention-style KV cache", [
        ("layout", "(L, B, T, H_kv, D) storage, cache_seqlens, advance after the last layer"),
    ], [], feature="flash_kv_cache"),
    _c("contract", None, "The implementation contract", [
        ("interface", "the contract's config fields, forward, KV cache and module names"),
        ("validation", "bad input raises ValueError naming the value"),
        ("oracle", "agreement with the naive reference implementation"),
        ("loading", "--gpt-impl loads any implementation"),
    ], ["GPTConfig", "GPT._check_inputs"]),
    _c("tooling", None, "The project's tools", [
        ("tracer", "python -m nanochat_verify.trace"),
        ("coverage", "python -m nanochat_verify.report"),
        ("mutation", "python -m nanochat_verify.mutation"),
        ("ci", "the README's commands are what CI runs"),
        ("packaging", "the kit installs beside a fork and runs from its root"),
        ("cards", "every card is checked against its schema before any test runs"),
        ("base", "a checkout's base is found by itself, and the run says how"),
        ("observability", "what the suite cannot observe is said, never blamed on a component"),
        ("diagnosis", "a failing test names the value the card declares and the one the implementation has"),
    ], []),
)


@dataclass(frozen=True)
class Highlight:
    title: str
    claim: str
    ids: tuple[str, ...]  # proven by the tests of these (sub-)components ...
    keyword: str = ""  # ... whose names contain this word, if given

    def claim_for(self, card):
        return fill(self.claim, card)


HIGHLIGHTS = (
    Highlight("Pre-norm architecture", "RMSNorm before each sub-layer, never on the residual stream",
              ("rmsnorm.pre_attention", "rmsnorm.pre_mlp", "block")),
    Highlight("Residual connections", "x = x + f(norm(x)): the stream is the embedding plus every branch output",
              ("block", "block_stack")),
    Highlight("RoPE", "position encoded by rotating q and k, no learned parameters", ("rope", "attention.rope")),
    Highlight("QK normalization", "unit-RMS query and key head vectors", ("attention.qk_norm",)),
    Highlight("Multi-query / grouped-query attention", "query head h reads kv head h // (n_head // n_kv_head)",
              ("attention.gqa",)),
    Highlight("Causal masking", "position t attends to positions <= t only", ("attention.causal_mask",)),
    Highlight("Untied embeddings", "wte and lm_head are separate weights", ("lm_head",), "untied"),
    Highlight("ReLU² activation", "relu(x)**2 in a {mlp_ratio}x MLP", ("mlp.relu2",)),
    Highlight("Logit softcapping", "{softcap:g} * tanh(logits / {softcap:g})", ("lm_head",), "softcap"),
    Highlight("No bias terms", "every linear layer is bias-free", ("mlp", "attention", "lm_head"), "bias"),
)

ALL = COMPONENTS + SUPPORTING
FEATURES = tuple(c.feature for c in ALL if c.feature)  # the card's feature tables, in table order
PARAMETER_GROUPS = {p.name: p for c in ALL for p in c.parameters}  # the card's [init] keys
# the sub-component each [init] key is verified under
INIT_OWNER = {p.name: f"{c.key}.{p.verifies}" if p.verifies else c.subcomponents[0].id
              for c in ALL for p in c.parameters}
SEED_COMPONENTS = tuple(c for c in COMPONENTS if c.feature is None)  # the seed document's 12 rows
SUBCOMPONENTS = {s.id: s for c in ALL for s in c.subcomponents}
BY_KEY = {c.key: c for c in ALL}


def expand(component_id):
    """The sub-component IDs an ID stands for; ValueError for an unknown one."""
    if component_id in SUBCOMPONENTS:
        return (component_id,)
    if component_id in BY_KEY:
        return tuple(s.id for s in BY_KEY[component_id].subcomponents)
    raise ValueError(f"unknown component ID {component_id!r}; known: "
                     f"{', '.join(sorted(BY_KEY) + sorted(SUBCOMPONENTS))}")


def component_of(subcomponent_id):
    return BY_KEY[subcomponent_id.split(".", 1)[0]]
