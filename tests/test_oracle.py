"""The implementation under test agrees with an independent one: the deliberately naive reference
(tests/reference_gpt.py: explicit attention matrix, complex-number RoPE, explicit head repetition), set up
as the architecture card says, or, when the reference itself is under test, the project's nanochat/gpt.py."""

import dataclasses
from pathlib import Path

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from nanochat_verify.card import FEATURES, load_card
from nanochat_verify.components import COMPONENTS
from nanochat_verify.contract import InterfaceDiffers, interface
from nanochat_verify.contract import CacheAdapter, load_implementation, source_path
from nanochat_verify.paths import OWN_MODEL
from .conftest import cast_parameters, contract_model, named_group, neutralize, randomize_weights
from .strategies import config_kwargs

pytestmark = pytest.mark.component("contract.oracle")
REFERENCE = Path(__file__).with_name("reference_gpt.py")


@pytest.fixture(scope="module")
def oracle(impl, runnable):
    """The other implementation: the naive reference, or nanochat.gpt when the reference is under test."""
    if source_path(impl) != REFERENCE.resolve():
        return load_implementation(str(REFERENCE))
    if OWN_MODEL is None:
        pytest.skip("the oracle of the reference implementation is this project's model, which an installed kit does not have")
    return load_implementation(str(OWN_MODEL.parent.parent))


def has_parameters_of(model, feature):
    """Whether the model holds the parameter groups the feature declares (a feature without any: True)."""
    groups = [g for c in COMPONENTS if c.feature == feature for g in c.parameters]
    return all(named_group(model, g) for g in groups)


SEED = load_card("seed")


def oracle_config(oracle, arch, impl, config, model=None):
    """The oracle's config for a model of `config` under the card: the same sizes, the card's values, and the
    modern components switched as they are in the model under test (one it lacks, though the card has it, is the
    finding of that component's tests, not the oracle's)."""
    on = {f: arch.active(f, config) and (model is None or has_parameters_of(model, f)) for f in FEATURES}
    values = {}
    for f in FEATURES:  # the oracle's switches are named as this project's model's (the seed card's `switch`)
        if on[f]:
            values.update(SEED.feature_config[f])
    values.update(  # the switches that carry a value take the card's
        window_pattern=arch.sliding_window["pattern"] if on["sliding_window"] else "L",
        pad_vocab_size_to=arch.padded_vocab["multiple"] if on["padded_vocab"] else 1,
        softcap=arch.softcap, rope_base=arch.rope_base, qk_gain=arch.qk_gain,
        rotary_len_factor=arch.rotary_len_factor, table_dtype=str(arch.table_dtype(impl)).removeprefix("torch."),
        card=arch)
    sizes = {k: getattr(config, k) for k in ("sequence_len", "vocab_size", "n_layer", "n_head", "n_kv_head", "n_embd")}
    fields = {f.name for f in dataclasses.fields(oracle.GPTConfig)}
    return oracle.GPTConfig(**sizes, **{k: v for k, v in values.items() if k in fields})


def twins(impl, oracle, arch, config, seed=0, live=FEATURES):
    """The implementation under test and the oracle, holding the same random weights (modern components live)."""
    model = neutralize(randomize_weights(contract_model(impl.GPT(config)), seed), keep=live, card=arch)
    twin = oracle.GPT(oracle_config(oracle, arch, impl, config, model))
    extras = arch.extra_parameters()  # parts the card declares the table does not model: neutral, and not the oracle's
    state = {k: v for k, v in model.state_dict().items() if k not in extras}
    unknown, missing = sorted(set(state) - set(twin.state_dict())), sorted(set(twin.state_dict()) - set(state))
    if unknown or missing:
        raise InterfaceDiffers(f"the model's parameters are not named as the contract's: {', '.join(unknown[:3])} "
                               f"where the oracle has {', '.join(missing[:3])}")
    twin.load_state_dict(state, strict=True)
    return model, twin


