"""Inference: GPT.generate streams sampled token ids after a prompt, with a KV cache."""

import types

import pytest
import torch

pytestmark = [pytest.mark.component("inference.generate"), pytest.mark.project_only]


def test_generate_streams_python_ints_lazily(model):
    """generate returns a generator of max_tokens ints in [0, vocab_size)."""
    stream = model.generate([1, 2, 3], max_tokens=5)
    assert isinstance(stream, types.GeneratorType)
    tokens = list(stream)
    assert len(tokens) == 5 and all(isinstance(t, int) and 0 <= t < model.config.vocab_size for t in tokens)


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
    a = list(model.generate([3], 12, seed=1))
    assert a == list(model.generate([3], 12, seed=1))
    assert a != list(model.generate([3], 12, seed=2))


def test_a_temperature_near_zero_samples_the_argmax(model):
    """Logits are divided by the temperature: at 1e-4 sampling becomes greedy, at 1 it does not."""
    greedy = list(model.generate([6, 1], 12, temperature=0))
    assert list(model.generate([6, 1], 12, temperature=1e-4, seed=3)) == greedy
    assert list(model.generate([6, 1], 12, temperature=1.0, seed=3)) != greedy
