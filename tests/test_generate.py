"""Inference: GPT.generate(tokens, max_tokens, temperature=1.0, top_k=None, seed=42) streams sampled token ids
after a prompt. A contract of every nanochat: each step draws from softmax(logits / temperature) of the full
forward over the sequence so far, over the top_k highest logits, with a generator of its own seeded by `seed`.
Prompts are at least 2 tokens (nanochat 92d63d4's forward without a KV cache needs T > 1, and its
generate runs one). Its ValueErrors are this project's extras (tests/test_validation.py)."""

import inspect
import types

import pytest
import torch

from .strategies import min_width

pytestmark = pytest.mark.component("inference.generate")


@pytest.fixture(autouse=True)
def _has_generate(impl):
    if not callable(getattr(impl.GPT, "generate", None)):
        pytest.skip(f"the GPT of {impl.__file__} has no generate(): nothing to verify")


def test_generate_streams_python_ints_lazily(model):
    """generate returns a generator of max_tokens ints in [0, vocab_size)."""
    stream = model.generate([1, 2, 3], max_tokens=5)
    assert isinstance(stream, types.GeneratorType)
    tokens = list(stream)
    vocab = model.config.vocab_size
    odd = [t for t in tokens if not (isinstance(t, int) and 0 <= t < vocab)]
    assert len(tokens) == 5, f"generate(max_tokens=5) yielded {len(tokens)} items"
    assert not odd, f"generate yielded {odd[0]!r} ({type(odd[0]).__name__}); the contract yields ints in [0, {vocab})"


def test_greedy_generation_follows_the_argmax_of_a_full_forward(model):
    """temperature=0 picks, at every step, the argmax of the full forward pass over the sequence so far."""
    seq = [5, 9, 2]
    for token in model.generate(seq, max_tokens=6, temperature=0):
        expected = model(torch.tensor([seq]))[0, -1].argmax().item()
        assert token == expected
        seq.append(token)


def test_top_k_1_is_greedy(model):
    """top_k=1 leaves only the most likely token, whatever the temperature."""
    assert list(model.generate([4, 4], 6, temperature=1.5, top_k=1)) == list(model.generate([4, 4], 6, temperature=0))


def test_top_k_samples_only_among_the_k_most_likely(model):
    """With top_k=3 every sampled token is one of the 3 highest logits at its step."""
    seq = [1, 2]
    for token in model.generate(seq, 8, temperature=2.0, top_k=3, seed=7):
        top3 = model(torch.tensor([seq]))[0, -1].topk(3).indices.tolist()
        assert token in top3
        seq.append(token)


def test_the_seed_makes_sampling_reproducible(model):
    """The same seed gives the same stream; another seed gives another one."""
    a = list(model.generate([3, 3], 12, seed=1))
    assert a == list(model.generate([3, 3], 12, seed=1))
    assert a != list(model.generate([3, 3], 12, seed=2))


def test_a_temperature_near_zero_samples_the_argmax(model):
    """Logits are divided by the temperature: at 1e-4 sampling becomes greedy, at 1 it does not."""
    greedy = list(model.generate([6, 1], 12, temperature=0))
    assert list(model.generate([6, 1], 12, temperature=1e-4, seed=3)) == greedy
    assert list(model.generate([6, 1], 12, temperature=1.0, seed=3)) != greedy


# ---- the distribution each step samples from ------------------------------------------------------


@pytest.fixture
def sampled(monkeypatch):
    """Every probability vector generate hands to torch.multinomial, normalised, in float64."""
    seen = []
    multinomial = torch.multinomial

    def recording(probs, *args, **kwargs):
        seen.append((probs / probs.sum(-1, keepdim=True)).double().squeeze(0).clone())
        return multinomial(probs, *args, **kwargs)

    monkeypatch.setattr(torch, "multinomial", recording)
    return seen


def last_logits(model, seq):
    """The last position's logits of one full forward (no KV cache) over seq, in float64."""
    with torch.no_grad():
        return model(torch.tensor([seq]))[0, -1].double()


