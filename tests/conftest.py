"""Shared fixtures: the implementation under test (`impl`, from --gpt-impl), tiny configs and models."""

import math
import os
import random

import pytest
import torch
from hypothesis import HealthCheck, settings

from nanochat.tracer import trace

# The tests run tiny tensors, where intra-op threads only add synchronisation; with several pytest
# workers (-n 2) or other load on the machine, spinning OpenMP threads slow a 1 ms step to 500 ms.
torch.set_num_threads(1)

# CI profile: derandomized, so every run (any order, any -n) sees the same examples
# The function-scoped fixtures that @given tests use are factories (make_model) or models the test only
# reads, so sharing them across generated examples is sound.
SHARED_FIXTURES_OK = [HealthCheck.function_scoped_fixture, HealthCheck.differing_executors]
settings.register_profile("ci", max_examples=20, deadline=None, derandomize=True, database=None,
                          suppress_health_check=[HealthCheck.too_slow, *SHARED_FIXTURES_OK])
settings.register_profile("quick", parent=settings.get_profile("ci"), max_examples=5)
settings.register_profile("thorough", max_examples=500, deadline=None, suppress_health_check=SHARED_FIXTURES_OK)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

# small enough for milliseconds per forward, large enough for every feature: 2 layers, GQA 4:2, head_dim 8
TINY = dict(sequence_len=16, vocab_size=64, n_layer=2, n_head=4, n_kv_head=2, n_embd=32)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    random.seed(0)


@pytest.fixture
def make_config(impl):
    """GPTConfig of the implementation under test: the tiny config with overrides."""
    def make(**overrides):
        return impl.GPTConfig(**{**TINY, **overrides})
    return make


@pytest.fixture
def config(make_config):
    return make_config()


def randomize_weights(model, seed=0):
    """Give every weight, the zero-initialised c_proj and lm_head included, a nonzero random value, so
    every path of the model carries signal (at init every residual branch is exactly zero)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            std = 1.0 if p is model.transformer.wte.weight else 1 / math.sqrt(p.size(-1))
            p.copy_(torch.randn(p.shape, generator=gen, dtype=torch.float64).to(p.dtype) * std)
    return model


@pytest.fixture
def make_model(impl):
    """Build impl.GPT(config), initialised with init_weights(); randomize=True also fills the zeroed weights."""
    def make(config, *, randomize=True, seed=0):
        torch.manual_seed(seed)
        model = impl.GPT(config)
        model.init_weights()
        return randomize_weights(model, seed) if randomize else model
    return make


@pytest.fixture
def model(make_model, config):
    """The tiny GQA model with random weights in every layer."""
    return make_model(config)


@pytest.fixture
def idx(config):
    """A (B=2, T=sequence_len) batch of token ids."""
    return torch.randint(0, config.vocab_size, (2, config.sequence_len), generator=torch.Generator().manual_seed(1))


@pytest.fixture
def run_traced():
    """Run one forward (and backward, given targets) of a model under the tracer; return the cache."""
    def run(model, idx, targets=None, **kwargs):
        with trace(model) as cache:
            out = model(idx, targets, **kwargs) if targets is not None else model(idx, **kwargs)
            if targets is not None:
                out.backward()
        return cache
    return run


@pytest.fixture
def traced(model, idx, run_traced):
    """The tracer's cache of one forward and backward pass of the tiny random model."""
    return run_traced(model, idx, targets=idx.roll(-1, dims=1))
