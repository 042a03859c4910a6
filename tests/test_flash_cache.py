"""Inference: the flash-attention-style KV cache (nanochat 92d63d4; this project's nanochat.engine.FlashKVCache).
Keys and values live per layer in (B, T_max, H_kv, D), written in place at cache_seqlens; the position advances
once, after the last layer. Reached through the contract's cache adapter (nanochat_verify/contract/cache.py)."""

import pytest
import torch

from nanochat_verify.contract import CacheAdapter

from . import diagnose

pytestmark = pytest.mark.component("flash_cache.layout")


@pytest.fixture
def flash(impl):
    return CacheAdapter.of(impl, flash=True)


def test_the_cache_is_laid_out_per_layer_as_batch_time_heads_dim(flash, config):
    """k_cache and v_cache are (n_layer, B, T_max, n_kv_head, head_dim); get_layer_cache(i) gives layer i's views."""
    cache = flash.for_config(config, 2, 16)
    D = config.n_embd // config.n_head
    assert cache.k_cache.shape == cache.v_cache.shape == (config.n_layer, 2, 16, config.n_kv_head, D)
    k, v = cache.get_layer_cache(1)
    assert k.data_ptr() == cache.k_cache[1].data_ptr() and v.data_ptr() == cache.v_cache[1].data_ptr()
    assert cache.cache_seqlens.tolist() == [0, 0]


def test_a_forward_stores_every_layers_keys_and_values_and_advances_once(model, idx, flash, config, run_traced, qk_gain):
    """After a prefill of 10 tokens the position is 10 (not 10 per layer) and each layer's slots 0..9 hold the
    keys attention used (rotated, normalized, times the QK gain) and the values; slots past 10 stay empty."""
    cache = flash.for_config(config, 2, 16)
    traced = run_traced(model, idx[:, :10], kv_cache=cache)
    assert cache.get_pos() == 10 and cache.cache_seqlens.tolist() == [10, 10]
    for layer in range(config.n_layer):
        k, v = cache.get_layer_cache(layer)
        k_norm = traced[f"transformer.h.{layer}.attn.k_norm"]
        torch.testing.assert_close(k[:, :10], k_norm * qk_gain, rtol=1e-5, atol=1e-6, msg=lambda m: (
            f"the cache holds k_norm x ~{diagnose.scale_between(k_norm, k[:, :10]):.3g}; the card's QK gain is "
            f"{qk_gain:g}\n{m}"))
        torch.testing.assert_close(v[:, :10], traced[f"transformer.h.{layer}.attn.v"], rtol=1e-5, atol=1e-6)
        assert (k[:, 10:] == 0).all() and (v[:, 10:] == 0).all()


def test_decoding_through_the_flash_cache_equals_the_full_forward(model, idx, flash, config):
    """Prefill 5, then token by token: the logits of the full forward, and reset() starts over."""
    cache = flash.for_config(config, 2, 16)
    for _ in range(2):
        out = [model(idx[:, :5], kv_cache=cache)] + [model(idx[:, t:t + 1], kv_cache=cache) for t in range(5, 16)]
        torch.testing.assert_close(torch.cat(out, dim=1), model(idx), rtol=1e-5, atol=1e-5)
        cache.reset()
        assert cache.get_pos() == 0


@pytest.mark.component("smear.causality")
def test_a_reset_flash_cache_forgets_the_smears_last_embedding(make_model, make_config, flash, idx):
    """reset() of a flash-style cache also drops the smear's last embedding: a reused cache decodes a new sequence
    as a fresh one does."""
    config = make_config("smear")
    model = make_model(config, live=("smear",))
    with torch.no_grad():
        model.smear_lambda.fill_(0.7)
    cache = flash.for_config(config, 2, 16)
    model(idx[:, :9], kv_cache=cache)
    cache.reset()
    other = idx.flip(1)

    def decode(c):
        return torch.cat([model(other[:, :4], kv_cache=c), model(other[:, 4:5], kv_cache=c)], dim=1)

    torch.testing.assert_close(decode(cache), decode(flash.for_config(config, 2, 16)), rtol=0, atol=0)


@pytest.mark.component("smear.causality")
def test_a_flash_cache_carries_the_smears_last_embedding_from_prefill_to_decode(make_model, make_config, flash, idx):
    """With smear on, prefill then one token at a time through the flash-style cache gives the full forward's logits:
    the cache hands each step its predecessor's embedding, as the per-layer cache does."""
    config = make_config("smear")
    model = make_model(config, live=("smear",))
    with torch.no_grad():
        model.smear_lambda.fill_(0.7)
    cache = flash.for_config(config, 2, 16)
    out = [model(idx[:, :6], kv_cache=cache)] + [model(idx[:, t:t + 1], kv_cache=cache) for t in range(6, 16)]
    torch.testing.assert_close(torch.cat(out, dim=1), model(idx), rtol=1e-5, atol=1e-5)
