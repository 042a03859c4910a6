"""The project's own model rejects bad input with a ValueError that names the value and the expectation,
before doing any work (so nothing, a KV cache included, is left half-updated)."""

import os
import re

import pytest
import torch

from .conftest import TINY

pytestmark = [pytest.mark.component("contract.validation"), pytest.mark.project_only]


def kwargs_id(kwargs):
    """A readable test id for a dict of arguments: 'top_k=-1,seed=None'."""
    return ",".join(f"{name}={value!r}" for name, value in kwargs.items())


BAD_CONFIGS = [
    (dict(n_embd=30, n_head=4), "n_embd=30 must be divisible by n_head=4"),
    (dict(n_head=4, n_kv_head=3), "n_head=4 must be divisible by n_kv_head=3"),
    (dict(n_embd=12, n_head=4, n_kv_head=4), "head_dim=3"),
    (dict(n_layer=0), "n_layer must be a positive integer, got 0"),
    (dict(n_head=-2), "n_head must be a positive integer, got -2"),
    (dict(vocab_size=0), "vocab_size must be a positive integer, got 0"),
    (dict(sequence_len=2.5), "sequence_len must be a positive integer, got 2.5"),
    (dict(n_embd=True), "n_embd must be a positive integer, got True"),
    (dict(window_pattern="sssl"), "window_pattern must be a non-empty string of S (short) and L (long), got 'sssl'"),
    (dict(window_pattern=""), "window_pattern must be a non-empty string"),
    (dict(smear=True, n_embd=16, n_head=2, n_kv_head=2), "smear needs n_embd >= 24"),
    (dict(pad_vocab_size_to=0), "pad_vocab_size_to must be a positive integer, got 0"),
]


@pytest.mark.parametrize("overrides, message", BAD_CONFIGS, ids=[kwargs_id(o) for o, _ in BAD_CONFIGS])
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
    (lambda V: torch.tensor([1, 2, 3]), r"idx must be a 2-D \(B, T\) tensor of int64 or int32 token ids, got a tensor of shape \(3,\)"),
    (lambda V: torch.zeros(1, 3), r"got a tensor of shape \(1, 3\) dtype torch.float32"),
    (lambda V: torch.zeros(1, 3, dtype=torch.bool), r"dtype torch.bool"),
    (lambda V: torch.tensor([[1, 2, 3]], dtype=torch.int8), r"int64 or int32 token ids, got a tensor of shape \(1, 3\) dtype torch.int8"),
    (lambda V: torch.tensor([[1, 2, 3]], dtype=torch.uint8), r"int64 or int32 token ids, got .* dtype torch.uint8"),
    (lambda V: torch.tensor([[1, 2, 3]], dtype=torch.int16), r"int64 or int32 token ids, got .* dtype torch.int16"),
    (lambda V: [[1, 2, 3]], r"got list"),
    (lambda V: torch.tensor([[1, V, 2]]), r"token ids must lie in \[0, 64\) \(vocab_size\), got values in \[1, 64\]"),
    (lambda V: torch.tensor([[-1, 0]]), r"got values in \[-1, 0\]"),
    (lambda V: torch.zeros(1, 161, dtype=torch.long), r"T=161 tokens at position 0 does not fit the rotary cache of 160"),
    (lambda V: torch.zeros(1, 0, dtype=torch.long), r"T=0"),
    (lambda V: torch.zeros(0, 3, dtype=torch.long), r"at least one sequence, got batch size 0 \(shape \(0, 3\)\)"),
    (lambda V: torch.tensor([[1, 2], [3, V]]), r"got values in \[1, 64\]"),
    (lambda V: torch.tensor([[1, 2], [3, -1]]), r"got values in \[-1, 3\]"),
], ids=["1-D", "float", "bool", "int8", "uint8", "int16", "list", "id=vocab_size", "id=-1", "T=limit+1", "T=0", "B=0",
        "id=vocab_size-in-row-2", "id=-1-in-row-2"])
def test_bad_token_batches_are_rejected(model, make_idx, message):
    """forward refuses non-2-D inputs, dtypes nn.Embedding does not take (floats, bool, int8, uint8, int16),
    out-of-vocabulary or too-long inputs, naming what it got."""
    with pytest.raises(ValueError, match=message):
        model(make_idx(model.config.vocab_size))


