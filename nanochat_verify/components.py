"""
The component table: the 12 components and 26 sub-components of the seed document, the modern
components of nanochat 92d63d4 (rows 13-18, present when the architecture card has them), and the
supporting areas beyond it (inference, the contract, the project's tools).

Every test carries `@pytest.mark.component(ID, ...)` with IDs from here. An ID is either a
sub-component (`attention.qk_norm`) or a whole component (`rmsnorm`), which stands for all of its
sub-components. `code` names the functions and classes of a contract implementation that implement
the component; the coverage report turns them into line references from the live source ("a|b":
the first of these names that the implementation defines). Titles may hold `{field}`s of the
architecture card (nanochat/architecture.py), filled in by `title_for`.
"""

from dataclasses import dataclass


@dataclass(frozen=True)
class SubComponent:
    id: str
    title: str

    def title_for(self, card):
        return fill(self.title, card)


@dataclass(frozen=True)
class Component:
    key: str
    number: int | None  # row of the seed table; None for the supporting areas beyond it
    title: str
    subcomponents: tuple[SubComponent, ...]
    code: tuple[str, ...]  # qualified names in the implementation module, e.g. "GPT.forward"
    feature: str | None = None  # a modern component: the card feature it is (absent: not applicable)

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


def _c(key, number, title, subs, code, feature=None):
    return Component(key, number, title, tuple(SubComponent(f"{key}.{s}", t) for s, t in subs), tuple(code), feature)


def fill(text, card):
    """A title with the card's values: {softcap}, {rope_base}, {mlp_ratio}, {pattern}, {gate_scale}..."""
    if card is None:
        return text
    values = {**vars(card), **card.sliding_window, **card.value_embeddings, **card.smear, **card.padded_vocab}
    return text.format(**values)


COMPONENTS = (
    _c("embedding", 1, "Token embeddings (wte)", [("wte", "token ids to vectors, normalized")],
       ["GPT.__init__", "GPT.forward"]),
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
    ], ["CausalSelfAttention"]),
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
    ], ["MLP"]),
    _c("lm_head", 8, "Language modeling head",
       [("untied_softcap", "untied projection, {softcap:g}*tanh(x/{softcap:g}) softcap in {logits_dtype}")],
       ["GPT.forward"]),
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
    ], ["GPT._compute_window_sizes|window_sizes", "CausalSelfAttention"], feature="sliding_window"),
    _c("value_embeddings", 14, "Value embeddings", [
        ("layers", "on alternating layers, the last one included"),
        ("gate", "{gate_scale:g}*sigmoid(ve_gate(x[..., :{gate_channels}])) per kv head"),
        ("mixing", "the gated value embedding added to V"),
    ], ["has_ve", "CausalSelfAttention.forward"], feature="value_embeddings"),
    _c("lambdas", 15, "Residual and x0 lambdas", [
        ("init", "per-layer init schedules"),
        ("application", "x = resid_lambda*x + x0_lambda*x0 before each block"),
    ], ["GPT.init_weights", "GPT.forward"], feature="lambdas"),
    _c("smear", 16, "Smear", [
        ("mixing", "the previous token's embedding, gated by x[..., :{channels}]"),
        ("causality", "no position sees a later token"),
    ], ["GPT.forward"], feature="smear"),
    _c("backout", 17, "Backout", [
        ("subtraction", "a learned share of the mid-stack residual subtracted before the final norm"),
    ], ["GPT.forward"], feature="backout"),
    _c("padded_vocab", 18, "Padded vocabulary", [
        ("logits", "logits sliced back to vocab_size"),
        ("parameters", "embedding rows padded to a multiple of {multiple}"),
    ], ["GPT.__init__", "GPT.forward"], feature="padded_vocab"),
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
