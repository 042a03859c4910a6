"""Component 10: model scaling, parameter counts from closed forms, and the card's target (the 561M depth-20
model of the seed architecture).

Large models are built on the meta device: shapes and counts without allocating a byte.
"""

import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from nanochat_verify.card import FEATURES
from nanochat_verify.contract import interface
from nanochat_verify.scaling import build_on_meta, closed_form_counts, config_kwargs_for_depth, measured_counts
from .conftest import contract_model, declared_parameters, n_parameters
from .strategies import config_kwargs

pytestmark = pytest.mark.component("scaling.parameter_count")


def spec_closed_form(V, d, L):
    """The spec's closed form with n_kv_head == n_head: wte + lm_head + L * (attention 4d² + MLP 8d²)."""
    return 2 * V * d + 12 * L * d ** 2


def modern_extras(card, config):
    """What the modern components the card has on add to the spec's count: the padded rows of wte and lm_head, and
    each parameter group they declare (nanochat_verify/components.py: a value embedding V_padded x kv_dim and a gate
    on every other layer, 2 lambdas per layer, the smear gate and lambda, backout's), times its instances."""
    d, V = config.n_embd, config.vocab_size
    V_padded = card.padded_vocab_size(V, card.active("padded_vocab", config))
    return 2 * (V_padded - V) * d + declared_parameters(card, config)


def built(impl, arch, config):
    """The model of `config` on the meta device; one that lacks a module of the card's components cannot be counted
    against the card's closed form (tests/test_interface.py names what it lacks)."""
    model = build_on_meta(impl, config)
    interface.require_modules(model, arch)
    return model


@pytest.fixture
def target(impl, arch):
    """The card's target model (nanochat's depth rule at the card's depth), built on the meta device."""
    kw = config_kwargs_for_depth(arch.target_depth)
    config = impl.GPTConfig(**kw)
    return config, built(impl, arch, config)


def test_depth_rule_gives_the_target_config(arch):
    """nanochat's rule: depth -> that many layers, n_embd = 64*depth, ceil(n_embd/128) heads, vocab 2**16."""
    depth = arch.target_depth
    kw = config_kwargs_for_depth(depth)
    assert kw["n_layer"] == depth
    assert kw["n_embd"] == 64 * depth
    assert kw["n_head"] == kw["n_kv_head"] == math.ceil(64 * depth / 128)
    assert kw["vocab_size"] == 2 ** 16


