"""Component 13: sliding-window attention (nanochat 92d63d4). The card's pattern ("SSSL") is tiled over the
layers, the last layer is always long; S is the card's share of sequence_len (a quarter, in 92d63d4), rounded
as the card says (up to a multiple of 128, in 92d63d4), L is sequence_len. A window W follows flash-attention's
(W, 0) convention: a query sees itself and the W keys before it, W + 1 keys in all (transformers issue 39408:
conventions mixed up by one). The test sequences run a few positions past the card's short window.

The attention weights are read off the real computation, as in test_attention.py: value vectors replaced
by one-hot codes of their position, so each head's output row is its row of the attention matrix.
"""

import math

import pytest
import torch

from .test_attention import attention_matrix

SEQUENCE_LEN = 512  # the seed card's short window: ceil(512 / 4 / 128) * 128 = 128; long: 512
N_LAYER = 6
PAST = 8  # positions the test sequences run past the short window


def short_window(arch):
    return min(arch.window_sizes(SEQUENCE_LEN, N_LAYER))


@pytest.fixture
def windowed(make_model, make_config, arch):
    """A 6-layer model with sliding windows live (SSSL tiled: S S S L S, and the last layer L), one head as wide as
    the sequence (so one-hot codes of the positions fit a head), and tokens for the short window + 8 positions."""
    T = short_window(arch) + PAST
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
    the last one long: short layers stop at W + 1 keys, long ones see every position."""
    model, idx = windowed
    T = idx.size(1)
    windows = arch.window_sizes(SEQUENCE_LEN, N_LAYER)
    assert sorted(set(windows)) == [T - PAST, SEQUENCE_LEN] and windows[-1] == SEQUENCE_LEN  # both kinds exercised
    for layer, W in enumerate(windows):
        counts = [len(s) for s in keys_seen(model, idx, layer, run_traced)]
        assert counts == [min(t + 1, W + 1) for t in range(T)], f"layer {layer} (window {W})"


@pytest.mark.component("sliding_window.keys")
def test_a_query_sees_exactly_itself_and_the_w_keys_before_it(windowed, arch, run_traced):
    """In a short layer query t sees exactly the positions t - W .. t: itself, no future key, nothing older."""
    model, idx = windowed
    W = arch.window_sizes(SEQUENCE_LEN, N_LAYER)[0]
    seen = keys_seen(model, idx, 0, run_traced)
    for t in range(idx.size(1)):
        assert seen[t] == set(range(max(0, t - W), t + 1)), f"query {t}"


@pytest.mark.component("sliding_window.keys")
def test_with_windows_a_change_at_j_changes_nothing_before_j(windowed, run_traced):
    """The window mask is merged with the causal one, not against it (transformers issue 31673): past the window,
    replacing token j leaves every earlier logit unchanged and changes position j's."""
    model, idx = windowed
    for j in (10, idx.size(1) - PAST + 2):
        changed = idx.clone()
        changed[0, j] = (idx[0, j] + 1) % model.config.vocab_size
        a, b = model(idx), model(changed)
        torch.testing.assert_close(a[:, :j], b[:, :j], rtol=0, atol=1e-6)
        assert (a[:, j] - b[:, j]).abs().max() > 1e-4


@pytest.mark.component("sliding_window.decoding")
@pytest.mark.parametrize("before_the_window", [28, -2], ids=["prefill-ends-inside-the-window",
                                                              "prefill-ends-past-the-window"])
def test_cached_decoding_equals_the_full_forward_past_the_window(windowed, new_cache, before_the_window):
    """Prefill, then decode token by token past the short window: the decode path applies the window too
    (nanochat issue 452: it attended the whole cache), so every logit is the full forward's."""
    model, idx = windowed
    T = idx.size(1)
    prefill = T - PAST - before_the_window
    cache = new_cache(model.config, batch_size=1, seq_len=T)
    steps = [model(idx[:, :prefill], kv_cache=cache)] + [model(idx[:, t:t + 1], kv_cache=cache)
                                                         for t in range(prefill, T)]
    torch.testing.assert_close(torch.cat(steps, dim=1), model(idx), rtol=1e-4, atol=1e-4)


@pytest.mark.component("sliding_window.decoding")
def test_a_chunk_after_a_prefix_sees_the_window_across_the_boundary(windowed, new_cache):
    """A chunk of 40 after a prefix sees, from each query, the window's keys in the cache and in the chunk."""
    model, idx = windowed
    T = idx.size(1)
    cache = new_cache(model.config, batch_size=1, seq_len=T)
    out = torch.cat([model(idx[:, :T - 40], kv_cache=cache), model(idx[:, T - 40:], kv_cache=cache)], dim=1)
    torch.testing.assert_close(out, model(idx), rtol=1e-4, atol=1e-4)


@pytest.mark.component("sliding_window.window_sizes")
def test_the_short_window_is_the_cards_share_of_the_context_rounded_as_it_says(make_model, make_config, arch,
                                                                              run_traced):
    """At sequence_len 513 the card's share (a quarter in 92d63d4: 128.25) rounds as the card says (up to a whole
    tile: 256; or down, for sequence_len // 2), and the last query of a short layer sees exactly W + 1 keys."""
    sequence_len = 513
    sw = arch.sliding_window
    share = sequence_len / sw["short_divisor"]
    expected = (math.ceil(math.ceil(share) / sw["tile"]) * sw["tile"] if sw["short_rounding"] == "up_to_tile"
                else math.floor(share))
    windows = arch.window_sizes(sequence_len, 2)
    assert windows[0] == expected
    T = expected + 4
    config = make_config("sliding_window", sequence_len=sequence_len, n_layer=2, n_head=1, n_kv_head=1, n_embd=T)
    model = make_model(config, live=("sliding_window",))
    idx = torch.randint(0, config.vocab_size, (1, T), generator=torch.Generator().manual_seed(6))
    assert len(keys_seen(model, idx, 0, run_traced)[-1]) == min(T, windows[0] + 1)
