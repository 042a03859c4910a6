"""
What the trace shows of each component: from the cache of one traced iteration (hooks.py), the facts of the
component table's rows, in plain numbers and names. What is derived for display (ReLU before squaring, the
attention weights, identity checks) is marked so; everything else was observed.
"""

import math
from dataclasses import asdict

import torch

from nanochat_verify.card import FEATURES
from nanochat_verify.components import COMPONENTS
from nanochat_verify.scaling import build_on_meta, closed_form_counts, config_kwargs_for_depth, measured_counts
from nanochat_verify.trace.stats import TensorStats

MASK_CORNER = 8  # the causal mask and attention weights are drawn for at most this many positions


class TraceError(Exception):
    """The traced implementation does not behave as the contract says (a tensor of the wrong shape)."""


def _max_abs(a, b, what="the two tensors"):
    """The largest difference between two tensors that should be equal; TraceError, naming both
    shapes, when they cannot even be compared."""
    if a.shape != b.shape:
        raise TraceError(f"cannot compare {what}: shapes {tuple(a.shape)} and {tuple(b.shape)} differ")
    return (a.double() - b.double()).abs().max().item()


def _stats(t):
    return asdict(TensorStats.of(t))


def summarise(impl, model, cache, settings, card):
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
            "gate_channels": card.value_embeddings["gate_channels"],
            "gates": {i: _stats(scale * torch.sigmoid(cache[f"transformer.h.{i}.attn.ve_gate.output"].float()))
                      for i in layers if f"transformer.h.{i}.attn.ve_gate.output" in cache},
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
    for component in COMPONENTS:  # a component declared since, without a section of its own: what it declares
        if component.feature and on[component.feature] and component.key not in sections:
            sections[component.key] = _declared_section(model, cache, component, card)
    return sections


def _declared_section(model, cache, component, card):
    """A modern component's parameter groups as declared (nanochat_verify/components.py): the parameters' stats
    and, for the modules the tracer hooks, their outputs' stats."""
    params = dict(model.named_parameters())
    groups = {}
    for group in component.parameters:
        names = [n for n in params if n == group.name or (group.module and n.startswith(
            group.module.split("{i}")[0]) and n.endswith(group.module.split("{i}")[-1] + ".weight"))]
        groups[group.name] = {"parameters": {n: _stats(params[n]) for n in names},
                              "outputs": {n: f"{n.removesuffix('.weight')}.output" for n in names
                                          if f"{n.removesuffix('.weight')}.output" in cache}}
    return {"declared": True, "settings": card.settings(component.feature), "groups": groups}


def _loss_section(cache, cfg):
    loss = cache["loss"].item()
    return {"loss": loss, "uniform_loss": math.log(cfg.vocab_size), "perplexity": math.exp(loss),
            "logits_shape": list(cache["logits"].shape), "per_iteration": None}


def _gradient_section(cache, L):
    stream = [{"name": name, "rms": cache.stats(name).rms}
              for name in ["transformer.wte.output.grad"] + [f"transformer.h.{i}.output.grad" for i in range(L)]
              if name in cache]
    return {"residual_stream": stream, "per_iteration": None}


def scaling_section(impl, model, card):
    def table(config, built):
        counts = {"closed_form": closed_form_counts(config, card), "measured": measured_counts(built, card)}
        counts["matches"] = counts["closed_form"] == counts["measured"]
        counts["flops_per_token"] = built.estimate_flops() if hasattr(built, "estimate_flops") else None
        counts["config"] = {k: getattr(config, k) for k in
                            ("sequence_len", "vocab_size", "n_layer", "n_head", "n_kv_head", "n_embd")}
        return counts
    target_config = impl.GPTConfig(**config_kwargs_for_depth(card.target_depth))
    return {"traced": table(model.config, model),
            "target": {"depth": card.target_depth, "millions": card.target_millions}
            | table(target_config, build_on_meta(impl, target_config))}
