"""A failing test names what the implementation really has: each estimate of tests/diagnose.py recovers a value
planted in data made by an independent formula, and tells a wrong value from the card's."""

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from . import diagnose, explicit

pytestmark = [pytest.mark.tooling, pytest.mark.component("tooling.diagnosis")]


@given(cap=st.sampled_from([10.0, 15.0, 20.0, 30.0, 50.0]))
def test_the_softcap_estimate_recovers_the_cap_that_made_the_logits(cap):
    """From raw logits and c * tanh(raw / c), the estimate is c to within 0.1 %."""
    raw = torch.linspace(-4 * cap, 4 * cap, 257, dtype=torch.float64)
    assert diagnose.softcap(raw, cap * torch.tanh(raw / cap)) == pytest.approx(cap, rel=0.001)


def test_uncapped_logits_are_said_to_have_no_cap():
    """Logits equal to the raw ones are "no cap", and the message names the card's value beside it."""
    raw = torch.linspace(-50, 50, 101)
    assert diagnose.softcap(raw, raw) is None
    assert diagnose.say_softcap(15, raw, raw) == "softcap: card 15, the implementation applies no cap"
    assert "caps at ~30" in diagnose.say_softcap(15, raw, 30 * torch.tanh(raw / 30))


@given(gain=st.sampled_from([0.8, 1.0, 1.15, 1.2, 1.5]))
def test_the_qk_gain_estimate_recovers_the_gain_of_the_attention_weights(gain):
    """From weights softmax(g q · g k / sqrt(D)) the estimate is g to within the grid's step of 0.005."""
    g = torch.Generator().manual_seed(0)
    q, k = torch.randn(1, 6, 2, 8, generator=g, dtype=torch.float64), torch.randn(1, 6, 2, 8, generator=g,
                                                                                 dtype=torch.float64)
    observed = explicit.attention_weights(q * gain, k * gain)
    estimate = diagnose.qk_gain(lambda x: explicit.attention_weights(q * x, k * x), observed)
    assert estimate == pytest.approx(gain, abs=0.005)


@given(base=st.sampled_from([10_000.0, 50_000.0, 100_000.0, 500_000.0]), head_dim=st.sampled_from([16, 64, 128]))
def test_the_rope_base_estimate_recovers_the_base_of_the_tables(base, head_dim):
    """From tables of angle t * base^(-2i/D) over 2048 positions, the estimate is the base to within 1 %, and a
    base ten times off is never mistaken for it."""
    cos, sin = explicit.rope_tables(range(2048), head_dim, base)
    estimate = diagnose.rope_base(cos.float(), sin.float(), head_dim)
    assert estimate == pytest.approx(base, rel=0.01)
    assert "card 10000, the implementation's tables turn as base ~" in diagnose.say_rope_base(10_000, cos, sin,
                                                                                            head_dim)


def test_the_scale_between_two_tensors_is_the_factor_that_maps_one_to_the_other():
    """scale_between(k, 1.2 k) is 1.2: the QK gain a flash cache really stored."""
    k = torch.randn(2, 5, 3, 8, generator=torch.Generator().manual_seed(0))
    assert diagnose.scale_between(k, 1.2 * k) == pytest.approx(1.2)
    assert diagnose.scale_between(k, -k) == pytest.approx(-1.0)
