"""Inference: the KV cache. Incremental decoding must give the logits of one full forward pass.

The cache is the implementation's own (nanochat/contract.py's CacheAdapter): nanochat a088b7a's and this
project's insert_kv cache, or nanochat 92d63d4's flash-attention-style one."""

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from .conftest import cast_parameters
from .explicit import rope_complex

pytestmark = pytest.mark.component("inference.kv_cache")


def decode(model, idx, chunks, cache):
    """Feed idx to the model chunk by chunk through the cache; return the concatenated logits."""
    outs, t = [], 0
    for size in chunks:
        outs.append(model(idx[:, t:t + size], kv_cache=cache))
        t += size
    return torch.cat(outs, dim=1)


def test_token_by_token_decoding_equals_one_full_forward(model, idx, config, new_cache):
    """Feeding one token at a time through the cache reproduces every logit of the full forward."""
    full = model(idx)
    step_by_step = decode(model, idx, [1] * idx.size(1), new_cache(config))
    torch.testing.assert_close(step_by_step, full, rtol=1e-5, atol=1e-5)


def test_a_chunk_over_a_cached_prefix_matches_the_full_forward(model, idx, config, new_cache):
    """Prefill 6 tokens, then a chunk of 4: the chunk sees the whole prefix and is causal within itself."""
    full = model(idx[:, :10])
    chunked = decode(model, idx, [6, 4], new_cache(config))
    torch.testing.assert_close(chunked, full, rtol=1e-5, atol=1e-5)


@given(chunks=st.lists(st.integers(1, 6), min_size=1, max_size=16))
def test_any_split_into_chunks_equals_the_full_forward(model, idx, config, new_cache, chunks):
    """Prefill and decode the sequence in any chunk sizes: the logits are those of the full forward pass."""
    sizes, total = [], 0
    for size in chunks:
        size = min(size, idx.size(1) - total)
        if size == 0:
            break
        sizes.append(size)
        total += size
    if total < idx.size(1):
        sizes.append(idx.size(1) - total)  # the rest in one last chunk
    torch.testing.assert_close(decode(model, idx, sizes, new_cache(config)), model(idx), rtol=1e-5, atol=1e-5)


