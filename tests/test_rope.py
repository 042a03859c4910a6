"""Component 2: rotary position embeddings (RoPE, Su et al. 2021), no learned positions.

Convention: the head dimension splits into halves x1, x2; pair i is (x1_i, x2_i), turned by the angle
-t * theta_i with theta_i = base^(-2i/D): y1 = x1*cos + x2*sin, y2 = -x1*sin + x2*cos. The base,
the table length (rotary_len_factor * sequence_len) and the table dtype come from the architecture card.
"""

import pytest
import torch
from hypothesis import example, given
from hypothesis import strategies as st

from . import diagnose
from .conftest import contract_model
from .explicit import rope_complex, rope_tables
from .strategies import positions

pytestmark = pytest.mark.component("rope.rotary")

D = 8  # head dimension used by the pure-function tests


def rotate(impl, x, t, base):
    """apply_rotary_emb of the implementation, at position t, with exact float64 tables."""
    cos, sin = rope_tables([t], x.size(-1), base)
    return impl.apply_rotary_emb(x, cos, sin)


def vectors(seed, heads=1):
    return torch.randn(1, 1, heads, D, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))


def table_step(dtype):
    """One step of the table dtype next to 1 (where |cos| and |sin| live): 2^-8 for bfloat16."""
    return torch.finfo(dtype).eps


