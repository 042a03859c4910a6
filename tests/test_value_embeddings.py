"""Component 14: value embeddings (ResFormer; nanochat 92d63d4). Layers alternate, counted back from the last
one, which always has one; on those layers a per-kv-head gate, gate_scale * sigmoid(ve_gate(x[..., :channels]))
of the attention's input x, adds the token's value embedding to V. Queries and keys are untouched.

V is read off the real computation at position 0, where causal attention has one key only: every head's
output there is exactly the (mixed) value vector of position 0 of its kv head.
"""

import pytest
import torch

B = 8  # sequences: position 0 of each is one reading of V


@pytest.fixture
def ve_model(make_model, make_config):
    config = make_config("value_embeddings", n_layer=4, n_head=4, n_kv_head=2)
    return make_model(config, live=("value_embeddings",))


@pytest.fixture
def batch(ve_model):
    return torch.randint(0, ve_model.config.vocab_size, (B, 2), generator=torch.Generator().manual_seed(4))


def mixed_v_at_position_0(cache, layer, config):
    """(B, Hkv, D): the value vectors attention used at position 0 (one per kv head)."""
    H, Hkv = config.n_head, config.n_kv_head
    D = config.n_embd // H
    heads = cache[f"transformer.h.{layer}.attn.heads_concat"][:, 0].view(-1, H, D)
    return heads[:, :: H // Hkv]  # query head g * group reads kv head g


def explicit_gate(attn, x, card):
    """gate_scale * sigmoid(ve_gate(x[..., :channels])) in float64, (..., Hkv)."""
    channels, scale = card.value_embeddings["gate_channels"], card.value_embeddings["gate_scale"]
    return scale * torch.sigmoid(x[..., :channels].double() @ attn.ve_gate.weight.double().T)


@pytest.mark.component("value_embeddings.layers")
@pytest.mark.parametrize("n_layer", [1, 2, 3, 4, 5], ids=lambda n: f"n_layer={n}")
def test_alternating_layers_counted_back_from_the_last_have_value_embeddings(make_model, make_config, arch, n_layer):
    """value_embeds.i and attn.ve_gate exist exactly on layers n_layer-1, n_layer-3, ...: the last always has one."""
    model = make_model(make_config("value_embeddings", n_layer=n_layer), live=("value_embeddings",))
    expected = set(arch.ve_layers(n_layer))
    assert n_layer - 1 in expected
    assert {int(k) for k in model.value_embeds.keys()} == expected
    assert {i for i, b in enumerate(model.transformer.h) if getattr(b.attn, "ve_gate", None) is not None} == expected
    kv_dim = model.config.n_kv_head * model.config.n_embd // model.config.n_head
    for e in model.value_embeds.values():
        assert e.weight.shape == (model.transformer.wte.weight.shape[0], kv_dim)  # one row per (padded) token


@pytest.mark.component("value_embeddings.gate", "value_embeddings.mixing")
def test_the_gate_reads_the_first_channels_of_the_attention_input(ve_model, batch, arch, run_traced):
    """On every value-embedding layer, V(position 0) - c_v(x) = gate * ve[token], the row of the position's own
    token, with the gate computed from x[..., :channels] of the attention's input and the layer's ve_gate, per kv
    head."""
    cache = run_traced(ve_model, batch)
    c = ve_model.config
    D = c.n_embd // c.n_head
    for layer in arch.ve_layers(c.n_layer):
        attn = ve_model.transformer.h[layer].attn
        x = cache[f"transformer.h.{layer}.attn.input"][:, 0]  # (B, C)
        projected = cache[f"transformer.h.{layer}.attn.v"][:, 0].double()  # (B, Hkv, D)
        ve = ve_model.value_embeds[str(layer)].weight[batch[:, 0]].double().view(B, c.n_kv_head, D)
        expected = projected + explicit_gate(attn, x, arch)[..., None] * ve
        torch.testing.assert_close(mixed_v_at_position_0(cache, layer, c).double(), expected, rtol=1e-4, atol=1e-5)


@pytest.mark.component("value_embeddings.gate")
def test_the_gate_ranges_over_zero_to_gate_scale(ve_model, batch, arch, run_traced):
    """Driven hard either way the gate saturates at 0 and at gate_scale (3): V loses or triples the embedding."""
    layer = arch.ve_layers(ve_model.config.n_layer)[-1]
    attn = ve_model.transformer.h[layer].attn
    c = ve_model.config
    D = c.n_embd // c.n_head
    ve = ve_model.value_embeds[str(layer)].weight[batch[:, 0]].view(B, c.n_kv_head, D)
    for sign, gate in ((-1, 0.0), (1, arch.value_embeddings["gate_scale"])):
        with torch.no_grad():
            attn.ve_gate.weight.copy_(sign * 1e4 * torch.ones_like(attn.ve_gate.weight))
        x = run_traced(ve_model, batch)
        x0 = x[f"transformer.h.{layer}.attn.input"][:, 0, :arch.value_embeddings["gate_channels"]].sum(-1)
        rows = x0 > 0.1  # sequences whose gate input is clearly positive: sigmoid(sign * 1e4 * x0) is 0 or 1
        assert rows.any()
        got = mixed_v_at_position_0(x, layer, c) - x[f"transformer.h.{layer}.attn.v"][:, 0]
        torch.testing.assert_close(got[rows], (gate * ve)[rows], rtol=1e-4, atol=1e-5)


@pytest.mark.component("value_embeddings.mixing")
def test_value_embeddings_enter_v_only(ve_model, batch, arch, run_traced):
    """Zeroing the value embeddings leaves every q, k and layer without one unchanged, and changes V where they are."""
    live = run_traced(ve_model, batch)
    with torch.no_grad():
        for e in ve_model.value_embeds.values():
            e.weight.zero_()
    off = run_traced(ve_model, batch)
    layers = set(arch.ve_layers(ve_model.config.n_layer))
    first = min(layers)
    for name in ("q_rope", "k_rope", "v"):  # up to the first value-embedding layer nothing differs at all
        torch.testing.assert_close(live[f"transformer.h.{first}.attn.{name}"], off[f"transformer.h.{first}.attn.{name}"],
                                   rtol=0, atol=0)
    assert (mixed_v_at_position_0(live, first, ve_model.config) - mixed_v_at_position_0(off, first, ve_model.config)
            ).abs().max() > 1e-3
