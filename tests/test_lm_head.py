"""Component 8: the LM head, an untied n_embd -> vocab_size projection whose logits are soft-capped at 15."""

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

CAP = 15.0
pytestmark = pytest.mark.component("lm_head.untied_softcap")


def test_lm_head_is_a_bias_free_projection_to_the_vocabulary(model, traced):
    """lm_head maps n_embd to vocab_size; its raw output (B, T, V) is lm_head.input @ W^T."""
    c = model.config
    assert (model.lm_head.in_features, model.lm_head.out_features) == (c.n_embd, c.vocab_size)
    B, T = traced["idx"].shape
    raw = traced["lm_head.output"]
    assert raw.shape == (B, T, c.vocab_size)
    torch.testing.assert_close(raw, traced["lm_head.input"] @ model.lm_head.weight.detach().T, rtol=1e-5, atol=1e-5)


def test_lm_head_is_untied_from_the_token_embedding(model):
    """lm_head.weight and wte.weight are separate tensors in separate storage."""
    head, wte = model.lm_head.weight, model.transformer.wte.weight
    assert head is not wte
    assert head.untyped_storage().data_ptr() != wte.untyped_storage().data_ptr()
    assert len({id(p) for p in model.parameters()}) == len(list(model.named_parameters(remove_duplicate=False)))


def test_changing_the_embedding_leaves_the_lm_head_unchanged(model):
    """Writing to wte does not move lm_head (and vice versa): they are trained independently."""
    head_before = model.lm_head.weight.detach().clone()
    with torch.no_grad():
        model.transformer.wte.weight.add_(1.0)
    torch.testing.assert_close(model.lm_head.weight.detach(), head_before, rtol=0, atol=0)
    wte_before = model.transformer.wte.weight.detach().clone()
    with torch.no_grad():
        model.lm_head.weight.mul_(2.0)
    torch.testing.assert_close(model.transformer.wte.weight.detach(), wte_before, rtol=0, atol=0)


def test_lm_head_starts_at_zero_while_the_embedding_does_not(make_model, config):
    """At init lm_head is all zeros and wte is N(0, 1): a tied model could not have both."""
    model = make_model(config, randomize=False)
    assert (model.lm_head.weight == 0).all()
    assert model.transformer.wte.weight.abs().sum() > 0


def test_logits_are_15_tanh_of_raw_logits_over_15(traced):
    """The returned logits are 15 * tanh(raw / 15), applied to the LM head's output."""
    raw = traced["lm_head.output"].double()
    torch.testing.assert_close(traced["logits"].double(), CAP * torch.tanh(raw / CAP), rtol=1e-5, atol=1e-5)
    assert raw.abs().max() > 1.0  # the cap is exercised beyond its linear range


@given(scale=st.floats(1.0, 1e6))
def test_no_logit_ever_exceeds_15_even_for_huge_activations(model, idx, run_traced, scale):
    """|logit| <= 15 (tanh saturates in float32) and finite, however large the raw logits are."""
    with torch.no_grad():
        model.lm_head.weight.mul_(scale)
    try:
        cache = run_traced(model, idx)
    finally:
        with torch.no_grad():
            model.lm_head.weight.div_(scale)
    logits = cache["logits"]
    assert torch.isfinite(logits).all()
    assert logits.abs().max() <= CAP
    if scale >= 1e3:
        assert logits.abs().max() > CAP - 0.01  # the raw values were far beyond the cap
        assert cache["lm_head.output"].abs().max() > 10 * CAP


def test_small_logits_pass_almost_unchanged(model, idx, run_traced):
    """Near zero the cap is nearly the identity: 15 tanh(x/15) = x - x^3/675 + ..."""
    with torch.no_grad():
        model.lm_head.weight.mul_(0.01)
    cache = run_traced(model, idx)
    raw, logits = cache["lm_head.output"], cache["logits"]
    assert raw.abs().max() < 1.0
    torch.testing.assert_close(logits, raw, rtol=3e-3, atol=1e-6)


def test_logits_are_float32_even_for_a_bfloat16_model(model, idx):
    """Logits come back in float32 (for a stable softmax), also when the weights are bfloat16."""
    assert model(idx).dtype == torch.float32
    assert model.to(torch.bfloat16)(idx).dtype == torch.float32