@pytest.mark.parametrize("make_targets, message", [
    (lambda idx: idx[:, :-1], r"targets must be an int64 tensor of the same shape as idx \(2, 16\), got a tensor of shape \(2, 15\)"),
    (lambda idx: idx.T, r"the same shape as idx \(2, 16\), got a tensor of shape \(16, 2\)"),
    (lambda idx: idx.reshape(-1), r"the same shape as idx \(2, 16\), got a tensor of shape \(32,\)"),
    (lambda idx: idx.float(), r"dtype torch.float32"),
    (lambda idx: idx.int(), r"targets must be an int64 tensor .*, got a tensor of shape \(2, 16\) dtype torch.int32"),
    (lambda idx: idx.to(torch.int8), r"dtype torch.int8"),
    (lambda idx: idx - 2, r"targets must lie in \[0, 64\) or be -1 \(ignored\), got values in \[-2,"),
    (lambda idx: idx + 64, r"got values in \[64,"),
], ids=["shorter", "transposed", "flat", "float", "int32", "int8", "below-minus-1", "vocab_size-and-above"])
def test_bad_targets_are_rejected(model, idx, make_targets, message):
    """Targets must match idx in shape, be int64 (what cross_entropy takes) and hold vocabulary ids or -1."""
    with pytest.raises(ValueError, match=message):
        model(idx, make_targets(idx))


@pytest.mark.parametrize("with_targets", [True, False], ids=["with-targets", "without-targets"])
def test_unknown_loss_reduction_is_rejected(model, idx, with_targets):
    """loss_reduction must be 'mean', 'sum' or 'none', also when no targets are given (a typo is never ignored)."""
    with pytest.raises(ValueError, match="loss_reduction must be 'mean', 'sum' or 'none', got 'avg'"):
        model(idx, idx if with_targets else None, loss_reduction="avg")


