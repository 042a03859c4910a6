"""Component 13: sliding-window attention (nanochat 92d63d4). The card's pattern ("SSSL") is tiled over the
layers, the last layer is always long; S is a quarter of sequence_len rounded up to a multiple of 128, L is
sequence_len. A window W follows flash-attention's (W, 0) convention: a query sees itself and the W keys
before it, W + 1 keys in all (transformers issue 39408: conventions mixed up by one).

The attention weights are read off the real computation, as in test_attention.py: value vectors replaced
by one-hot codes of their position, so each head's output row is its row of the attention matrix.
"""

import pytest
import torch

from .test_attention import attention_matrix

SEQUENCE_LEN = 512  # short window: ceil(512 / 4 / 128) * 128 = 128; long: 512
T = 136  # past the short window, and small enough that one-hot codes fit a head (head_dim 136)
N_LAYER = 6


@pytest.fixture
def windowed(make_model, make_config):
    """A 6-layer model with sliding windows live (SSSL tiled: S S S L S, and the last layer L), one head of
    width 136, and tokens for 136 positions."""
    config = make_config("sliding_window", sequence_len=SEQUENCE_LEN, n_layer=N_LAYER, n_head=1, n_kv_head=1, n_embd=T)
    model = make_model(config, live=("sliding_window",))
    idx = torch.randint(0, config.vocab_size, (1, T), generator=torch.Generator().manual_seed(5))
    return model, idx


def keys_seen(model, idx, layer, run_traced):
    """For each query, the set of key positions it gives a nonzero weight, in one layer."""
    A, _ = attention_matrix(model, idx, layer, run_traced)
    return [set(torch.nonzero(A[0, 0, t] > 0).flatten().tolist()) for t in range(A.size(-1))]


@pytest.mark.component("sliding_window.window_sizes")
def test_each_layer_attends_over_the_window_its_letter_gives(windowed, arch, run_traced):
    """Layer by layer, query t sees min(t + 1, W + 1) keys, W from the card's pattern tiled over the layers with
    the last one long: short layers stop at 129 keys, long ones see all 136."""
    model, idx = windowed
    windows = arch.window_sizes(SEQUENCE_LEN, N_LAYER)
    assert sorted(set(windows)) == [128, SEQUENCE_LEN] and windows[-1] == SEQUENCE_LEN  # both kinds are exercised
    for layer, W in enumerate(windows):
        counts = [len(s) for s in keys_seen(model, idx, layer, run_traced)]
        assert counts == [min(t + 1, W + 1) for t in range(T)], f"layer {layer} (window {W})"


@pytest.mark.component("sliding_window.keys")
def test_a_query_sees_exactly_itself_and_the_w_keys_before_it(windowed, arch, run_traced):
    """In a short layer query t sees exactly the positions t - W .. t: itself, no future key, nothing older."""
    model, idx = windowed
    W = arch.window_sizes(SEQUENCE_LEN, N_LAYER)[0]
    seen = keys_seen(model, idx, 0, run_traced)
    for t in range(T):
        assert seen[t] == set(range(max(0, t - W), t + 1)), f"query {t}"


@pytest.mark.component("sliding_window.keys")
def test_with_windows_a_change_at_j_changes_nothing_before_j(windowed, run_traced):
    """The window mask is merged with the causal one, not against it (transformers issue 31673): past the window,
    replacing token j leaves every earlier logit unchanged and changes position j's."""
    model, idx = windowed
    for j in (10, 130):
        changed = idx.clone()
        changed[0, j] = (idx[0, j] + 1) % model.config.vocab_size
        a, b = model(idx), model(changed)
        torch.testing.assert_close(a[:, :j], b[:, :j], rtol=0, atol=1e-6)
        assert (a[:, j] - b[:, j]).abs().max() > 1e-4


@pytest.mark.component("sliding_window.decoding")
@pytest.mark.parametrize("prefill", [100, 130], ids=lambda n: f"prefill={n}")
def test_cached_decoding_equals_the_full_forward_past_the_window(windowed, new_cache, prefill):
    """Prefill, then decode token by token to position 136, past the 128-key window: the decode path applies the
    window too (nanochat issue 452: it attended the whole cache), so every logit is the full forward's."""
    model, idx = windowed
    cache = new_cache(model.config, batch_size=1, seq_len=T)
    steps = [model(idx[:, :prefill], kv_cache=cache)] + [model(idx[:, t:t + 1], kv_cache=cache)
                                                         for t in range(prefill, T)]
    torch.testing.assert_close(torch.cat(steps, dim=1), model(idx), rtol=1e-4, atol=1e-4)


@pytest.mark.component("sliding_window.decoding")
def test_a_chunk_after_a_prefix_sees_the_window_across_the_boundary(windowed, new_cache):
    """A chunk of 40 after a prefix of 96 sees, from each query, the window's keys in the cache and in the chunk."""
    model, idx = windowed
    cache = new_cache(model.config, batch_size=1, seq_len=T)
    out = torch.cat([model(idx[:, :96], kv_cache=cache), model(idx[:, 96:], kv_cache=cache)], dim=1)
    torch.testing.assert_close(out, model(idx), rtol=1e-4, atol=1e-4)


@pytest.mark.component("sliding_window.window_sizes")
def test_the_short_window_is_a_quarter_of_the_context_rounded_up_to_a_tile(make_model, make_config, arch, run_traced):
    """At sequence_len 513 a quarter is 128.25: the short window rounds up to 256 (a whole tile more), so the last of
    260 queries sees 257 keys in a short layer, not 129."""
    sequence_len, T = 513, 260
    windows = arch.window_sizes(sequence_len, 2)
    assert windows[0] == -(-sequence_len // arch.sliding_window["short_divisor"] // arch.sliding_window["tile"]) \
        * arch.sliding_window["tile"] > sequence_len / arch.sliding_window["short_divisor"]
    config = make_config("sliding_window", sequence_len=sequence_len, n_layer=2, n_head=1, n_kv_head=1, n_embd=T)
    model = make_model(config, live=("sliding_window",))
    idx = torch.randint(0, config.vocab_size, (1, T), generator=torch.Generator().manual_seed(6))
    assert len(keys_seen(model, idx, 0, run_traced)[-1]) == min(T, windows[0] + 1)
