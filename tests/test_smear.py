"""Component 16: smear (nanochat 92d63d4): position t of the normalized embedding adds
smear_lambda * sigmoid(smear_gate(x_t[..., :channels])) * x_{t-1}, a cheap bigram signal; position 0 has no
predecessor. Decoding with a KV cache, the cache carries the previous position's embedding."""

import pytest
import torch

from .explicit import rms_norm


@pytest.fixture
def smear_model(make_model, make_config):
    """A model with smear live and a smear_lambda far from its initial 0."""
    model = make_model(make_config("smear"), live=("smear",))
    with torch.no_grad():
        model.smear_lambda.fill_(0.7)
    return model


def explicit_smear(x, model, card):
    """x: the normalized embedding (B, T, C). Returns the smeared stream, float64."""
    x = x.double()
    channels = card.smear["channels"]
    gate = model.smear_lambda.double() * torch.sigmoid(x[:, 1:, :channels] @ model.smear_gate.weight.double().T)
    return torch.cat([x[:, :1], x[:, 1:] + gate * x[:, :-1]], dim=1)


@pytest.mark.component("smear.mixing")
def test_each_position_adds_the_gated_previous_embedding(smear_model, idx, arch, run_traced):
    """The stream entering block 0 is x_t + smear_lambda * sigmoid(smear_gate(x_t[:channels])) * x_{t-1} of
    x = norm(wte[idx]); position 0 is x_0 as it is."""
    cache = run_traced(smear_model, idx)
    expected = explicit_smear(rms_norm(cache["transformer.wte.output"]), smear_model, arch)
    torch.testing.assert_close(cache["transformer.h.0.input"].double(), expected, rtol=1e-5, atol=1e-5)
    assert (expected[:, 1:] - rms_norm(cache["transformer.wte.output"])[:, 1:]).abs().max() > 1e-2  # it did mix


@pytest.mark.component("smear.mixing")
def test_smear_is_what_carries_the_previous_token_when_every_block_is_the_identity(smear_model, idx):
    """With every c_proj at zero (each block the identity), the logits at t depend on token t-1 only through the
    smear: changing token 5 changes position 6, and with smear_lambda 0 it does not."""
    with torch.no_grad():
        for block in smear_model.transformer.h:
            block.attn.c_proj.weight.zero_()
            block.mlp.c_proj.weight.zero_()
    changed = idx.clone()
    changed[:, 5] = (idx[:, 5] + 1) % smear_model.config.vocab_size
    assert (smear_model(idx)[:, 6] - smear_model(changed)[:, 6]).abs().max() > 1e-3
    with torch.no_grad():
        smear_model.smear_lambda.zero_()
    torch.testing.assert_close(smear_model(idx)[:, 6], smear_model(changed)[:, 6], rtol=0, atol=0)


@pytest.mark.component("smear.causality")
@pytest.mark.parametrize("j", [0, 1, 7, 15], ids=lambda j: f"j={j}")
def test_with_smear_a_change_at_j_changes_nothing_before_j(smear_model, idx, j):
    """Smear reads the previous position, never the next: replacing token j leaves every logit before j unchanged."""
    changed = idx.clone()
    changed[:, j] = (idx[:, j] + 3) % smear_model.config.vocab_size
    a, b = smear_model(idx), smear_model(changed)
    torch.testing.assert_close(a[:, :j], b[:, :j], rtol=0, atol=1e-6)
    assert (a[:, j] - b[:, j]).abs().max() > 1e-4


@pytest.mark.component("smear.causality")
def test_decoding_with_a_cache_carries_the_previous_embedding(smear_model, idx, new_cache, arch):
    """Prefill, then one token at a time: the cache hands each step its predecessor's embedding, so the logits are
    the full forward's; chunks of several tokens after a prefix too, where the card says the cache carries it
    into chunks (nanochat 92d63d4's does not: its engine prefills once, then decodes token by token)."""
    splits = [[6] + [1] * 10]
    if arch.smear["chunks_after_prefix"]:
        splits += [[6, 4, 1, 5], [3, 3, 10]]
    for sizes in splits:
        cache, t, out = new_cache(smear_model.config), 0, []
        for size in sizes:
            out.append(smear_model(idx[:, t:t + size], kv_cache=cache))
            t += size
        torch.testing.assert_close(torch.cat(out, dim=1), smear_model(idx), rtol=1e-5, atol=1e-5, msg=str(sizes))


@pytest.mark.component("smear.causality")
def test_a_reset_cache_forgets_the_previous_sequences_last_embedding(smear_model, idx, new_cache):
    """After reset() the first position of a new sequence has no predecessor: the cache does not smear the last
    sequence's final embedding into it (a reused cache gives a fresh cache's logits)."""
    cache = new_cache(smear_model.config)
    smear_model(idx[:, :9], kv_cache=cache)
    cache.reset()
    other = idx.flip(1)
    reused = torch.cat([smear_model(other[:, :4], kv_cache=cache), smear_model(other[:, 4:5], kv_cache=cache)], dim=1)
    fresh_cache = new_cache(smear_model.config)
    fresh = torch.cat([smear_model(other[:, :4], kv_cache=fresh_cache), smear_model(other[:, 4:5], kv_cache=fresh_cache)],
                      dim=1)
    torch.testing.assert_close(reused, fresh, rtol=0, atol=0)
