"""Inference: the engine, as nanochat's engine.py has it: the prompt prefilled once at batch 1, its KV cache copied
into the n rows of a bigger one (KVCache.prefill), then n streams decoded at once (Engine.generate, and
Engine.generate_batch which collects them). Every row must decode as the full forward over its own sequence
would, the smear's previous embedding included where the card has a smear.

The engine is the implementation's own (its engine.py, read without the rest of that module:
nanochat_verify/contract/engine.py). nanochat's Engine takes a tokenizer for its tool use; the tests hand it
`StubTokenizer`, whose special tokens are ids past the vocabulary, which the model never samples: no row
ends early, no tool call starts (unless a test names a token that ends a row).
"""

import pytest
import torch

from .conftest import engine_definition

pytestmark = pytest.mark.component("inference.engine")

PROMPT = [5, 1, 4, 1, 9, 2]


class StubTokenizer:
    """The tokenizer an Engine is handed here: special tokens map to ids past the vocabulary, except
    <|assistant_end|> when `assistant_end` names a token; it encodes and decodes nothing (no tool call can start,
    as <|python_start|> is never sampled)."""

    def __init__(self, vocab_size, assistant_end=None):
        self.vocab_size, self.assistant_end, self.specials = vocab_size, assistant_end, {}

    def encode_special(self, text):
        if text == "<|assistant_end|>" and self.assistant_end is not None:
            return self.assistant_end
        return self.specials.setdefault(text, self.vocab_size + len(self.specials))

    def get_bos_token_id(self):
        return self.encode_special("<|bos|>")

    def encode(self, text, *args, **kwargs):
        return []

    def decode(self, ids):
        return ""


@pytest.fixture(scope="module")
def engine_class(impl):
    return engine_definition(impl, "Engine")


@pytest.fixture
def smeared(make_config, make_model, arch):
    """(model, config): the tiny GQA model with the smear live where the card has one (its previous embedding must
    travel with a copied cache), a sequence long enough for the prompt and 8 more tokens."""
    features = ("smear",) if arch.has("smear") else ()
    config = make_config(*features, sequence_len=16)
    return make_model(config, live=features), config


@pytest.fixture
def engine(engine_class, smeared):
    model, config = smeared
    return engine_class(model, StubTokenizer(config.vocab_size))


def last_logits(model, seq):
    """The last position's logits of one full forward (no cache) over seq, in float64."""
    with torch.no_grad():
        return model(torch.tensor([seq]))[0, -1].double()


# ---- KVCache.prefill ------------------------------------------------------------------------------


def test_a_batch_1_prefill_copied_into_n_rows_decodes_each_row_like_the_full_forward(smeared, new_cache, caches):
    """Prefill 6 tokens at batch 1, copy that cache into a batch-3 cache (KVCache.prefill), then decode a different
    continuation in each row one token at a time: every logit is the full forward's over that row's sequence, the
    first decoded position included (it smears in the prompt's last embedding)."""
    if not callable(getattr(caches.cls, "prefill", None)):
        pytest.skip(f"the implementation's KV cache {caches.cls.__qualname__} has no prefill(): nothing to verify")
    model, config = smeared
    prompt = torch.tensor([PROMPT])
    continuations = torch.randint(0, config.vocab_size, (3, 5), generator=torch.Generator().manual_seed(2))
    assert len({tuple(row) for row in continuations.tolist()}) == 3  # premise: the rows differ
    with torch.no_grad():
        one = new_cache(config, batch_size=1, seq_len=len(PROMPT))  # sized as nanochat's Engine sizes it
        model(prompt, kv_cache=one)
        rows = new_cache(config, batch_size=3, seq_len=len(PROMPT) + 5)
        rows.prefill(one)
        assert caches.pos(rows) == len(PROMPT)
        decoded = torch.cat([model(continuations[:, t:t + 1], kv_cache=rows) for t in range(5)], dim=1)
        full = model(torch.cat([prompt.expand(3, -1), continuations], dim=1))[:, len(PROMPT):]
    torch.testing.assert_close(decoded, full, rtol=1e-5, atol=1e-5)


# ---- Engine.generate ------------------------------------------------------------------------------


def test_generate_yields_per_step_a_column_of_one_sampled_token_per_row(engine, smeared):
    """Engine.generate(tokens, num_samples=3, max_tokens=6) yields 6 (token_column, token_masks): 3 token ids in
    [0, vocab_size) and 3 masks of 1 (sampled, not forced)."""
    _, config = smeared
    steps = list(engine.generate(PROMPT, num_samples=3, max_tokens=6, temperature=1.0, seed=1))
    assert len(steps) == 6
    for column, masks in steps:
        assert len(column) == 3 and all(isinstance(t, int) and 0 <= t < config.vocab_size for t in column)
        assert list(masks) == [1, 1, 1]


def test_greedy_rows_each_follow_the_argmax_of_the_full_forward(engine, smeared):
    """At temperature 0 every row's token is, at every step, the argmax of the full forward over the prompt and
    that row's tokens so far."""
    model, _ = smeared
    rows = [list(PROMPT) for _ in range(2)]
    for column, _ in engine.generate(PROMPT, num_samples=2, max_tokens=8, temperature=0.0):
        for row, token in zip(rows, column):
            assert token == last_logits(model, row).argmax().item(), f"row {rows.index(row)} after {row}"
            row.append(token)