def test_position_zero_is_the_identity(impl, model):
    """At position 0 every angle is 0, so RoPE with the model's own tables returns its input."""
    x = torch.randn(2, 1, 3, model.config.n_embd // model.config.n_head)
    y = impl.apply_rotary_emb(x, model.cos[:, :1], model.sin[:, :1])
    torch.testing.assert_close(y, x, rtol=0, atol=0, check_dtype=False)


@given(t=positions, seed=st.integers(0, 2**16))
def test_rotation_preserves_the_norm_of_every_pair(impl, rope_base, t, seed):
    """Each pair (x1_i, x2_i) keeps its length: RoPE is a rotation, not a rescaling."""
    x = vectors(seed)
    y = rotate(impl, x, t, rope_base)
    d = D // 2
    torch.testing.assert_close(y[..., :d] ** 2 + y[..., d:] ** 2, x[..., :d] ** 2 + x[..., d:] ** 2)


@given(m=positions, n=positions, shift=positions, seed=st.integers(0, 2**16))
@example(m=5, n=3, shift=1000, seed=0)
def test_query_key_score_depends_only_on_relative_position(impl, rope_base, m, n, shift, seed):
    """<rope(q, m), rope(k, n)> == <rope(q, m + s), rope(k, n + s)>: attention sees offsets, not positions."""
    q, k = vectors(seed), vectors(seed + 1)
    score = (rotate(impl, q, m, rope_base) * rotate(impl, k, n, rope_base)).sum()
    shifted = (rotate(impl, q, m + shift, rope_base) * rotate(impl, k, n + shift, rope_base)).sum()
    torch.testing.assert_close(score, shifted, rtol=1e-9, atol=1e-9)


@given(t=positions, seed=st.integers(0, 2**16))
def test_agrees_with_complex_number_rotation(impl, rope_base, t, seed):
    """apply_rotary_emb equals multiplying x1 + i*x2 by exp(-i * t * theta), theta_i = base^(-2i/D): the sign
    convention of nanochat (a turn by +t*theta trains as well but breaks its checkpoints, nanochat PR 489)."""
    x = vectors(seed, heads=3)
    cos, sin = rope_tables([t], D, rope_base)
    torch.testing.assert_close(impl.apply_rotary_emb(x, cos, sin), rope_complex(x, cos, sin))


def test_pairs_are_the_two_halves_of_the_head_not_neighbours(impl, rope_base):
    """Dimension i pairs with i + D/2 (half-split), not with i + 1 (interleaved, llama.cpp PR 13260)."""
    x = torch.zeros(1, 1, 1, D, dtype=torch.float64)
    x[..., 0] = 1.0
    y = rotate(impl, x, 1, rope_base)
    assert y[..., 0].abs() > 0.1 and y[..., D // 2].abs() > 0.1
    nonzero = torch.nonzero(y[0, 0, 0].abs() > 1e-12).flatten().tolist()
    assert nonzero == [0, D // 2]


def test_each_pair_turns_with_its_own_frequency(impl, rope_base):
    """Pair i turns by t * base^(-2i/D): the angle of each pair, read back with atan2, is its frequency."""
    t = 3
    x = torch.zeros(1, 1, 1, D, dtype=torch.float64)
    x[..., : D // 2] = 1.0  # every pair starts at angle 0
    y = rotate(impl, x, t, rope_base)[0, 0, 0]
    angles = torch.atan2(-y[D // 2:], y[: D // 2])  # turned by -angle
    expected = t * rope_base ** (-torch.arange(0, D, 2, dtype=torch.float64) / D)
    torch.testing.assert_close(angles, torch.remainder(expected + torch.pi, 2 * torch.pi) - torch.pi)


@pytest.mark.parametrize("head_dim", [8, 64], ids=lambda d: f"head_dim={d}")
def test_tables_match_float64_at_every_position_to_the_end(impl, arch, make_model, make_config, head_dim,
                                                           rope_base, rotary_len_factor):
    """cos/sin hold angle t * base^(-2i/D) at every one of rotary_len_factor * sequence_len positions, within one
    step of the table dtype (plus float32 angle rounding): positions or frequencies computed in bfloat16
    (transformers PR 29285, cos error 0.78 at position 1857) miss by far more."""
    sequence_len = 1024
    model = make_model(make_config(sequence_len=sequence_len, n_embd=4 * head_dim, n_head=4, n_kv_head=4, n_layer=1),
                       randomize=False)
    T = rotary_len_factor * sequence_len
    assert model.cos.shape == model.sin.shape == (1, T, 1, head_dim // 2)
    cos, sin = rope_tables(range(T), head_dim, rope_base)
    # angles t * theta computed in float32 are off by up to ~3 * 2^-24 relative: 2e-3 at t = 10239
    tolerance = table_step(arch.table_dtype(impl)) + 4 * 2.0 ** -24 * torch.arange(T, dtype=torch.float64)
    for got, want in ((model.cos, cos), (model.sin, sin)):
        error = (got.double() - want)[0, :, 0, :].abs().amax(-1)
        worst = int((error - tolerance).argmax())
        assert (error <= tolerance).all(), (f"position {worst}: off by {error[worst]:.3g} > {tolerance[worst]:.3g}; "
                                            f"{diagnose.say_rope_base(rope_base, model.cos, model.sin, head_dim)}")
    # another base would miss by far more than that somewhere
    other_cos, _ = rope_tables(range(T), head_dim, rope_base / 10)
    assert (model.cos.double() - other_cos).abs().max() > 0.1


def test_init_weights_recomputes_the_tables_of_a_model_built_on_the_meta_device(impl, make_config):
    """A model built on the meta device has no table values, and to_empty() leaves garbage (here NaN):
    init_weights() recomputes cos and sin, equal to a CPU-built model's (nanochat PR 686)."""
    config = make_config()
    built = contract_model(impl.GPT(config))
    with torch.device("meta"):
        model = contract_model(impl.GPT(config))
    model.to_empty(device="cpu")
    with torch.no_grad():
        model.cos.fill_(float("nan"))
        model.sin.fill_(float("nan"))
    model.init_weights()
    torch.testing.assert_close(model.cos, built.cos, rtol=0, atol=0)
    torch.testing.assert_close(model.sin, built.sin, rtol=0, atol=0)


def test_tables_are_buffers_of_the_card_dtype_outside_the_state_dict(impl, arch, model):
    """cos and sin are buffers in the card's table dtype, derived from the config, so not saved with the weights."""
    buffers = dict(model.named_buffers())
    assert buffers["cos"].dtype == buffers["sin"].dtype == arch.table_dtype(impl)
    assert "cos" not in model.state_dict() and "sin" not in model.state_dict()
    assert not any(name.endswith(("cos", "sin")) for name, _ in model.named_parameters())


def test_tables_are_computed_for_the_head_dimension_not_n_embd(make_model, make_config, rope_base):
    """The rotary frequencies depend on head_dim = n_embd // n_head."""
    model = make_model(make_config(n_embd=32, n_head=2, n_kv_head=2))
    assert model.cos.size(-1) == 8
    cos, _ = rope_tables([1], 16, rope_base)
    torch.testing.assert_close(model.cos[0, 1, 0].double(), cos.flatten(), rtol=0, atol=2 ** -8)


def test_rope_has_no_learned_parameters(make_model, make_config, rotary_len_factor):
    """Positions live in the cos/sin buffers only: no parameter has a positional axis (sequence_len or table length)."""
    sequence_len = 40  # a length no other dimension of this model has
    model = make_model(make_config(sequence_len=sequence_len))
    assert {"cos", "sin"} <= {name for name, _ in model.named_buffers()}
    positional = {sequence_len, rotary_len_factor * sequence_len}
    assert [name for name, p in model.named_parameters() if positional & set(p.shape)] == []
