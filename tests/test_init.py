"""Initialisation, group by group, as the architecture card's [init] rules say: each parameter group
drawn from the right distribution (its shape, not only its standard deviation), independently of every
other, and `to_empty()` + `init_weights()` leaves nothing of what the memory held before.

Each case is marked with the component its parameters belong to, so a wrong init turns that row red.
"""

import math

import pytest
import torch

from nanochat_verify.card import FEATURES, INIT_KEYS
from nanochat_verify.components import INIT_OWNER, PARAMETER_GROUPS
from nanochat_verify.contract import interface
from .conftest import contract_model, parameter_groups

# each init group under the sub-component it belongs to (nanochat_verify/components.py declares it)
GROUPS = [pytest.param(key, marks=pytest.mark.component(INIT_OWNER[key]), id=key) for key in INIT_KEYS]
WIDTH = 64  # n_embd: c_q alone has 4096 draws, enough for a sharp test of the distribution's shape


@pytest.fixture
def initialised(impl, arch, make_config):
    """A model with every component the card has switched on, exactly as init_weights leaves it."""
    features = [f for f in FEATURES if arch.has(f)]
    torch.manual_seed(0)
    config = make_config(*features, vocab_size=512, n_embd=WIDTH, n_head=4, n_kv_head=2, n_layer=3)
    model = contract_model(impl.GPT(config))
    model.init_weights()
    return model


def normal_cdf(x, std):
    return 0.5 * (1 + torch.erf(x / (std * math.sqrt(2))))


def ks_distance(sample, cdf):
    """Kolmogorov-Smirnov statistic: the largest gap between the sample's empirical CDF and `cdf`."""
    x = sample.flatten().double().sort().values
    n = x.numel()
    model_cdf = cdf(x)
    above = torch.arange(1, n + 1, dtype=torch.float64) / n - model_cdf
    below = model_cdf - torch.arange(0, n, dtype=torch.float64) / n
    return max(above.max().item(), below.max().item())


def check_rule(rule, param, fan_out, fan_in, n_layer, where):
    values = param.detach().double()
    if rule.dist == "zeros":
        assert (values == 0).all(), f"{where}: not all zeros"
    elif rule.dist == "constant":  # exactly the value, as the parameter's dtype holds it
        assert (param.detach() == torch.tensor(rule.value, dtype=param.dtype)).all(), f"{where}: not all {rule.value}"
    elif rule.dist == "linear":
        expected = torch.tensor(rule.schedule(n_layer), dtype=torch.float64)
        torch.testing.assert_close(values, expected, rtol=0, atol=1e-6, msg=where)
    else:
        std = rule.std_for(fan_out, fan_in, WIDTH)
        n = values.numel()
        # 99.9% KS critical value 1.95/sqrt(n): a uniform drawn where a normal is due (or back) misses by 0.06
        critical = 1.95 / math.sqrt(n)
        if rule.dist == "normal":
            distance = ks_distance(values, lambda x: normal_cdf(x, std))
        else:
            low, high = rule.bounds(fan_out, fan_in, WIDTH)
            assert low <= values.min() and values.max() <= high, f"{where}: outside U({low:.3g}, {high:.3g})"
            distance = ks_distance(values, lambda x: ((x - low) / (high - low)).clamp(0, 1))
        assert distance < critical, f"{where}: KS distance {distance:.3f} >= {critical:.3f} from {rule.describe()}"
        if n >= 2000:
            # the tails: kurtosis 3 for a normal, 1.8 for a uniform; a normal truncated at 3 sigma (2.8) or another
            # shape of the same std moves it by far more than its standard error, sqrt(24 / n)
            centred = values - values.mean()
            kurtosis = (centred ** 4).mean().item() / (centred ** 2).mean().item() ** 2
            expected = 3.0 if rule.dist == "normal" else 1.8
            assert abs(kurtosis - expected) < 5 * math.sqrt(24 / n), f"{where}: kurtosis {kurtosis:.3f}, not {expected}"
        # a std off by 10% moves the KS distance by less than the critical value at small n: check it too
        assert abs(values.std().item() / std - 1) < max(0.1, 3 / math.sqrt(n)), f"{where}: std {values.std():.4g} vs {std:.4g}"


@pytest.mark.parametrize("group", GROUPS)
def test_each_parameter_group_is_drawn_from_the_card_distribution(initialised, arch, group):
    """Every parameter of the group follows its rule: zeros, a constant, a per-layer schedule, or a normal or
    uniform distribution of the right spread and the right shape (a Kolmogorov-Smirnov test at a fixed seed)."""
    params = group_parameters(initialised, arch, group)
    rule = arch.init_rule(group)
    for name, p in params:
        fan_out, fan_in = (p.shape[0], p.shape[1]) if p.dim() == 2 else (1, 1)
        check_rule(rule, p, fan_out, fan_in, initialised.config.n_layer, name)