@pytest.fixture
def handed(monkeypatch):
    """Every probability tensor handed to torch.multinomial (normalised, float64), the draws left to torch."""
    seen, multinomial = [], torch.multinomial

    def recording(probs, *args, **kwargs):
        seen.append((probs / probs.sum(-1, keepdim=True)).double().clone())
        return multinomial(probs, *args, **kwargs)

    monkeypatch.setattr(torch, "multinomial", recording)
    return seen


def test_every_row_draws_from_softmax_of_the_full_forward_over_its_own_sequence(engine, smeared, handed):
    """At temperature 1.3 each step draws each row's token from softmax(logits / 1.3) of the full forward over the
    prompt and that row's tokens so far: the copied cache and the rows' own continuations decode as one forward."""
    model, _ = smeared
    temperature, rows = 1.3, [list(PROMPT) for _ in range(3)]
    steps = [column for column, _ in engine.generate(PROMPT, num_samples=3, max_tokens=6, temperature=temperature,
                                                     seed=5)]
    if not handed:
        pytest.skip("not observable: this engine does not draw through torch.multinomial")
    assert len(handed) == len(steps) == 6
    for step, (column, probs) in enumerate(zip(steps, handed)):
        expected = torch.stack([torch.softmax(last_logits(model, row) / temperature, dim=-1) for row in rows])
        # a draw for every row; before nanochat 48abd7d the first token was drawn once and broadcast
        torch.testing.assert_close(probs, expected[:probs.size(0)], rtol=0, atol=1e-5,
                                   msg=lambda m: f"step {step}: {m}")
        for row, token in zip(rows, column):
            row.append(token)


def test_top_k_keeps_every_rows_tokens_among_the_k_most_likely_of_its_own_sequence(engine, smeared):
    """With top_k=3 (at temperature 2, where unfiltered draws would often fall outside it) each row's token is, at
    every step, one of the 3 highest logits of the full forward over that row's sequence so far."""
    model, _ = smeared
    rows = [list(PROMPT) for _ in range(3)]
    for column, _ in engine.generate(PROMPT, num_samples=3, max_tokens=8, temperature=2.0, top_k=3, seed=4):
        for i, (row, token) in enumerate(zip(rows, column)):
            assert token in last_logits(model, row).topk(3).indices.tolist(), f"row {i} after {row}"
            row.append(token)


def test_every_row_draws_its_own_first_token(engine_class, smeared):
    """The first token too is drawn for each row on its own: 8 samples at temperature 2 do not all start alike
    (nanochat before 48abd7d drew it once and gave it to every row)."""
    model, config = smeared
    engine = engine_class(model, StubTokenizer(config.vocab_size))
    probs = torch.softmax(last_logits(model, PROMPT) / 2.0, dim=-1)
    assert probs.max() < 0.5  # premise: 8 independent draws all alike would have probability < 0.5**7
    for seed in (0, 1, 2):
        first, _ = next(iter(engine.generate(PROMPT, num_samples=8, max_tokens=1, temperature=2.0, seed=seed)))
        assert len(set(first)) > 1, f"seed {seed}: every row starts with {first[0]}"


def test_the_seed_decides_the_streams_and_the_global_rng_is_untouched(engine):
    """The same seed gives the same columns whatever torch's global RNG holds, another seed other columns, and
    sampling leaves the global RNG state as it was."""
    def run(seed):
        return list(engine.generate(PROMPT, num_samples=2, max_tokens=8, temperature=1.5, top_k=20, seed=seed))
    torch.manual_seed(0)
    before = torch.get_rng_state()
    a = run(1)
    assert torch.equal(torch.get_rng_state(), before)
    torch.manual_seed(1)
    assert run(1) == a
    assert run(2) != a


# ---- Engine.generate_batch ------------------------------------------------------------------------


def test_generate_batch_returns_each_rows_prompt_then_its_stream(engine):
    """generate_batch gives, per row, the prompt followed by that row's tokens of generate (same arguments), and
    masks 0 for the prompt, 1 for each sampled token."""
    if not callable(getattr(engine, "generate_batch", None)):
        pytest.skip("the implementation's Engine has no generate_batch(): nothing to verify")
    kwargs = dict(num_samples=3, max_tokens=5, temperature=1.0, top_k=10, seed=7)
    columns = [column for column, _ in engine.generate(PROMPT, **kwargs)]
    results, masks = engine.generate_batch(PROMPT, **kwargs)
    assert results == [PROMPT + [column[i] for column in columns] for i in range(3)]
    assert masks == [[0] * len(PROMPT) + [1] * 5] * 3


def test_a_row_ends_at_assistant_end_which_generate_batch_leaves_out(engine_class, smeared):
    """A row that samples <|assistant_end|> ends there: generate_batch returns it without that token, and once every
    row has ended generate stops (greedy rows, so all end at the same step)."""
    model, config = smeared
    plain = engine_class(model, StubTokenizer(config.vocab_size))
    greedy = [column[0] for column, _ in plain.generate(PROMPT, num_samples=1, max_tokens=6, temperature=0.0)]
    end = greedy[3]
    stop = greedy.index(end)  # the first time the stream reaches that token
    ending = engine_class(model, StubTokenizer(config.vocab_size, assistant_end=end))
    if not callable(getattr(ending, "generate_batch", None)):
        pytest.skip("the implementation's Engine has no generate_batch(): nothing to verify")
    steps = list(ending.generate(PROMPT, num_samples=2, max_tokens=6, temperature=0.0))
    assert [column for column, _ in steps] == [[t, t] for t in greedy[:stop + 1]]
    results, _ = ending.generate_batch(PROMPT, num_samples=2, max_tokens=6, temperature=0.0)
    assert results == [PROMPT + greedy[:stop]] * 2