@pytest.mark.parametrize("depth", [1, 2, 3, 4, 8, 12, 16, 20, 24, 32])
def test_depth_rule_keeps_heads_at_most_128_wide(depth):
    """For every depth the rule gives n_embd = 64*depth and heads of width <= 128 (ceil(n_embd/128) of them)."""
    kw = config_kwargs_for_depth(depth)
    assert kw["n_embd"] == 64 * depth and kw["n_layer"] == depth
    assert kw["n_head"] == -(-kw["n_embd"] // 128)
    assert kw["n_embd"] / kw["n_head"] <= 128


def test_target_counts_the_cards_millions_of_parameters_built_on_meta(target, arch):
    """The target model has 2*V*d + 12*L*d² parameters plus what the modern components add, which rounds to the
    card's figure (561M for the seed architecture at depth 20), built on the meta device."""
    config, model = target
    n = n_parameters(model, arch)
    assert n == spec_closed_form(config.vocab_size, config.n_embd, config.n_layer) + modern_extras(arch, config)
    assert round(n / 1e6) == arch.target_millions, (f"the depth-{arch.target_depth} target has {n / 1e6:.0f}M parameters; "
                                                    f"the card says {arch.target_millions}M")
    assert all(p.is_meta for p in model.parameters())
    assert all(b.is_meta for b in model.buffers())


def test_target_breakdown_by_component(target, arch):
    """wte and lm_head hold V*d each (V padded as the card says); every block 4d² of attention and 2*ratio*d² of
    MLP; and each part of the built model equals the closed form's."""
    config, model = target
    d = config.n_embd
    counts = measured_counts(model, arch)
    V = arch.padded_vocab_size(config.vocab_size, arch.active("padded_vocab", config))
    assert counts["wte"] == counts["lm_head"] == V * d
    assert counts["attn_per_block"] == 4 * d * d + (0 if 0 not in arch.ve_layers(config.n_layer) or
                                                    not arch.active("value_embeddings", config) else
                                                    arch.value_embeddings["gate_channels"] * config.n_kv_head)
    assert counts["mlp_per_block"] == 2 * arch.mlp_ratio * d * d
    assert counts == closed_form_counts(config, arch)


def test_embeddings_are_30_percent_of_the_seed_target(target, arch):
    """Without the modern components the two V x d tables are 30% of the target: a fact the scaling analysis
    reports (with value embeddings, nanochat 92d63d4's are 72%)."""
    config, model = target
    counts = measured_counts(model, arch)
    share = (counts["wte"] + counts["lm_head"] + counts["value_embeds"]) / counts["total"]
    if counts["value_embeds"] == 0:
        assert 0.29 < share < 0.31
    else:
        assert share == pytest.approx(1 - counts["blocks"] / counts["total"], abs=1e-6)


def test_depth_4_model_matches_the_closed_form(impl, arch):
    """The depth-4 model (n_embd 256, 2 heads, vocab 2**16) matches the closed form too."""
    config = impl.GPTConfig(**config_kwargs_for_depth(4))
    n = n_parameters(built(impl, arch, config), arch)
    assert n == spec_closed_form(config.vocab_size, config.n_embd, 4) + modern_extras(arch, config)


def draw_config(impl, arch, data, **kwargs):
    """A config of the space, with any subset of the modern components the card offers as options switched on
    (their gates read up to 24 channels, so such a config is at least that wide)."""
    options = [f for f in FEATURES if arch.features[f] == "optional"]
    features = data.draw(st.lists(st.sampled_from(options), unique=True), label="features") if options else []
    drawn = data.draw(config_kwargs(arch, min_embd=24 if features else 1, **kwargs), label="config")
    return impl.GPTConfig(**{**drawn, **arch.config_for(*features)})


@given(data=st.data())
def test_closed_form_matches_the_model_for_any_config(impl, arch, data):
    """For any valid config, GQA and the card's optional modern components included, every count of the closed
    form equals the built model's."""
    config = draw_config(impl, arch, data, max_layers=4, max_vocab=5000)
    assert measured_counts(built(impl, arch, config), arch) == closed_form_counts(config, arch)


@given(data=st.data())
def test_spec_closed_form_holds_without_gqa(impl, arch, data):
    """With n_kv_head == n_head the count is exactly 2*V*d + 12*L*d², plus what the card's modern components add."""
    config = draw_config(impl, arch, data, max_layers=3, gqa=False)
    kwargs = vars(config)
    n = n_parameters(built(impl, arch, config), arch)
    assert n == spec_closed_form(kwargs["vocab_size"], kwargs["n_embd"], kwargs["n_layer"]) + modern_extras(arch, config)


def test_gqa_saves_exactly_the_kv_projection_parameters(impl, arch):
    """Going from 10 to 2 kv heads at depth 20 removes 2 * L * d * (10-2) * head_dim parameters from c_k and c_v."""
    kw = config_kwargs_for_depth(20)
    mha_model = built(impl, arch, impl.GPTConfig(**kw))
    gqa_model = built(impl, arch, impl.GPTConfig(**{**kw, "n_kv_head": 2}))

    def kv_projections(model):
        return sum(b.attn.c_k.weight.numel() + b.attn.c_v.weight.numel() for b in model.transformer.h)

    head_dim = kw["n_embd"] // kw["n_head"]
    assert kv_projections(mha_model) - kv_projections(gqa_model) == 2 * kw["n_layer"] * kw["n_embd"] * 8 * head_dim
    mha, gqa = (n_parameters(m, arch) for m in (mha_model, gqa_model))
    assert mha - gqa == closed_form_counts(mha_model.config, arch)["total"] - closed_form_counts(gqa_model.config, arch)["total"]


def test_meta_model_can_be_materialized_and_initialized(impl, runnable):
    """A meta-built model becomes a real one with to_empty() + init_weights(), rotary tables included."""
    config = impl.GPTConfig(sequence_len=8, vocab_size=32, n_layer=1, n_head=2, n_kv_head=1, n_embd=32)
    model = contract_model(build_on_meta(impl, config))
    model.to_empty(device="cpu")
    # to_empty leaves whatever the allocator hands back: zero it, so that the run does not depend on that memory
    # (a parameter that init_weights leaves unset is test_init's finding, not this one's)
    with torch.no_grad():
        for tensor in [*model.parameters(), *model.buffers()]:
            tensor.zero_()
    model.init_weights()
    reference = contract_model(impl.GPT(config))
    torch.testing.assert_close(model.cos, reference.cos, rtol=0, atol=0)
    torch.testing.assert_close(model.sin, reference.sin, rtol=0, atol=0)
    assert torch.isfinite(model(torch.zeros(1, 4, dtype=torch.long))).all()
