"""Shared fixtures: the implementation under test (`impl`, from --gpt-impl), the architecture card it is
verified against (`arch`, from --architecture), tiny configs and models, and its KV cache."""

import math
import os
import random

import pytest
import torch
from hypothesis import HealthCheck, settings

from nanochat_verify.contract import CacheAdapter
from nanochat_verify.trace.hooks import trace

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

# small enough for milliseconds per forward, large enough for every feature: 2 layers, GQA 4:2, head_dim 8,
# n_embd 32 >= the 24 channels the smear gate reads
TINY = dict(sequence_len=16, vocab_size=64, n_layer=2, n_head=4, n_kv_head=2, n_embd=32)

# card values a test can ask for by name: the value becomes the test's parameter id, so `pytest -v`
# says which architecture it checked (test_logits_are_softcap_tanh_of_raw_over_softcap[softcap=15])
CARD_VALUES = ("softcap", "rope_base", "rotary_len_factor", "qk_gain", "mlp_ratio")


def pytest_generate_tests(metafunc):
    card = None
    for name in CARD_VALUES:
        if name in metafunc.fixturenames:
            from nanochat_verify.plugin.options import ARCH_KEY
            card = card or metafunc.config.stash[ARCH_KEY]
            value = getattr(card, name)
            metafunc.parametrize(name, [value], ids=[f"{name}={value:g}"])


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    random.seed(0)


@pytest.fixture
def make_config(impl, arch):
    """GPTConfig of the implementation under test: the tiny config, with the card's switches for the
    named modern components (make_config("smear")), and overrides."""
    def make(*features, **overrides):
        return impl.GPTConfig(**{**TINY, **arch.config_for(*features), **overrides})
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


@torch.no_grad()
def neutralize(model, keep=()):
    """Switch off the modern components of a model that has them, except those in `keep`, by setting
    their parameters to the values at which they do nothing: resid_lambdas 1, x0_lambdas 0, no smear,
    no backout, zero value embeddings. The seed components' tests then see the seed architecture,
    so a change to a modern component fails that component's tests, not theirs. (Windows need no
    switch: the short window, 128 positions, is longer than the tiny configs' sequences.)"""
    neutral = {"lambdas": {"resid_lambdas": 1.0, "x0_lambdas": 0.0}, "smear": {"smear_lambda": 0.0},
               "backout": {"backout_lambda": 0.0}}
    for feature, params in neutral.items():
        if feature not in keep:
            for name, value in params.items():
                if isinstance(getattr(model, name, None), torch.nn.Parameter):
                    getattr(model, name).fill_(value)
    if "value_embeddings" not in keep:
        tables = getattr(model, "value_embeds", {})  # a ModuleDict by layer; a ModuleList in some nanochats
        for ve in (tables.values() if hasattr(tables, "values") else tables):
            ve.weight.zero_()
    return model


@pytest.fixture
def make_model(impl):
    """Build impl.GPT(config), initialised with init_weights(); randomize=True also fills the zeroed weights.
    The modern components are neutral (see `neutralize`) except those named in `live`."""
    def make(config, *, randomize=True, seed=0, live=()):
        torch.manual_seed(seed)
        model = impl.GPT(config)
        model.init_weights()
        if randomize:
            randomize_weights(model, seed)
        neutralize(model, keep=live)
        model.register_forward_hook(_check_logits_shape, with_kwargs=True)
        return model
    return make


def _check_logits_shape(model, args, kwargs, output):
    """One clear failure for an implementation whose forward returns something other than logits."""
    idx = args[0] if args else kwargs.get("idx")
    targets = args[1] if len(args) > 1 else kwargs.get("targets")
    if targets is None and torch.is_tensor(idx) and idx.ndim == 2:
        expected = (*idx.shape, model.config.vocab_size)
        if not (torch.is_tensor(output) and tuple(output.shape) == expected):
            got = tuple(output.shape) if torch.is_tensor(output) else type(output).__name__
            raise AssertionError(f"forward must return (B, T, vocab_size) logits: expected {expected}, got {got}")


@pytest.fixture
def model(make_model, config):
    """The tiny GQA model with random weights in every layer."""
    return make_model(config)


@pytest.fixture
def idx(config):
    """A (B=2, T=sequence_len) batch of token ids."""
    return torch.randint(0, config.vocab_size, (2, config.sequence_len), generator=torch.Generator().manual_seed(1))


@pytest.fixture(scope="session")
def caches(impl):
    """The implementation's own KV cache, through the contract's adapter (nanochat/contract.py)."""
    return CacheAdapter.of(impl)


@pytest.fixture
def new_cache(caches):
    """new_cache(config, batch_size, seq_len): an empty KV cache of the implementation for that model."""
    def make(config, batch_size=2, seq_len=16, **kwargs):
        return caches.for_config(config, batch_size, seq_len, **kwargs)
    return make


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


@torch.no_grad()
def cast_parameters(model, dtype):
    """The model with its parameters (not its buffers) in `dtype`: what `model.to(dtype)` does to the weights,
    while the rotary tables keep the dtype the implementation keeps them in (nanochat asserts it)."""
    for p in model.parameters():
        p.data = p.data.to(dtype)
    return model


def parameter_groups(model):
    """{card init key: [(name, parameter)]} for every parameter of a contract model (nanochat/architecture.py
    INIT_KEYS): wte, lm_head, the blocks' c_q, c_k, c_v, attn.c_proj, c_fc, mlp.c_proj, and the modern
    components' value_embeds, ve_gate, smear_gate and scalars. A parameter of no known group is listed under
    its own name (tests/test_init.py checks that there is none)."""
    from nanochat_verify.card import INIT_KEYS
    groups = {}
    for name, p in model.named_parameters():
        parts = name.split(".")
        if name in ("transformer.wte.weight", "lm_head.weight", "smear_gate.weight"):
            key = parts[-2]
        elif name.startswith("value_embeds.") and len(parts) == 3:
            key = "value_embeds"
        elif len(parts) == 6 and parts[:2] == ["transformer", "h"] and parts[4] == "c_proj":
            key = f"{parts[3]}.c_proj"
        elif len(parts) == 6 and parts[:2] == ["transformer", "h"]:
            key = parts[4]  # c_q, c_k, c_v, ve_gate, c_fc
        else:
            key = name  # resid_lambdas, x0_lambdas, smear_lambda, backout_lambda, or unknown
        groups.setdefault(key if key in INIT_KEYS else f"unknown: {name}", []).append((name, p))
    return groups


@pytest.fixture(scope="session")
def kv_cache_class(impl):
    """The implementation's own KV cache class (see nanochat_verify/contract/cache.py)."""
    from nanochat_verify.contract import cache_class
    return cache_class(impl)


@pytest.fixture(scope="session")
def flash_kv_cache_class(impl):
    """The implementation's flash-attention-style KV cache class."""
    from nanochat_verify.contract import flash_cache_class
    return flash_cache_class(impl)
