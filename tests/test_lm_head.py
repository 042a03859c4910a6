"""Component 8: the LM head, an untied n_embd -> vocab_size projection whose float32 logits are soft-capped
at the card's softcap: logits = softcap * tanh(raw / softcap)."""

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from . import diagnose
from .conftest import cast_parameters, contract_model

pytestmark = pytest.mark.component("lm_head.untied_softcap")


def raw_logits(cache, vocab_size):
    """The LM head's own output, without the padding rows an implementation may slice off afterwards."""
    return cache["lm_head.output"][..., :vocab_size]


def test_lm_head_is_a_bias_free_projection_to_the_vocabulary(model, traced, arch):
    """lm_head maps n_embd to vocab_size (padded as the card says); its raw output (B, T, V) is lm_head.input @ W^T."""
    c = model.config
    padded = arch.padded_vocab_size(c.vocab_size, arch.active("padded_vocab", c))
    assert (model.lm_head.in_features, model.lm_head.out_features) == (c.n_embd, padded)
    assert model.lm_head.bias is None
    B, T = traced["idx"].shape
    raw = traced["lm_head.output"]
    assert raw.shape == (B, T, padded)
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


def test_lm_head_starts_as_the_card_says_and_unlike_the_embedding(make_model, make_config, arch):
    """At init lm_head follows the card (all zeros in the seed architecture) and wte does not: a tied model
    could not have both."""
    rule = arch.init_rule("lm_head")
    model = make_model(make_config(vocab_size=512, n_embd=64), randomize=False)
    head = model.lm_head.weight.detach().double()
    if rule.dist == "zeros":
        assert (head == 0).all()
    else:
        std = rule.std_for(*head.shape, 64)
        assert abs(head.std().item() / std - 1) < 0.05
    wte = model.transformer.wte.weight.detach().double()
    assert abs(wte.std().item() / arch.init_rule("wte").std_for(*wte.shape, 64) - 1) < 0.05


def test_logits_are_softcap_tanh_of_raw_logits_over_softcap(traced, softcap):
    """The returned logits are softcap * tanh(raw / softcap), applied to the LM head's output."""
    raw = raw_logits(traced, traced["logits"].size(-1)).double()
    torch.testing.assert_close(traced["logits"].double(), softcap * torch.tanh(raw / softcap), rtol=1e-5, atol=1e-5,
                               msg=lambda m: f"{diagnose.say_softcap(softcap, raw, traced['logits'])}\n{m}")
    assert raw.abs().max() > 1.0  # the cap is exercised beyond its linear range


@given(scale=st.floats(1.0, 1e6))
def test_no_logit_ever_exceeds_the_softcap_even_for_huge_activations(model, idx, run_traced, softcap, scale):
    """|logit| <= softcap (tanh saturates in float32) and finite, however large the raw logits are."""
    with torch.no_grad():
        model.lm_head.weight.mul_(scale)
    try:
        cache = run_traced(model, idx)
    finally:
        with torch.no_grad():
            model.lm_head.weight.div_(scale)
    logits = cache["logits"]
    assert torch.isfinite(logits).all()
    assert logits.abs().max() <= softcap
    if scale >= 1e3:
        assert logits.abs().max() > softcap - 0.01  # the raw values were far beyond the cap
        assert cache["lm_head.output"].abs().max() > 10 * softcap


def test_small_logits_pass_almost_unchanged(model, idx, run_traced, softcap):
    """Near zero the cap is nearly the identity: c tanh(x/c) = x - x^3/(3c^2) + ..."""
    with torch.no_grad():
        model.lm_head.weight.mul_(0.01)
    cache = run_traced(model, idx)
    raw, logits = raw_logits(cache, model.config.vocab_size), cache["logits"]
    assert raw.abs().max() < 1.0
    torch.testing.assert_close(logits, raw.float(), rtol=1 / softcap ** 2, atol=1e-6)


def test_logits_are_float32_even_for_a_bfloat16_model(model, idx):
    """Logits come back in float32 (for a stable softmax), also when the weights are bfloat16."""
    assert model(idx).dtype == torch.float32
    assert cast_parameters(model, torch.bfloat16)(idx).dtype == torch.float32


@pytest.mark.parametrize("how", ["bfloat16 weights", "bfloat16 autocast"])
def test_a_bfloat16_model_applies_the_softcap_after_the_float32_cast(model, idx, run_traced, softcap, how):
    """With bfloat16 weights or under CPU bfloat16 autocast, logits == softcap * tanh(float32(raw) / softcap) to 1e-5:
    the cast comes first (a tanh in bfloat16 quantises logits near the cap to ~0.06, nanochat PR 326)."""
    with torch.no_grad():
        model.lm_head.weight.mul_(8.0)  # raw logits well into the cap's curved range
    if how == "bfloat16 weights":
        cache = run_traced(cast_parameters(model, torch.bfloat16), idx)
    else:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            cache = run_traced(model, idx)
    raw = raw_logits(cache, model.config.vocab_size)
    if how == "bfloat16 autocast":
        assert raw.dtype == torch.bfloat16  # the matmul did run in bfloat16
    assert raw.abs().max() > softcap / 2
    expected = softcap * torch.tanh(raw.float() / softcap)
    assert cache["logits"].dtype == torch.float32
    torch.testing.assert_close(cache["logits"], expected, rtol=0, atol=1e-5)


def test_a_saved_and_reloaded_model_gives_the_same_logits_with_the_head_untied(make_model, config, idx):
    """load_state_dict (strict) of a trained-like model into a fresh one restores every logit: the head is neither
    left at its init, nor overwritten by the embedding, nor re-initialised after the load (transformers PR 43429,
    PR 45079)."""
    source = make_model(config, seed=1)
    fresh = make_model(config, randomize=False)
    fresh.load_state_dict(source.state_dict(), strict=True)
    torch.testing.assert_close(fresh(idx), source(idx), rtol=0, atol=0)
    assert fresh.lm_head.weight.data_ptr() != fresh.transformer.wte.weight.data_ptr()
    torch.testing.assert_close(fresh.lm_head.weight, source.lm_head.weight, rtol=0, atol=0)


def test_a_model_materialised_from_the_meta_device_keeps_its_head_untied(impl, config, idx, runnable):
    """Built on the meta device, materialised with to_empty() and initialised, then trained a step: lm_head and wte
    are still two tensors (LLMs-from-scratch PR 826: materialising broke the aliasing of a tied model; an untied
    one must not become aliased either)."""
    with torch.device("meta"):
        model = contract_model(impl.GPT(config))
    model.to_empty(device="cpu")
    model.init_weights()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    model(idx, idx.roll(-1, 1)).backward()
    optimizer.step()
    head, wte = model.lm_head.weight, model.transformer.wte.weight
    assert head.data_ptr() != wte.data_ptr()
    assert not torch.equal(head[: min(len(head), len(wte))], wte[: min(len(head), len(wte))])


@pytest.mark.project_only
def test_a_float64_model_keeps_its_logits_in_float64(model, idx):
    """Logits are at least float32: a float64 model (a gradcheck end to end) gets float64 logits, not float32 ones."""
    assert cast_parameters(model, torch.float64)(idx).dtype == torch.float64