@pytest.mark.parametrize("temperature", [0.5, 2.0], ids=["T=0.5", "T=2"])
def test_each_step_samples_from_softmax_of_the_logits_over_the_temperature(model, sampled, temperature):
    """Every step samples from exactly softmax(logits / T) of a full forward over the sequence so far: T applied once."""
    seq = [3, 1, 4]
    tokens = list(model.generate(seq, 6, temperature=temperature, seed=5))
    assert len(sampled) == len(tokens) == 6, "generate must sample each token through torch.multinomial"
    for token, probs in zip(tokens, sampled):
        expected = torch.softmax(last_logits(model, seq) / temperature, dim=-1)
        torch.testing.assert_close(probs, expected, rtol=0, atol=1e-5)
        assert probs[token] > 0
        seq = seq + [token]


@pytest.mark.parametrize("top_k", [2, 5, 63], ids=lambda k: f"top_k={k}")
def test_top_k_leaves_exactly_the_k_most_likely_tokens_with_renormalised_probabilities(model, sampled, top_k):
    """With top_k=k exactly the k highest logits keep a nonzero probability, softmax(their logits / T); the rest 0."""
    seq, temperature = [9, 2], 0.8
    tokens = list(model.generate(seq, 5, temperature=temperature, top_k=top_k, seed=2))
    assert len(sampled) == len(tokens) == 5
    for token, probs in zip(tokens, sampled):
        logits = last_logits(model, seq)
        ranked = logits.sort(descending=True).values
        assert ranked[top_k - 1] - ranked[top_k] > 1e-4, "no tie at the k-th logit (premise of the test)"
        top = logits.topk(top_k)
        expected = torch.zeros_like(probs).index_copy(0, top.indices, torch.softmax(top.values / temperature, dim=-1))
        assert int((probs > 0).sum()) == top_k
        torch.testing.assert_close(probs, expected, rtol=0, atol=1e-5)
        seq = seq + [token]


@pytest.mark.parametrize("top_k", [0, 64, 65, 10 ** 9], ids=["top_k=0", "top_k=vocab", "top_k=vocab+1", "top_k=1e9"])
def test_top_k_zero_or_at_least_the_vocabulary_filters_nothing(model, sampled, top_k):
    """top_k=0 and top_k >= vocab_size keep every token: the same distributions and stream as top_k=None."""
    unfiltered = list(model.generate([2, 7], 5, temperature=1.3, seed=11))
    n = len(sampled)
    assert list(model.generate([2, 7], 5, temperature=1.3, top_k=top_k, seed=11)) == unfiltered
    assert n == 5 and len(sampled) == 2 * n
    for plain, filtered in zip(sampled[:n], sampled[n:]):
        assert (filtered > 0).all()
        torch.testing.assert_close(filtered, plain, rtol=0, atol=0)


@pytest.fixture
def context_free_model(make_config, make_model, arch):
    """A model whose logits are the same at every position, whatever the context, set by raw logits."""
    def make(raw):
        raw, width = torch.tensor(raw), max(8, min_width(arch))  # as wide as the card's gates read
        config = make_config(sequence_len=32, vocab_size=len(raw), n_layer=1, n_head=1, n_kv_head=1, n_embd=width)
        model = make_model(config, randomize=False)  # every residual branch zero: the stream is norm(wte(token))
        with torch.no_grad():
            model.transformer.wte.weight.fill_(1.0)  # every token embeds alike: norm gives all ones
            model.lm_head.weight.zero_()  # rows past vocab_size (a padded vocabulary) are sliced off anyway
            model.lm_head.weight[:len(raw)] = raw[:, None].expand(len(raw), width) / width  # so lm_head gives raw
            logits = model(torch.tensor([[0, 3, 1, 2, 2]]))[0].double()
        torch.testing.assert_close(logits, logits[:1].expand_as(logits), rtol=0, atol=1e-6)  # premise: context-free
        return model, logits[0]
    return make


# chi2.ppf(0.999, df=3): a correct sampler fails this check with probability 0.001 (here: never, the seed is fixed)
CHI2_CRITICAL_DF3_P001 = 16.266


def test_sample_frequencies_fit_softmax_over_the_temperature_by_chi_square(context_free_model):
    """200 tokens from a model whose logits ignore the context fit softmax(logits / T) (chi-square, p = 0.001)."""
    model, logits = context_free_model([-3.0, -1.0, 1.0, 3.0])
    temperature, n = 2.0, 200
    expected = n * torch.softmax(logits / temperature, dim=-1)
    assert expected.min() >= 5  # the chi-square approximation holds
    counts = torch.bincount(torch.tensor(list(model.generate([0, 0], n, temperature=temperature, seed=0))), minlength=4)
    chi2 = float(((counts - expected) ** 2 / expected).sum())
    assert chi2 < CHI2_CRITICAL_DF3_P001, f"counts {counts.tolist()} vs expected {expected.tolist()}: chi2={chi2:.1f}"


