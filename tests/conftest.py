"""Shared fixtures: the implementation under test (`impl`, from --gpt-impl), the architecture card it is
verified against (`arch`, from --architecture), tiny configs and models, and its KV cache."""

import fnmatch
import math
import os
import random

import pytest
import torch
from hypothesis import HealthCheck, settings

from nanochat_verify.contract import CacheAdapter, NoEngineName, engine_of, interface
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
    named modern components (make_config("smear")), the card's `off` switches for the other always-on ones that
    have one (a default window pattern), and overrides."""
    def make(*features, **overrides):
        kwargs = {**TINY, **arch.config_without(*features), **arch.config_for(*features), **overrides}
        difference = interface.config_difference(impl.GPTConfig, kwargs)
        if difference:
            raise interface.InterfaceDiffers(difference)
        return impl.GPTConfig(**kwargs)
    return make


def layer_window(arch, config, layer):
    """The left window the card gives `layer` of a model built from `config` (None: full causal attention), so
    that the explicit references of every attention test hold under a card whose windows are on by default."""
    if not arch.has("sliding_window") or not arch.active("sliding_window", config):
        return None
    window = arch.window_sizes(config.sequence_len, config.n_layer)[layer]
    return None if window >= config.sequence_len else window


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
def neutralize(model, keep=(), card=None):
    """Switch off the modern components of a model that has them, except those in `keep`, by setting their
    parameters to the values at which they do nothing (each parameter group's `neutral` in
    nanochat_verify/components.py: resid_lambdas 1, x0_lambdas 0, no smear, no backout, zero value
    embeddings). The seed components' tests then see the seed architecture, so a change to a modern component
    fails that component's tests, not theirs. (Windows need no switch: the tiny configs' sequences are shorter
    than the short window.)"""
    from nanochat_verify.components import ALL
    for component in ALL:
        if not component.feature or component.feature in keep:
            continue
        for group in component.parameters:
            for name, p in named_group(model, group):
                if group.neutral is not None:
                    p.fill_(group.neutral)
    for extra in (card.extras.values() if card is not None else ()):  # parts the table does not model
        for name, p in model.named_parameters():
            value = next((v for pattern, v in extra["neutral"].items() if fnmatch.fnmatchcase(name, pattern)), None)
            if value is not None:
                p.fill_(value)
    return model


def n_parameters(model, card):
    """The number of parameters of the model's architecture: all of them but the card's declared extras."""
    extras = card.extra_parameters()
    return sum(p.numel() for name, p in model.named_parameters() if name not in extras)


def declared_parameters(card, config, keep=lambda group: True):
    """How many parameters the groups `keep` accepts hold, as the components the card has on in `config` declare
    them (nanochat_verify/components.py: each group's count times its instances)."""
    from nanochat_verify.components import COMPONENTS
    V_padded = card.padded_vocab_size(config.vocab_size, card.active("padded_vocab", config))
    return sum(g.count(card, config, V_padded) * g.instances(card, config.n_layer)
               for c in COMPONENTS if c.feature and card.active(c.feature, config) for g in c.parameters if keep(g))


def named_group(model, group):
    """[(name, parameter)] of a model's parameter group (nanochat_verify/components.py ParameterGroup)."""
    return [(name, p) for name, p in model.named_parameters() if group.matches(name)]


def forward_problem(impl, arch):
    """Why a float32 model of the tiny config cannot be built, initialised and run forward on the CPU, or None.
    Almost every test needs that; where it fails, it is one finding (tests/test_interface.py), and the tests that
    need it cannot observe anything else of the implementation."""
    try:
        config = impl.GPTConfig(**TINY)
        model = impl.GPT(config)
        model.init_weights()
        model(torch.zeros(1, TINY["sequence_len"], dtype=torch.long))
    except Exception as e:  # noqa: BLE001 - whatever the implementation raises is the finding
        return f"{type(e).__name__}: {' '.join(str(e).split())[:200]}"
    return None


@pytest.fixture(scope="session")
def forward_works(impl, arch):
    """None when the implementation's float32 forward runs; else the reason, raised by make_model for every test."""
    return forward_problem(impl, arch)


@pytest.fixture(scope="session")
def runnable(forward_works):
    """Needed by every test that runs a forward: it cannot observe an implementation whose float32 forward fails
    (reported once, by tests/test_interface.py::test_a_float32_model_runs_a_forward_on_the_cpu)."""
    if forward_works is not None:
        raise interface.InterfaceDiffers(f"a float32 model of the tiny config cannot run a forward on the CPU "
                                         f"({forward_works}); tests/test_interface.py reports it once")


@pytest.fixture
def make_model(impl, arch, runnable):
    """Build impl.GPT(config), initialised with init_weights(); randomize=True also fills the zeroed weights.
    The modern components are neutral (see `neutralize`) except those named in `live`."""
    def make(config, *, randomize=True, seed=0, live=()):
        torch.manual_seed(seed)
        model = impl.GPT(config)
        model.init_weights()
        if randomize:
            randomize_weights(model, seed)
        neutralize(model, keep=live, card=arch)
        return contract_model(model)
    return make


def engine_definition(impl, name):
    """The definition `name` of the implementation's engine (read as contract/engine.py reads it); the test
    skips, saying why, where the implementation has none."""
    try:
        return engine_of(impl).get(name)
    except NoEngineName as e:
        pytest.skip(f"{e}: nothing to verify")


def contract_model(model):
    """The model, called as the contract calls it: an implementation whose forward takes the contract's arguments
    at other positions gets them by keyword, and what forward returns is checked (one clear failure for anything
    but logits; for the logits or the loss in a tuple, the interface difference, reported once by
    tests/test_interface.py)."""
    if interface.forward_difference(model):
        model.register_forward_pre_hook(interface.as_contract_call(model), with_kwargs=True, prepend=True)
    model.register_forward_hook(_check_returned, with_kwargs=True)
    return model


def _check_returned(model, args, kwargs, output):
    named = {**dict(zip(interface.FORWARD_ARGUMENTS, args)), **kwargs}
    idx, targets = named.get("idx"), named.get("targets")
    if targets is not None and isinstance(output, (tuple, list)):
        raise interface.InterfaceDiffers(f"forward(idx, targets) returns a {type(output).__name__}; the contract's "
                                         f"returns the loss alone")
    if targets is None and torch.is_tensor(idx) and idx.ndim == 2:
        problem = interface.returned_logits(output, (*idx.shape, model.config.vocab_size))
        if problem:
            raise AssertionError(problem)


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


def parameter_groups(model, card=None):
    """{card init key: [(name, parameter)]} for every parameter of a contract model: wte, lm_head, the blocks'
    c_q, c_k, c_v, attn.c_proj, c_fc, mlp.c_proj, and the modern components' groups as nanochat_verify/components.py
    declares them. A parameter of no known group is listed under its own name (tests/test_init.py checks that
    there is none)."""
    from nanochat_verify.components import PARAMETER_GROUPS
    core = {"transformer.wte.weight": "wte", "lm_head.weight": "lm_head"}
    groups, seen = {}, set()
    extras = card.extra_parameters() if card is not None else ()
    seen |= {name for name, _ in model.named_parameters() if name in extras}  # declared extras: no init rule
    for key, group in PARAMETER_GROUPS.items():
        if group.where != "core":
            for name, p in named_group(model, group):
                groups.setdefault(key, []).append((name, p))
                seen.add(name)
    for name, p in model.named_parameters():
        if name in seen:
            continue
        parts = name.split(".")
        if name in core:
            key = core[name]
        elif len(parts) == 6 and parts[:2] == ["transformer", "h"] and parts[4] == "c_proj":
            key = f"{parts[3]}.c_proj"
        elif len(parts) == 6 and parts[:2] == ["transformer", "h"]:
            key = parts[4]  # c_q, c_k, c_v, c_fc
        else:
            key = name
        groups.setdefault(key if key in PARAMETER_GROUPS else f"unknown: {name}", []).append((name, p))
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