def group_parameters(model, arch, group):
    """The parameters of one init group. None is not observable for a seed group (its modules are named otherwise
    than the contract's: a fork's renaming), and for a modern component the card declares always on and the model
    lacks (tests/test_interface.py names it once); otherwise (an optional component switched on) a finding."""
    params = parameter_groups(model, arch).get(group, [])
    if not params and PARAMETER_GROUPS[group].where == "core":
        raise interface.InterfaceDiffers(f"no parameter of the seed group {group} under the contract's names")
    if not params:
        interface.require_modules(model, arch)  # the card's component is not there: tests/test_interface.py says so
    assert params, f"no parameter of group {group} in the model"
    return params


def pytest_generate_tests(metafunc):
    """random_group: the groups the card draws at random (the others are zeros, constants or schedules)."""
    if "random_group" in metafunc.fixturenames:
        from nanochat_verify.plugin.options import ARCH_KEY
        card = metafunc.config.stash[ARCH_KEY]
        metafunc.parametrize("random_group", [g for g in GROUPS if card.init_rule(g.values[0]).dist in RANDOM])


RANDOM = ("normal", "uniform")


def test_random_groups_are_independent_of_every_other_parameter(initialised, arch, random_group):
    """No randomly drawn weight repeats or mirrors another: no two rows equal, no other parameter tensor of the same
    size equal or correlated beyond chance (|r| < max(0.2, 5/sqrt(n))): a re-seeded generator makes two equal."""
    group = random_group
    groups = parameter_groups(initialised, arch)
    others = [(n, p) for g, ps in groups.items() if g in INIT_KEYS for n, p in ps if arch.init_rule(g).dist in RANDOM]
    for name, p in group_parameters(initialised, arch, group):
        x = p.detach().double().flatten()
        rows = p.detach().reshape(p.shape[0], -1)
        assert torch.unique(rows, dim=0).shape[0] == rows.shape[0], f"{name} has repeated rows"
        for other_name, q in others:
            if other_name == name or q.numel() != p.numel():
                continue
            assert not torch.equal(p.detach(), q.detach()), f"{name} equals {other_name}"
            r = torch.corrcoef(torch.stack([x, q.detach().double().flatten()]))[0, 1].abs().item()
            assert r < max(0.2, 5 / math.sqrt(x.numel())), f"{name} and {other_name} are correlated (|r| = {r:.2f})"


@pytest.mark.parametrize("group", GROUPS)
def test_init_weights_after_to_empty_overwrites_every_nan(impl, arch, make_config, group):
    """Built on the meta device, materialised with to_empty(), every parameter and buffer filled with NaN:
    init_weights() leaves each parameter of the group finite, on the target device, float32 (nanochat PR 686:
    a parameter init_weights forgets keeps garbage)."""
    features = [f for f in FEATURES if arch.has(f)]
    config = make_config(*features, n_layer=3)
    with torch.device("meta"):
        model = contract_model(impl.GPT(config))
    model.to_empty(device="cpu")
    with torch.no_grad():
        for t in [*model.parameters(), *model.buffers()]:
            t.fill_(float("nan"))
    model.init_weights()
    params = group_parameters(model, arch, group)
    for name, p in params:
        assert p.device.type == "cpu" and p.dtype == torch.float32, f"{name}: {p.device} {p.dtype}"
        assert torch.isfinite(p).all(), f"{name} still holds NaN after init_weights()"


@pytest.mark.component("gradients.backward")
def test_every_parameter_has_an_init_rule_in_the_card(initialised, arch):
    """Every parameter belongs to a group the card's [init] rules cover: a parameter added without declaring its
    init would escape every check of its distribution (and of its gradient flow)."""
    # parameters named otherwise than the contract's cannot be told apart from unknown ones
    interface.require_modules(initialised, arch)
    assert [g for g in parameter_groups(initialised, arch) if g.startswith("unknown")] == []


@pytest.mark.component("gradients.backward")
def test_the_global_seed_decides_the_weights(impl, make_config):
    """init_weights draws from torch's global RNG as the caller seeded it: the same seed gives the same weights, two
    seeds give different ones (an init that re-seeds itself makes every model of a seed sweep identical)."""
    def build(seed):
        torch.manual_seed(seed)
        model = contract_model(impl.GPT(make_config()))
        model.init_weights()
        return model.transformer.h[0].attn.c_q.weight.detach().clone()

    assert torch.equal(build(3), build(3))
    assert not torch.equal(build(3), build(4))
