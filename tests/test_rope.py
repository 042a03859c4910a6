"""Component 2: rotary position embeddings (RoPE, Su et al. 2021), no learned positions.

Convention: the head dimension splits into halves x1, x2; pair i is (x1_i, x2_i), turned by the angle
-t * theta_i with theta_i = 10000^(-2i/D): y1 = x1*cos + x2*sin, y2 = -x1*sin + x2*cos.
"""

import pytest
import torch
from hypothesis import example, given
from hypothesis import strategies as st

from tests.explicit import rope_complex, rope_tables
from tests.strategies import positions

pytestmark = pytest.mark.component("rope.rotary")

D = 8  # head dimension used by the pure-function tests


def rotate(impl, x, t, base=10000.0):
    """apply_rotary_emb of the implementation, at position t, with exact float64 tables."""
    cos, sin = rope_tables([t], x.size(-1), base)
    return impl.apply_rotary_emb(x, cos, sin)


def vectors(seed, heads=1):
    return torch.randn(1, 1, heads, D, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))


def test_position_zero_is_the_identity(impl, model):
    """At position 0 every angle is 0, so RoPE with the model's own tables returns its input."""
    x = torch.randn(2, 1, 3, model.config.n_embd // model.config.n_head)
    y = impl.apply_rotary_emb(x, model.cos[:, :1], model.sin[:, :1])
    torch.testing.assert_close(y, x, rtol=0, atol=0)


@given(t=positions, seed=st.integers(0, 2**16))
def test_rotation_preserves_the_norm_of_every_pair(impl, t, seed):
    """Each pair (x1_i, x2_i) keeps its length: RoPE is a rotation, not a rescaling."""
    x = vectors(seed)
    y = rotate(impl, x, t)
    d = D // 2
    torch.testing.assert_close(y[..., :d] ** 2 + y[..., d:] ** 2, x[..., :d] ** 2 + x[..., d:] ** 2)


@given(m=positions, n=positions, shift=positions, seed=st.integers(0, 2**16))
@example(m=5, n=3, shift=1000, seed=0)
def test_query_key_score_depends_only_on_relative_position(impl, m, n, shift, seed):
    """<rope(q, m), rope(k, n)> == <rope(q, m + s), rope(k, n + s)>: attention sees offsets, not positions."""
    q, k = vectors(seed), vectors(seed + 1)
    score = (rotate(impl, q, m) * rotate(impl, k, n)).sum()
    shifted = (rotate(impl, q, m + shift) * rotate(impl, k, n + shift)).sum()
    torch.testing.assert_close(score, shifted, rtol=1e-9, atol=1e-9)


@given(t=positions, seed=st.integers(0, 2**16))
def test_agrees_with_complex_number_rotation(impl, t, seed):
    """apply_rotary_emb equals multiplying x1 + i*x2 by exp(-i * t * theta), theta_i = 10000^(-2i/D)."""
    x = vectors(seed, heads=3)
    cos, sin = rope_tables([t], D)
    torch.testing.assert_close(impl.apply_rotary_emb(x, cos, sin), rope_complex(x, cos, sin))


def test_pairs_are_the_two_halves_of_the_head_not_neighbours(impl):
    """Dimension i pairs with i + D/2 (half-split), not with i + 1 (interleaved)."""
    x = torch.zeros(1, 1, 1, D, dtype=torch.float64)
    x[..., 0] = 1.0
    y = rotate(impl, x, t=1)
    assert y[..., 0].abs() > 0.1 and y[..., D // 2].abs() > 0.1
    nonzero = torch.nonzero(y[0, 0, 0].abs() > 1e-12).flatten().tolist()
    assert nonzero == [0, D // 2]


def test_tables_hold_base_10000_frequencies_for_ten_times_the_sequence_length(model):
    """cos/sin are (1, 10*sequence_len, 1, D/2) with angle t * 10000^(-2i/D), rounded to bfloat16."""
    T, head_dim = 10 * model.config.sequence_len, model.config.n_embd // model.config.n_head
    assert model.cos.shape == model.sin.shape == (1, T, 1, head_dim // 2)
    cos, sin = rope_tables(range(T), head_dim)
    # one bfloat16 step (2^-8 relative) of slack for rounding angles computed in float32
    torch.testing.assert_close(model.cos.double(), cos, rtol=0, atol=2 ** -8)
    torch.testing.assert_close(model.sin.double(), sin, rtol=0, atol=2 ** -8)
    # another base would miss by far more than that somewhere
    other_cos, _ = rope_tables(range(T), head_dim, base=1000.0)
    assert (model.cos.double() - other_cos).abs().max() > 0.1


def test_tables_are_bfloat16_buffers_outside_the_state_dict(model):
    """cos and sin are bfloat16 buffers, derived from the config, so not saved with the weights."""
    buffers = dict(model.named_buffers())
    assert buffers["cos"].dtype == buffers["sin"].dtype == torch.bfloat16
    assert "cos" not in model.state_dict() and "sin" not in model.state_dict()
    assert not any(name.endswith(("cos", "sin")) for name, _ in model.named_parameters())


def test_tables_are_computed_for_the_head_dimension_not_n_embd(make_model, make_config):
    """The rotary frequencies depend on head_dim = n_embd // n_head."""
    model = make_model(make_config(n_embd=32, n_head=2, n_kv_head=2))
    assert model.cos.size(-1) == 8
    cos, _ = rope_tables([1], 16)
    torch.testing.assert_close(model.cos[0, 1, 0].double(), cos.flatten(), rtol=0, atol=2 ** -8)


def test_rope_has_no_learned_parameters(model):
    """No parameter holds positions: every weight is wte, lm_head or a block's linear layer."""
    allowed = {"transformer.wte", "lm_head"} | {
        f"transformer.h.{i}.{layer}" for i in range(model.config.n_layer)
        for layer in ("attn.c_q", "attn.c_k", "attn.c_v", "attn.c_proj", "mlp.c_fc", "mlp.c_proj")}
    assert {name.removesuffix(".weight") for name, _ in model.named_parameters()} == allowed
