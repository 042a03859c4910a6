"""Component 10: model scaling, parameter counts from closed forms, and the 561M depth-20 target.

Large models are built on the meta device: shapes and counts without allocating a byte.
"""

import math

import pytest
import torch
from hypothesis import given

from nanochat.scaling import build_on_meta, closed_form_counts, config_kwargs_for_depth, measured_counts
from tests.strategies import config_kwargs

pytestmark = pytest.mark.component("scaling.parameter_count")


def spec_closed_form(V, d, L):
    """The spec's closed form with n_kv_head == n_head: wte + lm_head + L * (attention 4d² + MLP 8d²)."""
    return 2 * V * d + 12 * L * d ** 2


def test_depth_rule_gives_the_561m_target_config():
    """nanochat's rule: depth 20 -> 20 layers, n_embd = 64*20 = 1280, ceil(1280/128) = 10 heads, vocab 2**16."""
    kw = config_kwargs_for_depth(20)
    assert kw["n_layer"] == 20
    assert kw["n_embd"] == 64 * 20
    assert kw["n_head"] == kw["n_kv_head"] == math.ceil(64 * 20 / 128)
    assert kw["vocab_size"] == 2 ** 16


@pytest.mark.parametrize("depth", [1, 2, 3, 4, 8, 12, 16, 20, 24, 32])
def test_depth_rule_keeps_heads_at_most_128_wide(depth):
    """For every depth the rule gives n_embd = 64*depth and heads of width <= 128 (ceil(n_embd/128) of them)."""
    kw = config_kwargs_for_depth(depth)
    assert kw["n_embd"] == 64 * depth and kw["n_layer"] == depth
    assert kw["n_head"] == -(-kw["n_embd"] // 128)
    assert kw["n_embd"] / kw["n_head"] <= 128


def test_561m_target_counts_561_million_parameters_built_on_meta(impl):
    """The depth-20 model has 2*V*d + 12*L*d² parameters, which rounds to 561M, built on the meta device."""
    kw = config_kwargs_for_depth(20)
    model = build_on_meta(impl, impl.GPTConfig(**kw))
    n = sum(p.numel() for p in model.parameters())
    assert n == spec_closed_form(kw["vocab_size"], kw["n_embd"], kw["n_layer"])
    assert round(n / 1e6) == 561
    assert all(p.is_meta for p in model.parameters())
    assert all(b.is_meta for b in model.buffers())


def test_561m_target_breakdown_by_component(impl):
    """wte and lm_head hold V*d each; every block holds 4d² of attention and 8d² of MLP."""
    kw = config_kwargs_for_depth(20)
    V, d = kw["vocab_size"], kw["n_embd"]
    counts = measured_counts(build_on_meta(impl, impl.GPTConfig(**kw)))
    assert counts["wte"] == counts["lm_head"] == V * d
    assert counts["attn_per_block"] == 4 * d * d
    assert counts["mlp_per_block"] == 8 * d * d
    assert counts["blocks"] == kw["n_layer"] * 12 * d * d
    # and the embeddings are 30% of the target: a fact the scaling analysis reports
    assert 0.29 < 2 * V * d / counts["total"] < 0.31


def test_depth_4_model_matches_the_closed_form(impl):
    """The depth-4 model (n_embd 256, 2 heads, vocab 2**16) matches 2*V*d + 12*L*d² too."""
    kw = config_kwargs_for_depth(4)
    n = sum(p.numel() for p in build_on_meta(impl, impl.GPTConfig(**kw)).parameters())
    assert n == spec_closed_form(kw["vocab_size"], kw["n_embd"], 4)


@given(kwargs=config_kwargs(max_layers=4, max_heads=8, max_vocab=5000))
def test_closed_form_matches_the_model_for_any_config(impl, kwargs):
    """For any valid config, GQA included, every count of the closed form equals the built model's."""
    config = impl.GPTConfig(**kwargs)
    assert measured_counts(build_on_meta(impl, config)) == closed_form_counts(config)


@given(kwargs=config_kwargs(max_layers=3, max_heads=8, gqa=False))
def test_spec_closed_form_holds_without_gqa(impl, kwargs):
    """With n_kv_head == n_head the count is exactly 2*V*d + 12*L*d²."""
    n = sum(p.numel() for p in build_on_meta(impl, impl.GPTConfig(**kwargs)).parameters())
    assert n == spec_closed_form(kwargs["vocab_size"], kwargs["n_embd"], kwargs["n_layer"])


def test_gqa_saves_exactly_the_kv_projection_parameters(impl):
    """Going from 10 to 2 kv heads at depth 20 removes 2 * L * d * (10-2) * head_dim parameters."""
    kw = config_kwargs_for_depth(20)
    mha = sum(p.numel() for p in build_on_meta(impl, impl.GPTConfig(**kw)).parameters())
    gqa = sum(p.numel() for p in build_on_meta(impl, impl.GPTConfig(**{**kw, "n_kv_head": 2})).parameters())
    head_dim = kw["n_embd"] // kw["n_head"]
    assert mha - gqa == 2 * kw["n_layer"] * kw["n_embd"] * (10 - 2) * head_dim


def test_meta_model_can_be_materialized_and_initialized(impl):
    """A meta-built model becomes a real one with to_empty() + init_weights(), rotary tables included."""
    config = impl.GPTConfig(sequence_len=8, vocab_size=32, n_layer=1, n_head=2, n_kv_head=1, n_embd=16)
    model = build_on_meta(impl, config)
    model.to_empty(device="cpu")
    model.init_weights()
    reference = impl.GPT(config)
    torch.testing.assert_close(model.cos, reference.cos, rtol=0, atol=0)
    torch.testing.assert_close(model.sin, reference.sin, rtol=0, atol=0)
    assert torch.isfinite(model(torch.zeros(1, 4, dtype=torch.long))).all()


@pytest.mark.project_only
def test_estimate_flops_is_6n_plus_attention(impl):
    """GPT.estimate_flops = 6 * (N - N_wte) + 12 * L * H * head_dim * T (PaLM, appendix B)."""
    kw = config_kwargs_for_depth(20)
    model = build_on_meta(impl, impl.GPTConfig(**kw))
    n = sum(p.numel() for p in model.parameters())
    L, H, d, T = kw["n_layer"], kw["n_head"], kw["n_embd"], kw["sequence_len"]
    assert model.estimate_flops() == 6 * (n - kw["vocab_size"] * d) + 12 * L * H * (d // H) * T
