"""The implementation under test agrees with an independent one: the deliberately naive reference
(tests/reference_gpt.py: explicit attention matrix, complex-number RoPE, explicit head repetition), or,
when the reference itself is under test, the project's nanochat/gpt.py."""

from pathlib import Path

import pytest
import torch
from hypothesis import given

from nanochat.contract import load_implementation, source_path
from nanochat.engine import KVCache
from tests.conftest import randomize_weights
from tests.strategies import config_kwargs

pytestmark = pytest.mark.component("contract.oracle")
REFERENCE = Path(__file__).with_name("reference_gpt.py")


@pytest.fixture(scope="module")
def oracle(impl):
    """The other implementation: the naive reference, or nanochat.gpt when the reference is under test."""
    return load_implementation("nanochat.gpt" if source_path(impl) == REFERENCE.resolve() else str(REFERENCE))


def twins(impl, oracle, kwargs, seed=0):
    """The implementation under test and the oracle, holding the same random weights."""
    model = randomize_weights(impl.GPT(impl.GPTConfig(**kwargs)), seed)
    twin = oracle.GPT(oracle.GPTConfig(**kwargs))
    twin.load_state_dict(model.state_dict(), strict=True)
    return model, twin


def test_state_dict_uses_the_contract_names(impl, oracle):
    """Both implementations name their weights alike (transformer.wte, transformer.h.i.attn.c_q, ..., lm_head)."""
    kwargs = dict(sequence_len=8, vocab_size=16, n_layer=2, n_head=2, n_kv_head=1, n_embd=8)
    model, twin = twins(impl, oracle, kwargs)
    assert list(model.state_dict()) == list(twin.state_dict())


@given(kwargs=config_kwargs(max_layers=2, max_seq=8))
def test_logits_and_losses_match_the_oracle(impl, oracle, kwargs):
    """Same weights, same tokens: same logits and same loss (mean, and per token with ignored targets)."""
    model, twin = twins(impl, oracle, kwargs)
    gen = torch.Generator().manual_seed(0)
    idx = torch.randint(0, kwargs["vocab_size"], (2, kwargs["sequence_len"]), generator=gen)
    targets = torch.randint(-1, kwargs["vocab_size"], idx.shape, generator=gen)
    torch.testing.assert_close(model(idx), twin(idx), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(model(idx, targets, loss_reduction="none"), twin(idx, targets, loss_reduction="none"),
                               rtol=1e-5, atol=1e-5)
    if (targets != -1).any():
        torch.testing.assert_close(model(idx, targets), twin(idx, targets), rtol=1e-5, atol=1e-5)


def test_kv_cache_decoding_matches_the_oracle(impl, oracle):
    """Prefill and token-by-token decoding give the oracle's logits step for step."""
    kwargs = dict(sequence_len=12, vocab_size=32, n_layer=2, n_head=4, n_kv_head=2, n_embd=32)
    model, twin = twins(impl, oracle, kwargs)
    idx = torch.randint(0, 32, (1, 12), generator=torch.Generator().manual_seed(0))
    caches = [KVCache(1, 2, 12, 8, 2) for _ in range(2)]
    for chunk in (idx[:, :5], *idx[:, 5:].split(1, dim=1)):
        torch.testing.assert_close(model(chunk, kv_cache=caches[0]), twin(chunk, kv_cache=caches[1]),
                                   rtol=1e-5, atol=1e-5)


def test_initialization_matches_the_oracle_in_distribution(impl, oracle):
    """init_weights gives the same zeros and the same per-layer standard deviations in both implementations."""
    kwargs = dict(sequence_len=8, vocab_size=256, n_layer=1, n_head=4, n_kv_head=1, n_embd=64)
    torch.manual_seed(0)
    model = impl.GPT(impl.GPTConfig(**kwargs))
    model.init_weights()
    torch.manual_seed(1)
    twin = oracle.GPT(oracle.GPTConfig(**kwargs))
    twin.init_weights()
    for (name, a), (_, b) in zip(model.named_parameters(), twin.named_parameters()):
        assert (a == 0).all() == (b == 0).all(), name
        if not (a == 0).all():
            assert abs(a.std().item() / b.std().item() - 1) < 0.1, name


def test_gradients_match_the_oracle(impl, oracle):
    """One backward pass gives every parameter the oracle's gradient."""
    kwargs = dict(sequence_len=8, vocab_size=32, n_layer=2, n_head=4, n_kv_head=2, n_embd=16)
    model, twin = twins(impl, oracle, kwargs)
    idx = torch.randint(0, 32, (2, 8), generator=torch.Generator().manual_seed(0))
    model(idx, idx.roll(-1, 1)).backward()
    twin(idx, idx.roll(-1, 1)).backward()
    for (name, a), (_, b) in zip(model.named_parameters(), twin.named_parameters()):
        torch.testing.assert_close(a.grad, b.grad, rtol=1e-4, atol=1e-6, msg=name)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_bfloat16_autocast_matches_cpu_float32(impl):
    """On a GPU under bfloat16 autocast the logits stay within bfloat16 precision of the CPU float32 ones."""
    kwargs = dict(sequence_len=16, vocab_size=64, n_layer=2, n_head=4, n_kv_head=2, n_embd=64)
    model = randomize_weights(impl.GPT(impl.GPTConfig(**kwargs)))
    idx = torch.randint(0, 64, (2, 16), generator=torch.Generator().manual_seed(0))
    expected = model(idx)
    model = model.cuda()
    with torch.autocast("cuda", dtype=torch.bfloat16):
        got = model(idx.cuda())
    assert got.dtype == torch.float32
    torch.testing.assert_close(got.cpu(), expected, rtol=5e-2, atol=1e-1)