@pytest.mark.component("rope.rotary", "attention.rope")
@pytest.mark.parametrize("where", ["early", "middle", "last"])
def test_rope_offset_follows_the_cache_position(model, config, run_traced, new_cache, caches, where):
    """A token decoded at cache position p is rotated by the angle of position p, not position 0, anywhere in the
    rotary table: after 7 tokens, half-way, and at its last position."""
    limit = model.cos.size(1)
    p = {"early": 7, "middle": limit // 2, "last": limit - 1}[where]
    idx = torch.randint(0, config.vocab_size, (1, p + 1), generator=torch.Generator().manual_seed(4))
    cache = new_cache(config, batch_size=1, seq_len=p + 1)
    model(idx[:, :p], kv_cache=cache)
    assert caches.pos(cache) == p
    traced = run_traced(model, idx[:, p:p + 1], kv_cache=cache)
    q, q_rope = traced["transformer.h.0.attn.q"], traced["transformer.h.0.attn.q_rope"]
    torch.testing.assert_close(q_rope.double(), rope_complex(q, model.cos[:, p:p + 1], model.sin[:, p:p + 1]),
                               rtol=1e-4, atol=1e-5)
    assert (q_rope.double() - rope_complex(q, model.cos[:, :1], model.sin[:, :1])).abs().max() > 1e-3


def test_a_cache_decodes_to_exactly_its_length(model, idx, config, new_cache, caches):
    """A cache sized for the whole sequence fills to exactly its length with the full forward's logits."""
    cache = new_cache(config, seq_len=16)
    torch.testing.assert_close(decode(model, idx, [3] + [1] * 13, cache), model(idx), rtol=1e-5, atol=1e-5)
    assert caches.pos(cache) == 16


@pytest.mark.parametrize("chunks", [[3] + [1] * 13, [1, 12, 3]], ids=["token-by-token", "a-chunk-of-12-after-1"])
def test_a_full_cache_grows_and_keeps_every_layers_entries(model, config, new_cache, caches, arch, chunks):
    """Where the card says caches grow: a cache sized for 2 positions, already written, takes 16, even a chunk of
    more than twice its size at once, in inference mode as an engine decodes, and every layer keeps what it held
    (nanochat issue 187: a growth by resize_ reinterprets the memory and scrambles layers > 0)."""
    if not arch.kv_cache_grows:
        assert caches.style == "flash"  # the card's reason: a preallocated flash-style cache never grows
        return
    # tokens of this case alone: a grown buffer may be memory another test's cache of the same size freed, and
    # that memory holding the same keys would hide a scrambled one (resize_ leaves the new storage unwritten)
    idx = torch.randint(0, config.vocab_size, (2, 16), generator=torch.Generator().manual_seed(187 + len(chunks)))
    cache = new_cache(config, seq_len=2)
    with torch.inference_mode():
        out = decode(model, idx, chunks, cache)
        expected = model(idx)
    assert caches.pos(cache) == 16 and caches.tensors(cache)[0].size(3) >= 16
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
def test_the_cache_holds_keys_in_the_dtype_attention_computes_them_in(make_model, config, idx, new_cache, caches,
                                                                      run_traced, arch, dtype):
    """With float32 or bfloat16 weights the cached keys and values have the dtype of the keys attention computed,
    before and after the cache grows, not one hard-coded (nanochat PR 795)."""
    model = cast_parameters(make_model(config), dtype)
    traced = run_traced(model, idx[:, :4])
    # sized for 2 where caches grow: the grown storage keeps the dtype too
    cache = new_cache(config, seq_len=2 if arch.kv_cache_grows else 16, dtype=traced["transformer.h.0.attn.k_norm"].dtype)
    with torch.inference_mode():
        model(idx[:, :1], kv_cache=cache)
        model(idx[:, 1:8], kv_cache=cache)
    keys, values = caches.tensors(cache)
    assert keys.dtype == values.dtype == traced["transformer.h.0.attn.k_norm"].dtype


def test_reset_starts_a_new_sequence(model, idx, config, new_cache, caches):
    """After reset() the cache decodes a new sequence as if it were fresh."""
    cache = new_cache(config)
    decode(model, idx, [5, 1, 1], cache)
    cache.reset()
    assert caches.pos(cache) == 0
    other = idx.flip(1)
    torch.testing.assert_close(decode(model, other, [4, 1, 1], cache), model(other[:, :6]), rtol=1e-5, atol=1e-5)


@pytest.mark.project_only
class TestKVCacheProtocol:

    def test_position_advances_after_the_last_layer_inserts(self, kv_cache_class):
        """insert_kv for layers 0..L-2 keeps the position; the last layer's insert advances it by T."""
        cache = kv_cache_class(1, 2, 8, 4, 3)
        k = torch.randn(1, 2, 5, 4)
        for layer in range(2):
            cache.insert_kv(layer, k, k)
            assert cache.get_pos() == 0
        cache.insert_kv(2, k, k)
        assert cache.get_pos() == 5

    def test_insert_returns_the_prefix_and_the_new_entries(self, kv_cache_class):
        """insert_kv returns (B, H, T_prefix + T_new, D): everything cached for that layer so far."""
        cache = kv_cache_class(1, 2, 8, 4, 1)
        k1, v1 = torch.randn(1, 2, 3, 4), torch.randn(1, 2, 3, 4)
        k2, v2 = torch.randn(1, 2, 2, 4), torch.randn(1, 2, 2, 4)
        cache.insert_kv(0, k1, v1)
        k_all, v_all = cache.insert_kv(0, k2, v2)
        torch.testing.assert_close(k_all, torch.cat([k1, k2], dim=2), rtol=0, atol=0)
        torch.testing.assert_close(v_all, torch.cat([v1, v2], dim=2), rtol=0, atol=0)

    def test_growth_keeps_the_cached_entries(self, kv_cache_class):
        """Growing past the initial length copies what was cached, in every layer."""
        cache = kv_cache_class(1, 1, 2, 2, 2)
        ks = [torch.randn(1, 1, 1, 2) for _ in range(5)]
        for k in ks:
            for layer in range(2):
                k_all, _ = cache.insert_kv(layer, k, -k)
        torch.testing.assert_close(k_all, torch.cat(ks, dim=2), rtol=0, atol=0)
        assert cache.kv_cache.size(4) >= 5
