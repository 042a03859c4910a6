"""The project's own model rejects bad input with a ValueError that names the value and the expectation,
before doing any work (so nothing, a KV cache included, is left half-updated)."""

import re

import pytest
import torch

from nanochat.engine import KVCache
from tests.conftest import TINY

pytestmark = [pytest.mark.component("contract.validation"), pytest.mark.project_only]


@pytest.mark.parametrize("overrides, message", [
    (dict(n_embd=30, n_head=4), "n_embd=30 must be divisible by n_head=4"),
    (dict(n_head=4, n_kv_head=3), "n_head=4 must be divisible by n_kv_head=3"),
    (dict(n_embd=12, n_head=4, n_kv_head=4), "head_dim=3"),
    (dict(n_layer=0), "n_layer must be a positive integer, got 0"),
    (dict(n_head=-2), "n_head must be a positive integer, got -2"),
    (dict(vocab_size=0), "vocab_size must be a positive integer, got 0"),
    (dict(sequence_len=2.5), "sequence_len must be a positive integer, got 2.5"),
    (dict(n_embd=True), "n_embd must be a positive integer, got True"),
])
def test_bad_configs_are_rejected_with_the_value_named(impl, overrides, message):
    """GPTConfig refuses sizes the model cannot be built from, and says which and why."""
    with pytest.raises(ValueError, match=re.escape(message)):
        impl.GPTConfig(**{**TINY, **overrides})


def test_odd_head_dim_error_says_rope_needs_pairs(impl):
    """An odd head_dim is refused because RoPE rotates pairs of dimensions."""
    with pytest.raises(ValueError, match="must be even: RoPE rotates pairs"):
        impl.GPTConfig(**{**TINY, "n_embd": 20, "n_head": 4, "n_kv_head": 4})


def test_a_config_mutated_after_construction_is_rejected_by_the_model(impl):
    """GPT re-validates its config, so a field changed after construction cannot slip through."""
    config = impl.GPTConfig(**TINY)
    config.n_kv_head = 3
    with pytest.raises(ValueError, match="n_kv_head=3"):
        impl.GPT(config)


@pytest.mark.parametrize("make_idx, message", [
    (lambda V: torch.tensor([1, 2, 3]), r"idx must be a 2-D \(B, T\) tensor of integer token ids, got shape \(3,\)"),
    (lambda V: torch.zeros(1, 3), r"got shape \(1, 3\) dtype torch.float32"),
    (lambda V: torch.zeros(1, 3, dtype=torch.bool), r"dtype torch.bool"),
    (lambda V: [[1, 2, 3]], r"got list"),
    (lambda V: torch.tensor([[1, V, 2]]), r"token ids must lie in \[0, 64\) \(vocab_size\), got values in \[1, 64\]"),
    (lambda V: torch.tensor([[-1, 0]]), r"got values in \[-1, 0\]"),
    (lambda V: torch.zeros(1, 161, dtype=torch.long), r"T=161 tokens at position 0 does not fit the rotary cache of 160"),
    (lambda V: torch.zeros(1, 0, dtype=torch.long), r"T=0"),
])
def test_bad_token_batches_are_rejected(model, make_idx, message):
    """forward refuses non-2-D, non-integer, out-of-vocabulary or too-long inputs, naming what it got."""
    with pytest.raises(ValueError, match=message):
        model(make_idx(model.config.vocab_size))


@pytest.mark.parametrize("make_targets, message", [
    (lambda idx: idx[:, :-1], r"targets must be an integer tensor of the same shape as idx \(2, 16\), got shape \(2, 15\)"),
    (lambda idx: idx.float(), r"dtype torch.float32"),
    (lambda idx: idx - 2, r"targets must lie in \[0, 64\) or be -1 \(ignored\), got values in \[-2,"),
    (lambda idx: idx + 64, r"got values in \[64,"),
])
def test_bad_targets_are_rejected(model, idx, make_targets, message):
    """Targets must match idx in shape and hold vocabulary ids or -1."""
    with pytest.raises(ValueError, match=message):
        model(idx, make_targets(idx))


def test_unknown_loss_reduction_is_rejected(model, idx):
    """loss_reduction must be 'mean', 'sum' or 'none'."""
    with pytest.raises(ValueError, match="loss_reduction must be 'mean', 'sum' or 'none', got 'avg'"):
        model(idx, idx, loss_reduction="avg")