def all_features(arch):
    return [f for f in FEATURES if arch.has(f)]


def test_state_dict_uses_the_contract_names(impl, oracle, arch, make_config):
    """Both implementations name their weights alike (transformer.wte, transformer.h.i.attn.c_q, ..., lm_head, and
    the modern components' value_embeds.i, resid_lambdas, ...)."""
    config = make_config(*all_features(arch))
    model = contract_model(impl.GPT(config))
    twin = oracle.GPT(oracle_config(oracle, arch, impl, config, model))
    interface.require_modules(model, arch)  # a missing or renamed module: tests/test_interface.py names it once
    extras = arch.extra_parameters()  # parts the card declares the table does not model
    assert sorted(k for k in model.state_dict() if k not in extras) == sorted(twin.state_dict())


@given(data=st.data())
def test_logits_and_losses_match_the_oracle(impl, oracle, arch, data):
    """Same weights, same tokens: same logits and same loss (mean, and per token with ignored targets), over the
    config space, with the card's optional modern components switched on or off."""
    options = [f for f in FEATURES if arch.features[f] == "optional"]
    features = data.draw(st.lists(st.sampled_from(options), unique=True), label="features") if options else []
    kwargs = data.draw(config_kwargs(arch, max_layers=3, max_seq=8, min_embd=24 if features else 1), label="config")
    config = impl.GPTConfig(**kwargs, **arch.config_for(*features))
    model, twin = twins(impl, oracle, arch, config)
    gen = torch.Generator().manual_seed(0)
    idx = torch.randint(0, kwargs["vocab_size"], (2, kwargs["sequence_len"]), generator=gen)
    targets = torch.randint(-1, kwargs["vocab_size"], idx.shape, generator=gen)
    torch.testing.assert_close(model(idx), twin(idx), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(model(idx, targets, loss_reduction="none"), twin(idx, targets, loss_reduction="none"),
                               rtol=1e-5, atol=1e-5)
    if (targets != -1).any():
        torch.testing.assert_close(model(idx, targets), twin(idx, targets), rtol=1e-5, atol=1e-5)


def test_modern_components_over_a_long_sequence_match_the_oracle(impl, oracle, arch, make_config):
    """With every modern component the card has live, a 200-token sequence (past the 128-position short window)
    gives the oracle's logits."""
    config = make_config(*all_features(arch), sequence_len=256, n_layer=4)
    model, twin = twins(impl, oracle, arch, config)
    idx = torch.randint(0, config.vocab_size, (1, 200), generator=torch.Generator().manual_seed(2))
    torch.testing.assert_close(model(idx), twin(idx), rtol=1e-4, atol=1e-4)


def test_kv_cache_decoding_matches_the_oracle(impl, oracle, arch, make_config, caches):
    """Prefill and token-by-token decoding give the oracle's logits step for step, each with its own cache (windows
    as the other components' tests see them: cached decoding with windows is sliding_window.decoding's)."""
    features = [f for f in all_features(arch) if f != "sliding_window"]
    config = make_config(*features, sequence_len=12, vocab_size=32, n_layer=2)
    model, twin = twins(impl, oracle, arch, config)
    idx = torch.randint(0, 32, (1, 12), generator=torch.Generator().manual_seed(0))
    twin_caches = CacheAdapter.of(oracle)
    cache, twin_cache = caches.for_config(config, 1, 12), twin_caches.for_config(config, 1, 12)
    for chunk in (idx[:, :5], *idx[:, 5:].split(1, dim=1)):
        torch.testing.assert_close(model(chunk, kv_cache=cache), twin(chunk, kv_cache=twin_cache), rtol=1e-5, atol=1e-5)


def test_gradients_match_the_oracle(impl, oracle, arch, make_config):
    """One backward pass gives every parameter, the modern components' included, the oracle's gradient."""
    config = make_config(*all_features(arch), sequence_len=8, vocab_size=32, n_layer=2)
    model, twin = twins(impl, oracle, arch, config)
    idx = torch.randint(0, 32, (2, 8), generator=torch.Generator().manual_seed(0))
    model(idx, idx.roll(-1, 1)).backward()
    twin(idx, idx.roll(-1, 1)).backward()
    twin_params, extras = dict(twin.named_parameters()), arch.extra_parameters()
    for name, a in model.named_parameters():
        if name not in extras:
            torch.testing.assert_close(a.grad, twin_params[name].grad, rtol=1e-4, atol=1e-6, msg=name)


@pytest.mark.parametrize("how", ["bfloat16 weights", "bfloat16 autocast"])
def test_a_bfloat16_model_stays_within_bfloat16_precision_of_float32(impl, make_model, make_config, how):
    """The model in bfloat16 gives the float32 model's logits within a tolerance derived from bfloat16's epsilon:
    constants rounded to bfloat16 before use (transformers PR 29402) or a step left in bfloat16 by mistake
    would miss it."""
    model = make_model(make_config())
    idx = torch.randint(0, 64, (2, 16), generator=torch.Generator().manual_seed(0))
    expected = model(idx)
    if how == "bfloat16 weights":
        got = cast_parameters(model, torch.bfloat16)(idx)
    else:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            got = model(idx)
    # bfloat16 keeps 8 significant bits: each rounding is off by <= eps/2 = 2^-9 relative. A logit is the end of
    # about 16 rounded steps (embedding, 2 x (4 attention and 2 MLP matmuls, 3 norms), final norm, lm_head), whose
    # relative errors add up to ~16 * 2^-9 = 3% of the raw logit's scale in the worst case; the softcap only
    # shrinks errors. So |got - expected| <= 0.03 * max|raw| + 2^-8 absolute.
    raw_scale = expected.abs().max().item()
    error = (got.float() - expected).abs().max().item()  # (that the logits are float32 is the LM head's test)
    assert error <= 0.03 * raw_scale + 2 ** -8, f"bfloat16 logits off by {error:.3g} (scale {raw_scale:.3g})"
    assert error > 0, "the bfloat16 model computed in float32 after all"


def test_initialization_matches_the_card_in_both_implementations(impl, oracle, arch, make_config):
    """init_weights gives the same zeros, constants and per-layer standard deviations in both implementations."""
    config = make_config(*all_features(arch), vocab_size=256, n_layer=2, n_head=4, n_kv_head=1, n_embd=64)
    torch.manual_seed(0)
    model = contract_model(impl.GPT(config))
    model.init_weights()
    torch.manual_seed(1)
    twin = oracle.GPT(oracle_config(oracle, arch, impl, config))
    twin.init_weights()
    twin_params, extras = dict(twin.named_parameters()), arch.extra_parameters()
    unknown = [n for n, _ in model.named_parameters() if n not in extras and n not in twin_params]
    if unknown:
        raise InterfaceDiffers(f"the model's parameters are not named as the contract's: {', '.join(unknown[:3])}")
    for name, a in model.named_parameters():
        if name in extras:  # a part the card declares the table does not model: the oracle has no twin of it
            continue
        b = twin_params[name]
        assert (a == 0).all() == (b == 0).all(), name
        if a.numel() > 64 and not (a == 0).all():
            assert abs(a.std().item() / b.std().item() - 1) < 0.1, name


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_bfloat16_autocast_matches_cpu_float32(impl, make_model, make_config):
    """On a GPU under bfloat16 autocast the logits stay within bfloat16 precision of the CPU float32 ones."""
    model = make_model(make_config(n_embd=64))
    idx = torch.randint(0, 64, (2, 16), generator=torch.Generator().manual_seed(0))
    expected = model(idx)
    model = model.cuda()
    with torch.autocast("cuda", dtype=torch.bfloat16):
        got = model(idx.cuda())
    assert got.dtype == torch.float32
    torch.testing.assert_close(got.cpu(), expected, rtol=5e-2, atol=1e-1)
