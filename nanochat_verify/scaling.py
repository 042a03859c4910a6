"""
Model scaling: nanochat's depth -> config rule, closed-form parameter counts, and the breakdown of
a built model by component. Large models are built on the `meta` device, which allocates nothing.
"""

import math

import torch

from nanochat_verify.components import COMPONENTS

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
    """Parameter counts from the architecture's formulas alone (no model built): the SPEC's 2*V*d + L*(attn + mlp)
    for the seed components, plus, with a card, the parameter groups that the modern components it has on in this
    config declare (nanochat_verify/components.py), with the vocabulary padded where the card pads it."""
    d, V, L = config.n_embd, config.vocab_size, config.n_layer
    kv_dim = config.n_kv_head * (d // config.n_head)
    ratio = card.mlp_ratio if card is not None else 4
    if card is not None and card.active("padded_vocab", config):
        V = card.padded_vocab_size(V)
    attn = d * d + 2 * d * kv_dim + d * d  # c_q, c_k + c_v, c_proj
    mlp = 2 * ratio * d * d  # c_fc, c_proj
    per_layer_attn, value_embeds, scalars = [0] * L, 0, 0
    groups = [] if card is None else [g for c in COMPONENTS if c.feature and card.active(c.feature, config)
                                      for g in c.parameters]
    for group in groups:
        n = group.count(card, config, V)
        layers = range(L) if group.layers is None else group.layers(card, L)
        if group.where == "attn":
            for i in layers:
                per_layer_attn[i] += n
        elif group.where == "embedding":
            value_embeds += n * len(layers)
        else:
            scalars += n
    blocks = L * (attn + mlp) + sum(per_layer_attn)
    return {
        "wte": V * d,
        "lm_head": V * d,
        "attn_per_block": attn + per_layer_attn[0],
        "mlp_per_block": mlp,
        "per_block": attn + mlp + per_layer_attn[0],
        "blocks": blocks,
        "value_embeds": value_embeds,
        "scalars": scalars,
        "total": 2 * V * d + blocks + value_embeds + scalars,
    }


def measured_counts(model, card=None):
    """The same breakdown, counted from a built model's parameters (works on the meta device). The parameters of
    the card's extras (parts the component table does not model, declared in the card) are left out."""
    declared = {id(p) for name, p in model.named_parameters() if card is not None and name in card.extra_parameters()}

    def count(module):
        return sum(p.numel() for p in module.parameters() if id(p) not in declared)
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
