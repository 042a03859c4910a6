"""
Model scaling: nanochat's depth -> config rule, closed-form parameter counts, and the breakdown of
a built model by component. Large models are built on the `meta` device, which allocates nothing.
"""

import math

import torch

NANOCHAT_VOCAB_SIZE = 2**16
ASPECT_RATIO = 64  # n_embd = 64 * depth
HEAD_DIM_TARGET = 128  # n_head = ceil(n_embd / 128)


def config_kwargs_for_depth(depth, vocab_size=NANOCHAT_VOCAB_SIZE, sequence_len=2048):
    """nanochat's rule: n_layer = depth, n_embd = 64*depth, n_head = ceil(n_embd/128), n_kv_head = n_head."""
    if isinstance(depth, bool) or not isinstance(depth, int) or depth <= 0:
        raise ValueError(f"depth must be a positive integer, got {depth!r}")
    n_embd = ASPECT_RATIO * depth
    n_head = max(1, math.ceil(n_embd / HEAD_DIM_TARGET))
    return dict(sequence_len=sequence_len, vocab_size=vocab_size, n_layer=depth,
                n_head=n_head, n_kv_head=n_head, n_embd=n_embd)


def closed_form_counts(config, card=None):
    """Parameter counts from the architecture's formulas alone (no model built). With a card, the modern
    components it has on in this config count too: padded vocabulary rows, value embeddings and their gates,
    the per-layer lambdas, the smear gate and lambda, the backout lambda."""
    d, V, L = config.n_embd, config.vocab_size, config.n_layer
    kv_dim = config.n_kv_head * (d // config.n_head)
    on = (lambda f: card.active(f, config)) if card is not None else (lambda f: False)
    ratio = card.mlp_ratio if card is not None else 4
    if on("padded_vocab"):
        V = card.padded_vocab_size(V)
    ve_layers = card.ve_layers(L) if on("value_embeddings") else []
    gate = card.value_embeddings["gate_channels"] * config.n_kv_head if ve_layers else 0
    attn = d * d + 2 * d * kv_dim + d * d  # c_q, c_k + c_v, c_proj
    mlp = 2 * ratio * d * d  # c_fc, c_proj
    value_embeds = len(ve_layers) * V * kv_dim
    scalars = (2 * L if on("lambdas") else 0) + (card.smear["channels"] + 1 if on("smear") else 0) + \
        (1 if on("backout") else 0)
    blocks = L * (attn + mlp) + len(ve_layers) * gate
    return {
        "wte": V * d,
        "lm_head": V * d,
        "attn_per_block": attn + (gate if 0 in ve_layers else 0),
        "mlp_per_block": mlp,
        "per_block": attn + mlp + (gate if 0 in ve_layers else 0),
        "blocks": blocks,
        "value_embeds": value_embeds,
        "scalars": scalars,
        "total": 2 * V * d + blocks + value_embeds + scalars,
    }


def measured_counts(model):
    """The same breakdown, counted from a built model's parameters (works on the meta device)."""
    def count(module):
        return sum(p.numel() for p in module.parameters())
    blocks = list(model.transformer.h)
    counts = {
        "wte": count(model.transformer.wte),
        "lm_head": count(model.lm_head),
        "attn_per_block": count(blocks[0].attn),
        "mlp_per_block": count(blocks[0].mlp),
        "per_block": count(blocks[0]),
        "blocks": sum(count(b) for b in blocks),
        "value_embeds": count(model.value_embeds) if hasattr(model, "value_embeds") else 0,
        "total": count(model),
    }
    counts["scalars"] = counts["total"] - counts["wte"] - counts["lm_head"] - counts["blocks"] - counts["value_embeds"]
    return counts


def build_on_meta(impl, config):
    """Build `impl.GPT(config)` on the meta device: shapes and counts, no memory."""
    with torch.device("meta"):
        return impl.GPT(config)