def test_rejected_input_leaves_the_kv_cache_untouched(model, config, kv_cache_class):
    """A refused chunk does not advance or write the cache: decoding continues as if it never came."""
    cache = kv_cache_class(1, config.n_kv_head, 8, config.n_embd // config.n_head, config.n_layer)
    prompt = torch.tensor([[1, 2, 3]])
    model(prompt, kv_cache=cache)
    snapshot = cache.kv_cache.clone()
    with pytest.raises(ValueError, match="token ids"):
        model(torch.tensor([[4, 999]]), kv_cache=cache)
    assert cache.get_pos() == 3
    torch.testing.assert_close(cache.kv_cache, snapshot, rtol=0, atol=0, equal_nan=True)  # unwritten slots are uninitialised


def test_a_flash_cache_with_rows_at_different_positions_is_refused(model, config, idx, flash_kv_cache_class):
    """The model decodes every row at one position: a flash-style cache whose rows stand at 5 and 3 is refused
    before anything is written, not decoded at row 0's position for both (nanochat PR 485)."""
    cache = flash_kv_cache_class(2, config.n_kv_head, 16, config.n_embd // config.n_head, config.n_layer)
    model(idx[:, :5], kv_cache=cache)
    cache.cache_seqlens[1] = 3
    snapshot = cache.k_cache.clone()
    with pytest.raises(ValueError, match=re.escape("same position, got cache_seqlens [5, 3]")):
        model(idx[:, 5:6], kv_cache=cache)
    assert cache.cache_seqlens.tolist() == [5, 3]
    torch.testing.assert_close(cache.k_cache, snapshot, rtol=0, atol=0)


def test_decoding_past_the_rotary_cache_is_rejected(model, config, kv_cache_class):
    """The cache position counts toward the rotary limit: 10 * sequence_len positions in all."""
    limit = 10 * config.sequence_len
    cache = kv_cache_class(1, config.n_kv_head, limit, config.n_embd // config.n_head, config.n_layer)
    model(torch.zeros(1, limit - 1, dtype=torch.long), kv_cache=cache)
    model(torch.zeros(1, 1, dtype=torch.long), kv_cache=cache)
    with pytest.raises(ValueError, match=f"at position {limit} does not fit the rotary cache of {limit}"):
        model(torch.zeros(1, 1, dtype=torch.long), kv_cache=cache)


BAD_GENERATE_ARGS = [
    (dict(tokens=[]), "tokens must be a non-empty list"),
    (dict(tokens=[1, 64]), r"tokens must be a non-empty list of ints in \[0, 64\), got tokens\[1\] = 64"),
    (dict(max_tokens=-1), "max_tokens must be a non-negative int, got -1"),
    (dict(tokens=torch.tensor([1, 2])), r"tokens must be a non-empty list of ints in \[0, 64\), got a tensor of shape \(2,\)"),
    (dict(tokens=torch.tensor([1])), r"got a tensor of shape \(1,\)"),
    (dict(tokens=(1, 2)), r"got tuple \(1, 2\)"),
    (dict(tokens="ab"), r"got str 'ab'"),
    (dict(tokens=[1, True]), r"got tokens\[1\] = True"),
    (dict(max_tokens=2.0), "max_tokens must be a non-negative int, got 2.0"),
    (dict(max_tokens=True), "max_tokens must be a non-negative int, got True"),
    (dict(temperature=-0.5), "temperature must be a finite number >= 0 \\(0 is greedy\\), got -0.5"),
    (dict(temperature=float("nan")), "temperature must be a finite number >= 0 .*, got nan"),
    (dict(temperature=float("inf")), "got inf"),
    (dict(temperature=True), "got True"),
    (dict(temperature="1"), "got '1'"),
    (dict(top_k=-1), r"top_k must be None or an int >= 0 \(0: no filtering\), got -1"),
    (dict(top_k=True), "top_k must be None or an int >= 0 .*, got True"),
    (dict(top_k=2.0), "top_k must be None or an int >= 0 .*, got 2.0"),
    (dict(seed=1.5), "seed must be an int .*, got 1.5"),
    (dict(seed=None), "seed must be an int .*, got None"),
    (dict(seed=2 ** 64), r"seed must be an int in \[-2\*\*63, 2\*\*64\) .*, got 18446744073709551616"),
    (dict(seed=-2 ** 63 - 1), "got -9223372036854775809"),
    (dict(max_tokens=10 ** 6), "exceeds the rotary cache"),
]


@pytest.mark.parametrize("args, message", BAD_GENERATE_ARGS, ids=[kwargs_id(a) for a, _ in BAD_GENERATE_ARGS])
def test_bad_generate_arguments_are_rejected_before_any_token(model, args, message):
    """generate checks its arguments when called, before streaming anything."""
    kwargs = dict(tokens=[1, 2], max_tokens=3) | args
    with pytest.raises(ValueError, match=message):
        next(model.generate(**kwargs))


@pytest.mark.parametrize("args, message", [
    ((0, 2, 8, 4, 1), "batch_size must be a positive integer, got 0"),
    ((1, 2, 8, 4, -1), "num_layers must be a positive integer, got -1"),
], ids=["batch_size=0", "num_layers=-1"])
def test_bad_kv_cache_sizes_are_rejected(args, message, kv_cache_class):
    """KVCache names the size it cannot use."""
    with pytest.raises(ValueError, match=message):
        kv_cache_class(*args)


def test_kv_cache_rejects_keys_of_the_wrong_shape(kv_cache_class):
    """insert_kv names the expected (B, H_kv, T, D) and what it got, and stores nothing."""
    cache = kv_cache_class(1, 2, 8, 4, 1)
    with pytest.raises(ValueError, match=r"expects k and v of shape \(B=1, H_kv=2, T, D=4\), got k \(1, 4, 3, 4\)"):
        cache.insert_kv(0, torch.zeros(1, 4, 3, 4), torch.zeros(1, 4, 3, 4))
    assert cache.get_pos() == 0 and cache.kv_cache is None


def test_a_mismatched_batch_leaves_the_kv_cache_untouched(model, config, kv_cache_class):
    """A batch of 2 through a cache for 1 is refused at the first layer, before anything is stored."""
    cache = kv_cache_class(1, config.n_kv_head, 8, config.n_embd // config.n_head, config.n_layer)
    with pytest.raises(ValueError, match="B=1"):
        model(torch.zeros(2, 3, dtype=torch.long), kv_cache=cache)
    assert cache.get_pos() == 0 and cache.kv_cache is None


def test_apply_rotary_emb_rejects_odd_or_misshaped_input(impl):
    """apply_rotary_emb needs (B, T, H, D) with D even."""
    with pytest.raises(ValueError, match=r"\(B, T, H, D\) with D even, got \(2, 3, 5\)"):
        impl.apply_rotary_emb(torch.zeros(2, 3, 5), torch.zeros(1, 3, 1, 2), torch.zeros(1, 3, 1, 2))


# ---- every check at its exact boundary: accepted at the limit, rejected one past it -----------------


def test_gptconfig_defaults_are_nanochats(impl):
    """GPTConfig() is sequence_len=1024, vocab_size=50304, n_layer=12, n_head=6, n_kv_head=6, n_embd=768."""
    c = impl.GPTConfig()
    assert (c.sequence_len, c.vocab_size, c.n_layer, c.n_head, c.n_kv_head, c.n_embd) == (1024, 50304, 12, 6, 6, 768)


@pytest.mark.parametrize("feature", ["smear", "value_embeds"])
def test_a_model_exactly_as_wide_as_a_gate_reads_is_accepted_one_narrower_refused(impl, arch, feature):
    """The smear gate reads 24 channels and the value-embedding gate 12: n_embd equal to that is a valid model whose
    forward runs; two channels fewer is refused, naming the width it needs."""
    channels = arch.smear["channels"] if feature == "smear" else arch.value_embeddings["gate_channels"]
    sizes = dict(sequence_len=4, vocab_size=8, n_layer=2, n_kv_head=1, **{feature: True})
    model = impl.GPT(impl.GPTConfig(**sizes, n_head=channels // 4, n_embd=channels))
    assert model(torch.zeros(1, 4, dtype=torch.long)).shape == (1, 4, 8)
    with pytest.raises(ValueError, match=f"{feature} needs n_embd >= {channels}"):
        impl.GPTConfig(**sizes, n_head=1, n_embd=channels - 2)


def test_the_smallest_config_every_size_1_is_accepted_and_runs(impl):
    """Every size at its lower limit (1, and head_dim 2) builds a model whose forward and loss work."""
    model = impl.GPT(impl.GPTConfig(sequence_len=1, vocab_size=1, n_layer=1, n_head=1, n_kv_head=1, n_embd=2))
    idx = torch.zeros(1, 10, dtype=torch.long)
    assert model(idx).shape == (1, 10, 1)
    assert torch.isfinite(model(idx, idx))


def test_token_ids_0_and_vocab_size_minus_1_are_accepted(model):
    """The first and last vocabulary ids are valid input (one past either end is refused: see above)."""
    V = model.config.vocab_size
    assert model(torch.tensor([[0, V - 1, 0]])).shape == (1, 3, V)


def test_targets_vocab_size_minus_1_and_minus_1_are_accepted(model, idx):
    """Targets may hold the last vocabulary id and -1 (ignored): the loss is finite."""
    V = model.config.vocab_size
    targets = idx.clone()
    targets[0, 0], targets[0, 1], targets[1, 0] = V - 1, -1, 0
    assert torch.isfinite(model(idx, targets))


@pytest.mark.parametrize("bad", [64, -2], ids=["vocab_size", "-2"])
def test_one_target_one_past_either_end_is_a_value_error(model, idx, bad):
    """A single target of vocab_size or -2 among valid ones raises ValueError (never IndexError from the loss)."""
    targets = idx.clone()
    targets[1, 5] = bad
    with pytest.raises(ValueError, match=rf"targets must lie in \[0, 64\) or be -1 \(ignored\), got values in \[.*{bad}"):
        model(idx, targets)


def test_a_sequence_as_long_as_the_rotary_cache_is_accepted(model):
    """T = 10 * sequence_len fills the rotary tables exactly and is accepted (T + 1 is refused: see above)."""
    limit = 10 * model.config.sequence_len
    assert model(torch.zeros(1, limit, dtype=torch.long)).shape == (1, limit, model.config.vocab_size)


def test_a_chunk_ending_at_the_rotary_limit_through_the_kv_cache_is_accepted_one_more_refused(model, config, kv_cache_class):
    """Through the cache, T0 + T = 10 * sequence_len is accepted and T0 + T = limit + 1 refused."""
    limit = 10 * config.sequence_len
    cache = kv_cache_class(1, config.n_kv_head, limit, config.n_embd // config.n_head, config.n_layer)
    model(torch.zeros(1, 100, dtype=torch.long), kv_cache=cache)
    with pytest.raises(ValueError, match=f"T={limit - 99} tokens at position 100 does not fit the rotary cache of {limit}"):
        model(torch.zeros(1, limit - 99, dtype=torch.long), kv_cache=cache)
    model(torch.zeros(1, limit - 100, dtype=torch.long), kv_cache=cache)
    assert cache.get_pos() == limit


@pytest.mark.parametrize("prompt, max_tokens, ok", [
    (157, 3, True), (158, 3, False), (160, 0, True), (161, 0, False),
], ids=["prompt+max_tokens=limit", "limit+1", "prompt=limit", "prompt=limit+1"])
def test_generate_fits_prompt_plus_max_tokens_up_to_the_rotary_limit(model, prompt, max_tokens, ok):
    """generate accepts len(tokens) + max_tokens == 10 * sequence_len and refuses one more."""
    assert 10 * model.config.sequence_len == 160
    stream = model.generate([1] * prompt, max_tokens, seed=0)
    if ok:
        assert len(list(stream)) == max_tokens
    else:
        with pytest.raises(ValueError, match=f"prompt of {prompt} plus max_tokens={max_tokens} exceeds the rotary cache of 160"):
            next(stream)


GOOD_GENERATE_ARGS = [
    (dict(max_tokens=0), 0), (dict(temperature=0), 3), (dict(temperature=1), 3), (dict(top_k=0), 3),
    (dict(top_k=1), 3), (dict(seed=2 ** 64 - 1), 3), (dict(seed=-2 ** 63), 3), (dict(tokens=[0, 63]), 3),
]


@pytest.mark.parametrize("args, n", GOOD_GENERATE_ARGS, ids=[kwargs_id(a) for a, _ in GOOD_GENERATE_ARGS])
def test_generate_accepts_each_argument_at_its_limit(model, args, n):
    """max_tokens=0, temperature=0 or an int, top_k=0 or 1, seeds -2**63 and 2**64-1, token ids 0 and vocab_size-1 are valid."""
    assert len(list(model.generate(**(dict(tokens=[1, 2], max_tokens=3) | args)))) == n


def test_int32_token_ids_are_accepted_and_read_as_int64_ones(model, idx):
    """int32 ids, which nn.Embedding takes as well, give exactly the logits of the same ids in int64."""
    torch.testing.assert_close(model(idx.int()), model(idx), rtol=0, atol=0)


@pytest.mark.parametrize("temperature", [1e-38, 5e-324], ids=["1e-38", "smallest-double"])
def test_a_temperature_too_small_to_divide_by_is_greedy(model, temperature):
    """A temperature so small that the logits divided by it overflow float32 (inf, then NaN in the softmax) is
    its limit, greedy decoding, never an error from torch.multinomial."""
    greedy = list(model.generate([6, 1], 8, temperature=0))
    assert list(model.generate([6, 1], 8, temperature=temperature, seed=3)) == greedy


def test_the_smallest_temperature_still_divided_by_samples_without_error(model):
    """Just above that limit the logits are still divided (they stay finite), and sampling works."""
    assert len(list(model.generate([6, 1], 8, temperature=5e-38, seed=3))) == 8


# ---- sizes that cannot fit ------------------------------------------------------------------------


HUGE = [dict(n_embd=2 ** 22, n_head=2 ** 15, n_kv_head=2 ** 15), dict(n_layer=10 ** 6, n_embd=768, n_head=6, n_kv_head=6)]


@pytest.mark.parametrize("overrides", HUGE, ids=["n_embd=2**22", "n_layer=10**6"])
def test_a_model_that_cannot_fit_in_memory_is_refused_before_anything_is_allocated(impl, overrides):
    """GPT refuses, in one ValueError naming the sizes, the parameter count and the machine's memory, a model
    whose weights alone exceed it, at once (it used to build for minutes, or fail in torch asking for 70 TB), and
    says how to build it anyway: on the meta device, where it builds and counts the same."""
    config = impl.GPTConfig(**{**TINY, "vocab_size": 50304, "sequence_len": 1024, **overrides})
    count = 2 * config.vocab_size * config.n_embd + 12 * config.n_layer * config.n_embd ** 2  # the SPEC's closed form
    named = ", ".join(f"{k}={getattr(config, k)}" for k in ("n_layer", "n_embd", "vocab_size"))
    with pytest.raises(ValueError, match=re.escape(f"GPTConfig({named}) makes {count:,} parameters, ") +
                       r"[\d,.]+ GB in torch.float32: more than this machine's [\d.]+ GB of memory; build it on the "
                       r"meta device"):
        impl.GPT(config)
    if config.n_layer < 100:  # a million blocks take minutes to build, even on the meta device
        with torch.device("meta"):
            model = impl.GPT(config)
        assert sum(p.numel() for p in model.parameters()) == count


@pytest.mark.parametrize("features", [(), ("value_embeddings", "lambdas", "smear", "backout", "padded_vocab")],
                         ids=["seed", "every-modern-component"])
def test_the_memory_check_counts_every_parameter_of_the_model(impl, make_config, monkeypatch, features):
    """On a machine with exactly the bytes of the model's weights it is built; with one byte less it is refused:
    the check counts what the model allocates, no more, no less."""
    config = make_config(*features, vocab_size=61, n_layer=3)  # odd: value embeddings on 2 of 3 layers
    with torch.device("meta"):
        needed = sum(p.numel() for p in impl.GPT(config).parameters()) * 4
    sysconf = os.sysconf
    for memory, fits in ((needed, True), (needed - 1, False)):
        monkeypatch.setattr(os, "sysconf", lambda name, m=memory: 1 if name == "SC_PAGE_SIZE" else
                            m if name == "SC_PHYS_PAGES" else sysconf(name))
        if fits:
            impl.GPT(config)
        else:
            with pytest.raises(ValueError, match="more than this machine's"):
                impl.GPT(config)


SIZES = ("batch_size", "num_heads", "seq_len", "head_dim", "num_layers")


@pytest.mark.parametrize("name", SIZES)
def test_kv_cache_sizes_of_1_are_accepted_and_0_refused(name, kv_cache_class):
    """Each KVCache size may be 1 (and the cache works) but not 0."""
    cache = kv_cache_class(1, 1, 1, 2, 1)
    k, v = cache.insert_kv(0, torch.ones(1, 1, 3, 2), torch.zeros(1, 1, 3, 2))
    assert k.shape == (1, 1, 3, 2) and cache.get_pos() == 3
    with pytest.raises(ValueError, match=f"KVCache {name} must be a positive integer, got 0"):
        kv_cache_class(**{n: 0 if n == name else 1 for n in SIZES})


# ---- the usual training call ----------------------------------------------------------------------


def test_the_shifted_training_call_with_non_contiguous_targets_works(model):
    """model(x[:, :-1], x[:, 1:]) (non-contiguous views) gives the cross-entropy of the logits against x[:, 1:]."""
    x = torch.randint(0, model.config.vocab_size, (3, 9), generator=torch.Generator().manual_seed(4))
    assert not x[:, 1:].is_contiguous()
    loss = model(x[:, :-1], x[:, 1:])
    logits = model(x[:, :-1].contiguous()).double()
    log_probs = logits.log_softmax(-1).gather(-1, x[:, 1:, None]).squeeze(-1)
    torch.testing.assert_close(loss.double(), -log_probs.mean(), rtol=1e-6, atol=1e-6)
    per_token = model(x[:, :-1], x[:, 1:], loss_reduction="none")
    torch.testing.assert_close(per_token.double(), -log_probs.reshape(-1), rtol=1e-6, atol=1e-6)


def test_with_a_padded_vocabulary_ids_and_targets_past_vocab_size_are_still_refused(impl):
    """The padding rows of wte and lm_head are no tokens: ids and targets must lie below vocab_size, not below the
    padded size."""
    model = impl.GPT(impl.GPTConfig(**{**TINY, "vocab_size": 50, "pad_vocab_size_to": 64}))
    with pytest.raises(ValueError, match=r"token ids must lie in \[0, 50\)"):
        model(torch.tensor([[1, 50]]))
    with pytest.raises(ValueError, match=r"targets must lie in \[0, 50\)"):
        model(torch.tensor([[1, 2]]), torch.tensor([[3, 60]]))