def test_temperature_0_is_the_exact_argmax_even_against_a_runner_up_1e3_behind(context_free_model):
    """temperature=0 always picks the argmax, never the runner-up 0.001 behind (a tiny temperature would, half the time)."""
    model, logits = context_free_model([1.0, 0.999, -1.0, -1.0])
    assert 0 < logits[0] - logits[1] < 2e-3  # premise: a near tie
    for seed in (0, 1):
        assert list(model.generate([2, 2], 20, temperature=0, seed=seed)) == [0] * 20


def test_temperature_0_is_the_argmax_whatever_the_seed(model):
    """temperature=0 is deterministic: every seed and top_k gives the same greedy stream, the argmax at every step."""
    seq = [7, 3]
    greedy = list(model.generate(seq, 6, temperature=0, seed=1))
    assert list(model.generate(seq, 6, temperature=0, seed=2)) == greedy
    assert list(model.generate(seq, 6, temperature=0, top_k=3, seed=3)) == greedy
    assert list(model.generate(seq, 6, temperature=0, top_k=1, seed=4)) == greedy  # the k-th logit itself stays in
    for token in greedy:
        assert token == last_logits(model, seq).argmax().item()
        seq = seq + [token]


# ---- random number generation ---------------------------------------------------------------------


@pytest.mark.parametrize("temperature, top_k", [(1.0, None), (0.7, 5), (0, None)], ids=["T=1", "T=0.7-top5", "greedy"])
def test_generate_leaves_the_global_rng_untouched(model, temperature, top_k):
    """Sampling draws from the stream's own generator: torch's global RNG state is the same before and after."""
    torch.manual_seed(123)
    before = torch.get_rng_state()
    list(model.generate([1, 2], 8, temperature=temperature, top_k=top_k, seed=3))
    assert torch.equal(torch.get_rng_state(), before)


def test_the_stream_depends_on_the_seed_not_on_the_global_rng(model):
    """Whatever the global RNG's state, the same seed gives the same stream."""
    torch.manual_seed(0)
    a = list(model.generate([4, 8], 10, seed=9))
    torch.manual_seed(1)
    torch.rand(100)
    assert list(model.generate([4, 8], 10, seed=9)) == a


def test_interleaved_streams_equal_the_same_streams_run_separately(model):
    """Each generate call owns its torch.Generator: advancing A, B, A, B... gives what A and B give alone."""
    kwargs = dict(tokens=[5, 5], max_tokens=8, temperature=1.5)
    alone = [list(model.generate(**kwargs, seed=seed)) for seed in (1, 2)]
    assert alone[0] != alone[1]  # premise: two different streams
    streams, interleaved = [model.generate(**kwargs, seed=seed) for seed in (1, 2)], [[], []]
    for _ in range(8):
        for stream, out in zip(streams, interleaved):
            out.append(next(stream))
    assert interleaved == alone


def test_generate_defaults_are_temperature_1_no_top_k_and_seed_42(model):
    """The documented defaults temperature=1.0, top_k=None, seed=42: leaving them out equals passing them."""
    defaults = {name: p.default for name, p in inspect.signature(type(model).generate).parameters.items()}
    assert (defaults["temperature"], defaults["top_k"], defaults["seed"]) == (1.0, None, 42)
    assert list(model.generate([8, 8], 10)) == list(model.generate([8, 8], 10, temperature=1.0, top_k=None, seed=42))


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_generate_samples_on_the_models_device_with_its_own_generator(model):
    """On a GPU, generate samples with a generator on the model's device (a CPU generator with CUDA probabilities
    is refused by torch.multinomial), and gives the CPU's greedy stream."""
    greedy = list(model.generate([3, 5], 6, temperature=0))
    model = model.cuda()
    assert list(model.generate([3, 5], 6, temperature=0)) == greedy
    assert len(list(model.generate([3, 5], 6, temperature=1.0, top_k=5))) == 6



def test_seeds_that_differ_above_bit_31_give_different_streams(model):
    """The seed is used whole: 7 and 2**31 + 7 give different streams (a seed cut to a C int would not)."""
    assert list(model.generate([1, 1], 12, seed=7)) != list(model.generate([1, 1], 12, seed=2**31 + 7))