def test_rejected_input_leaves_the_kv_cache_untouched(model, config):
    """A refused chunk does not advance or write the cache: decoding continues as if it never came."""
    cache = KVCache(1, config.n_kv_head, 8, config.n_embd // config.n_head, config.n_layer)
    prompt = torch.tensor([[1, 2, 3]])
    model(prompt, kv_cache=cache)
    snapshot = cache.kv_cache.clone()
    with pytest.raises(ValueError, match="token ids"):
        model(torch.tensor([[4, 999]]), kv_cache=cache)
    assert cache.get_pos() == 3
    torch.testing.assert_close(cache.kv_cache, snapshot, rtol=0, atol=0, equal_nan=True)  # unwritten slots are uninitialised


def test_decoding_past_the_rotary_cache_is_rejected(model, config):
    """The cache position counts toward the rotary limit: 10 * sequence_len positions in all."""
    limit = 10 * config.sequence_len
    cache = KVCache(1, config.n_kv_head, limit, config.n_embd // config.n_head, config.n_layer)
    model(torch.zeros(1, limit - 1, dtype=torch.long), kv_cache=cache)
    model(torch.zeros(1, 1, dtype=torch.long), kv_cache=cache)
    with pytest.raises(ValueError, match=f"at position {limit} does not fit the rotary cache of {limit}"):
        model(torch.zeros(1, 1, dtype=torch.long), kv_cache=cache)


@pytest.mark.parametrize("args, message", [
    (dict(tokens=[]), "tokens must be a non-empty list"),
    (dict(tokens=[1, 64]), r"tokens must be a non-empty list of ints in \[0, 64\)"),
    (dict(max_tokens=-1), "max_tokens must be a non-negative int, got -1"),
    (dict(temperature=-0.5), "temperature must be >= 0"),
    (dict(top_k=0), "top_k must be None or a positive int, got 0"),
    (dict(max_tokens=10 ** 6), "exceeds the rotary cache"),
])
def test_bad_generate_arguments_are_rejected_before_any_token(model, args, message):
    """generate checks its arguments when called, before streaming anything."""
    kwargs = dict(tokens=[1, 2], max_tokens=3) | args
    with pytest.raises(ValueError, match=message):
        next(model.generate(**kwargs))


@pytest.mark.parametrize("args, message", [
    ((0, 2, 8, 4, 1), "batch_size must be a positive integer, got 0"),
    ((1, 2, 8, 4, -1), "num_layers must be a positive integer, got -1"),
])
def test_bad_kv_cache_sizes_are_rejected(args, message):
    """KVCache names the size it cannot use."""
    with pytest.raises(ValueError, match=message):
        KVCache(*args)


def test_kv_cache_rejects_keys_of_the_wrong_shape():
    """insert_kv names the expected (B, H_kv, T, D) and what it got, and stores nothing."""
    cache = KVCache(1, 2, 8, 4, 1)
    with pytest.raises(ValueError, match=r"expects k and v of shape \(B=1, H_kv=2, T, D=4\), got k \(1, 4, 3, 4\)"):
        cache.insert_kv(0, torch.zeros(1, 4, 3, 4), torch.zeros(1, 4, 3, 4))
    assert cache.get_pos() == 0 and cache.kv_cache is None


def test_a_mismatched_batch_leaves_the_kv_cache_untouched(model, config):
    """A batch of 2 through a cache for 1 is refused at the first layer, before anything is stored."""
    cache = KVCache(1, config.n_kv_head, 8, config.n_embd // config.n_head, config.n_layer)
    with pytest.raises(ValueError, match="B=1"):
        model(torch.zeros(2, 3, dtype=torch.long), kv_cache=cache)
    assert cache.get_pos() == 0 and cache.kv_cache is None


def test_apply_rotary_emb_rejects_odd_or_misshaped_input(impl):
    """apply_rotary_emb needs (B, T, H, D) with D even."""
    with pytest.raises(ValueError, match=r"\(B, T, H, D\) with D even, got \(2, 3, 5\)"):
        impl.apply_rotary_emb(torch.zeros(2, 3, 5), torch.zeros(1, 3, 1, 2), torch.zeros(1, 3, 1, 2))
