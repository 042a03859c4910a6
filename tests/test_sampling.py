"""Inference: the engine's sampler, sample_next_token(logits, rng, temperature, top_k) -> (B, 1) token ids, as
nanochat's engine.py defines it (read out of the implementation's engine.py without the rest of that module:
nanochat_verify/contract/engine.py). Temperature 0 is the argmax; otherwise each row draws from
softmax(logits / temperature) over its top_k highest logits (None, 0 or top_k >= vocab: all of them), with the
generator it is given.

The distribution a row is drawn from is read exactly: torch.multinomial is made to return each index of the
candidates the sampler hands it in turn, and the token that comes out gets that candidate's probability.
"""

import pytest
import torch

from .conftest import engine_definition

pytestmark = pytest.mark.component("inference.sampling")

B, V = 3, 12


@pytest.fixture(scope="module")
def sample(impl):
    return engine_definition(impl, "sample_next_token")


@pytest.fixture
def logits():
    """(3, 12) float32 logits, each row a different order of values at least 0.05 apart (no tie for a top-k)."""
    gen = torch.Generator().manual_seed(3)
    levels = torch.linspace(-3.0, 2.5, V)
    rows = torch.stack([levels[torch.randperm(V, generator=gen)] for _ in range(B)])
    assert (rows.sort(-1).values.diff(dim=-1) > 0.05).all()  # premise: no ties
    return rows


def softmax_over_top_k(logits, temperature, top_k=None):
    """exp(x / T - max) / sum over the top_k highest logits of each row, 0 elsewhere: in float64, written out."""
    x = logits.double() / temperature
    keep = torch.ones_like(x, dtype=torch.bool)
    if top_k and top_k < x.size(-1):
        keep = x >= x.sort(-1, descending=True).values[:, top_k - 1:top_k]
    e = torch.where(keep, torch.exp(x - x.max(-1, keepdim=True).values), torch.zeros_like(x))
    return e / e.sum(-1, keepdim=True)


def drawn_distribution(sample, logits, temperature, top_k, monkeypatch):
    """The (B, V) distribution each row's token is drawn from, in float64: for each index j of the candidates the
    sampler hands torch.multinomial, the draw is forced to j and the token that comes out gets probs[j]."""
    handed, pick, multinomial = [], [0], torch.multinomial

    def forced(probs, num_samples, *args, **kwargs):
        if probs.size(-1) == 0 or not bool(torch.isfinite(probs).all()):
            try:  # what torch does with these: raise
                return multinomial(probs, num_samples, *args, **kwargs)
            except RuntimeError as e:
                raise AssertionError(f"the sampler hands torch.multinomial probabilities of shape {tuple(probs.shape)} "
                                     f"that it cannot draw from: {e}") from e
        handed.append(probs.detach().double().clone())
        return torch.full((probs.size(0), num_samples), pick[0], dtype=torch.long, device=probs.device)

    dist = torch.zeros(logits.shape, dtype=torch.float64)
    with monkeypatch.context() as m:
        m.setattr(torch, "multinomial", forced)
        sample(logits, torch.Generator().manual_seed(0), temperature, top_k)
        if not handed:
            pytest.skip("not observable: this sample_next_token does not draw through torch.multinomial")
        for j in range(handed[0].size(-1)):
            pick[0] = j
            tokens = sample(logits, torch.Generator().manual_seed(0), temperature, top_k)
            probs = handed[-1] / handed[-1].sum(-1, keepdim=True)
            for row in range(logits.size(0)):
                dist[row, int(tokens[row, 0])] += probs[row, j]
    return dist


@pytest.mark.parametrize("top_k", [None, 1, 5], ids=lambda k: f"top_k={k}")
def test_temperature_0_returns_the_argmax_of_every_row(sample, logits, top_k):
    """At temperature 0 the sampler returns (B, 1): each row's argmax, whatever the generator and top_k."""
    for seed in (0, 1):
        tokens = sample(logits, torch.Generator().manual_seed(seed), 0.0, top_k)
        assert tokens.shape == (B, 1)
        assert tokens[:, 0].tolist() == logits.argmax(-1).tolist()


@pytest.mark.parametrize("temperature", [0.1, 0.7, 2.0], ids=lambda t: f"T={t}")
def test_each_row_is_drawn_from_softmax_of_its_logits_over_the_temperature(sample, logits, monkeypatch, temperature):
    """Without top_k, row b's token is drawn from exactly softmax(logits[b] / T) over the whole vocabulary."""
    dist = drawn_distribution(sample, logits, temperature, None, monkeypatch)
    torch.testing.assert_close(dist, softmax_over_top_k(logits, temperature), rtol=0, atol=1e-6)


@pytest.mark.parametrize("temperature", [0.1, 1.5], ids=lambda t: f"T={t}")
@pytest.mark.parametrize("top_k", [1, 3, V - 1], ids=lambda k: f"top_k={k}")
def test_top_k_leaves_exactly_k_candidates_with_softmax_over_the_temperature(sample, logits, monkeypatch, top_k,
                                                                             temperature):
    """With top_k=k exactly the k highest logits of each row can be drawn, with probabilities softmax(their
    logits / T); every other token has probability 0."""
    dist = drawn_distribution(sample, logits, temperature, top_k, monkeypatch)
    assert (dist > 0).sum(-1).tolist() == [top_k] * B
    torch.testing.assert_close(dist, softmax_over_top_k(logits, temperature, top_k), rtol=0, atol=1e-6)


@pytest.mark.parametrize("top_k", [0, V, V + 1], ids=["top_k=0", "top_k=vocab", "top_k=vocab+1"])
def test_top_k_zero_or_at_least_the_vocabulary_filters_nothing(sample, logits, monkeypatch, top_k):
    """top_k=0 and top_k >= vocab_size keep every token: the distribution of top_k=None (nanochat issue 466)."""
    dist = drawn_distribution(sample, logits, 1.3, top_k, monkeypatch)
    torch.testing.assert_close(dist, softmax_over_top_k(logits, 1.3), rtol=0, atol=1e-6)


def draws(sample, logits, seed, n=30, **kwargs):
    """n successive draws of every row from one generator seeded with `seed`."""
    rng = torch.Generator().manual_seed(seed)
    return [sample(logits, rng, kwargs.get("temperature", 1.0), kwargs.get("top_k"))[:, 0].tolist() for _ in range(n)]


@pytest.mark.parametrize("top_k", [None, 6], ids=lambda k: f"top_k={k}")
def test_the_generator_alone_decides_the_draws(sample, logits, top_k):
    """The same seed gives the same draws whatever torch's global RNG holds; another seed gives other draws."""
    flat = torch.zeros_like(logits)  # uniform: every draw is up to the generator
    torch.manual_seed(0)
    a = draws(sample, flat, seed=1, top_k=top_k)
    torch.manual_seed(1)
    torch.rand(100)
    assert draws(sample, flat, seed=1, top_k=top_k) == a
    assert draws(sample, flat, seed=2, top_k=top_k) != a


@pytest.mark.parametrize("temperature, top_k", [(1.0, None), (0.7, 5), (0.0, None)],
                         ids=["T=1", "T=0.7-top5", "greedy"])
def test_sampling_leaves_the_global_rng_untouched(sample, logits, temperature, top_k):
    """Drawing with the generator given leaves torch's global RNG state as it was."""
    torch.manual_seed(123)
    before = torch.get_rng_state()
    draws(sample, logits, seed=4, n=5, temperature=temperature, top_k=top_k)
    assert torch.equal(torch.get_rng_state(), before)
