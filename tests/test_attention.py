"""Component 5: causal self-attention, step by step.

project (c_q, c_k, c_v) -> RoPE on q, k -> QK norm -> (B, T, H, D) -> (B, H, T, D) -> scaled dot-product
attention, causal, grouped-query -> heads concatenated to (B, T, n_embd) -> c_proj.

Every expectation is computed independently in tests/explicit.py, in float64, from the weights.
The architecture card's QK gain (1 in the seed architecture, 1.2 in nanochat 92d63d4) multiplies the
normalized q and k before the scores.
"""

import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from . import diagnose, explicit
from .conftest import layer_window
from .explicit import rms
from .strategies import GQA_SHAPES, config_kwargs, gqa_id, min_width, sequence_lengths

TOL = dict(rtol=1e-4, atol=1e-5)
# head_dim 16 >= T 12, so one-hot value vectors can carry every position (see attention_matrix)
WIDE = dict(n_embd=64, n_head=4, n_kv_head=2)


@pytest.fixture
def expected_attention(arch):
    """expected_attention(model, cache, layer): the explicit float64 computation of one layer's attention
    on the traced input."""
    def expected(model, cache, layer):
        T = cache["idx"].size(1)
        return explicit.attention(model.transformer.h[layer].attn, cache[f"transformer.h.{layer}.attn.input"],
                                  model.cos[:, :T], model.sin[:, :T], model.config, arch.qk_gain,
                                  layer_window(arch, model.config, layer))
    return expected


def attention_matrix(model, idx, layer, run_traced):
    """Read the attention weights (B, H, T, T) off the real computation: replace the value vectors of
    `layer` with one-hot codes of their position, v_t = e_t, so that head h's output at query i is
    sum_j a_hij e_j, the i-th row of its attention matrix. Also returns the trace of that pass."""
    B, T = idx.shape
    H, Hkv, D = model.config.n_head, model.config.n_kv_head, model.config.n_embd // model.config.n_head
    assert T <= D
    codes = torch.eye(D)[:T].view(1, T, 1, D).expand(B, T, Hkv, D).reshape(B, T, Hkv * D)
    handle = model.transformer.h[layer].attn.c_v.register_forward_hook(lambda m, a, out: codes.to(out.dtype))
    try:
        cache = run_traced(model, idx)
    finally:
        handle.remove()
    heads = cache[f"transformer.h.{layer}.attn.heads_concat"].view(B, T, H, D)
    return heads[..., :T].transpose(1, 2), cache  # (B, H, Tq, Tk)


@pytest.fixture
def wide_model(make_model, make_config):
    return make_model(make_config(**WIDE))


@pytest.fixture
def wide_idx():
    return torch.randint(0, 64, (2, 12), generator=torch.Generator().manual_seed(3))


@pytest.mark.component("attention.projections")
class TestProjections:

    def test_q_has_n_head_heads_and_k_v_have_n_kv_head_heads(self, model, traced):
        """c_q maps n_embd to n_head*head_dim; c_k and c_v to n_kv_head*head_dim: q (B,T,H,D), k/v (B,T,Hkv,D)."""
        c = model.config
        B, T = traced["idx"].shape
        D = c.n_embd // c.n_head
        attn = model.transformer.h[0].attn
        assert (attn.c_q.in_features, attn.c_q.out_features) == (c.n_embd, c.n_head * D)
        assert (attn.c_k.in_features, attn.c_k.out_features) == (c.n_embd, c.n_kv_head * D)
        assert (attn.c_v.in_features, attn.c_v.out_features) == (c.n_embd, c.n_kv_head * D)
        assert traced["transformer.h.0.attn.q"].shape == (B, T, c.n_head, D)
        assert traced["transformer.h.0.attn.k"].shape == traced["transformer.h.0.attn.v"].shape == (B, T, c.n_kv_head, D)

    def test_projections_are_bias_free_linear_maps_of_the_attention_input(self, model, traced, expected_attention):
        """q, k, v are exactly x @ W^T of the normalized input, with no bias term."""
        for i in range(model.config.n_layer):
            expected = expected_attention(model, traced, i)
            for name in ("q", "k", "v"):
                torch.testing.assert_close(traced[f"transformer.h.{i}.attn.{name}"].double(), expected[name], **TOL)
                assert getattr(model.transformer.h[i].attn, f"c_{name}").bias is None


@pytest.mark.component("attention.rope")
class TestRoPEOnQueriesAndKeys:

    def test_queries_and_keys_are_rotated_by_their_position(self, model, traced, expected_attention):
        """q_rope and k_rope are q and k turned by position t (complex-number RoPE with the model's tables)."""
        for i in range(model.config.n_layer):
            expected = expected_attention(model, traced, i)
            for name in ("q_rope", "k_rope"):
                torch.testing.assert_close(traced[f"transformer.h.{i}.attn.{name}"].double(), expected[name], **TOL)

    def test_values_are_never_rotated(self, model, traced, expected_attention):
        """The heads mix the raw projected values: attention with rotated values would differ."""
        T = traced["idx"].size(1)
        for i in range(model.config.n_layer):
            expected = expected_attention(model, traced, i)
            got = traced[f"transformer.h.{i}.attn.heads_concat"].double()
            torch.testing.assert_close(got, expected["heads_concat"], **TOL)
            # the same computation with rotated values is far off: the check above can tell them apart
            rotated_v = explicit.rope_complex(expected["v"], model.cos[:, :T], model.sin[:, :T])
            group = model.config.n_head // model.config.n_kv_head
            wrong = torch.cat([expected["weights"][:, h] @ rotated_v[:, :, h // group]
                               for h in range(model.config.n_head)], dim=-1)
            assert (got - wrong).abs().max() > 1e-2


@pytest.mark.component("attention.qk_norm")
class TestQKNorm:

    def test_every_query_and_key_head_vector_has_unit_rms(self, traced, model):
        """After QK norm each head vector of q and k has RMS 1 over head_dim, whatever the input scale."""
        for i in range(model.config.n_layer):
            for name in ("q_norm", "k_norm"):
                r = rms(traced[f"transformer.h.{i}.attn.{name}"])
                torch.testing.assert_close(r, torch.ones_like(r), rtol=1e-5, atol=1e-5)

    def test_qk_norm_normalizes_the_rotated_vectors(self, traced, model, expected_attention):
        """q_norm = norm(rope(q)) and k_norm = norm(rope(k)): normalization comes after the rotation."""
        for i in range(model.config.n_layer):
            expected = expected_attention(model, traced, i)
            for name in ("q_norm", "k_norm"):
                torch.testing.assert_close(traced[f"transformer.h.{i}.attn.{name}"].double(), expected[name], **TOL)

    def test_attention_is_invariant_to_the_scale_of_queries_and_keys(self, model, idx, run_traced):
        """Scaling c_q and c_k by 10 leaves the attention output unchanged: QK norm removes the scale."""
        before = run_traced(model, idx)["transformer.h.0.attn.output"]
        with torch.no_grad():
            model.transformer.h[0].attn.c_q.weight.mul_(10.0)
            model.transformer.h[0].attn.c_k.weight.mul_(10.0)
        after = run_traced(model, idx)["transformer.h.0.attn.output"]
        torch.testing.assert_close(after, before, rtol=1e-4, atol=1e-5)


@pytest.mark.component("attention.gqa")
class TestGroupedQueryAttention:

    def test_query_head_h_reads_kv_head_h_div_group_size(self, model, traced, expected_attention, arch):
        """With n_head=4, n_kv_head=2, query heads 0,1 share kv head 0 and heads 2,3 share kv head 1."""
        c = model.config
        group = c.n_head // c.n_kv_head
        assert group > 1
        for i in range(c.n_layer):
            expected = expected_attention(model, traced, i)
            got = traced[f"transformer.h.{i}.attn.heads_concat"].double()
            torch.testing.assert_close(got, expected["heads_concat"], **TOL)
            # tiling (head h reads kv head h % n_kv_head) is a different model, which the check above would reject
            tiled_k = torch.stack([expected["k_norm"][:, :, h % c.n_kv_head] for h in range(c.n_head)], dim=2)
            tiled = explicit.attention_weights(expected["q_norm"], tiled_k, window=layer_window(arch, c, i))
            assert (tiled - expected["weights"]).abs().max() > 1e-3

    @pytest.mark.parametrize("shape", GQA_SHAPES, ids=gqa_id)
    def test_every_grouping_ratio_equals_explicit_head_sharing(self, make_model, make_config, run_traced, shape, arch,
                                                               expected_attention):
        """For MHA, MQA and GQA 2, 3, 4, 6 (n_head 1 to 12), attention equals the explicit version in which query
        head h reads kv head h // (n_head // n_kv_head) (grouping bugs hide at 4:2 and show at 6:2, 6:3, 12:4)."""
        n_head, n_kv_head = shape
        head_dim = max(8, 2 * -(-min_width(arch) // (2 * n_head)))  # wide enough for the card's gates
        model = make_model(make_config(n_head=n_head, n_kv_head=n_kv_head, n_embd=head_dim * n_head, n_layer=1))
        idx = torch.randint(0, 64, (2, 7), generator=torch.Generator().manual_seed(0))
        cache = run_traced(model, idx)
        expected = expected_attention(model, cache, 0)
        torch.testing.assert_close(cache["transformer.h.0.attn.output"].double(), expected["output"], **TOL)

    @given(data=st.data())
    def test_any_config_equals_explicit_attention(self, make_model, impl, arch, run_traced, expected_attention, data):
        """Over the config space (n_head 1-12 with every divisor as n_kv_head, head_dim 8-64, 1-4 layers, 1 to
        sequence_len tokens), every layer's attention equals the explicit float64 computation."""
        kwargs = data.draw(config_kwargs(arch, max_layers=4, max_seq=12), label="config")
        T = data.draw(sequence_lengths(arch, kwargs["sequence_len"]), label="T")
        model = make_model(impl.GPTConfig(**kwargs))
        idx = torch.randint(0, kwargs["vocab_size"], (2, T), generator=torch.Generator().manual_seed(0))
        cache = run_traced(model, idx)
        for layer in range(kwargs["n_layer"]):
            expected = expected_attention(model, cache, layer)
            torch.testing.assert_close(cache[f"transformer.h.{layer}.attn.output"].double(), expected["output"], **TOL)

    @pytest.mark.component("inference.kv_cache")
    def test_kv_cache_holds_n_head_over_n_kv_head_times_fewer_bytes(self, make_model, make_config, new_cache, caches):
        """Keys and values are cached per kv head: GQA 4:2 stores half the bytes of multi-head attention."""
        sizes = {}
        for n_kv_head in (4, 2, 1):
            config = make_config(n_kv_head=n_kv_head)
            model = make_model(config)
            cache = new_cache(config, batch_size=2, seq_len=8)
            model(torch.randint(0, config.vocab_size, (2, 8)), kv_cache=cache)
            assert caches.kv_heads(cache) == n_kv_head
            sizes[n_kv_head] = caches.nbytes(cache)
        assert sizes[4] == 2 * sizes[2] == 4 * sizes[1]


@pytest.mark.component("attention.sdpa")
class TestScaledDotProductAttention:

    def test_attention_output_equals_explicit_softmax_attention(self, model, traced, expected_attention):
        """attn(x) == c_proj(concat_h softmax(q_h k_h^T / sqrt(D) + causal mask) v_h), written out in float64."""
        for i in range(model.config.n_layer):
            expected = expected_attention(model, traced, i)
            torch.testing.assert_close(traced[f"transformer.h.{i}.attn.output"].double(), expected["output"], **TOL)

    def test_scores_are_scaled_by_one_over_sqrt_head_dim(self, wide_model, wide_idx, run_traced, qk_gain, arch):
        """The weights match softmax(g q · g k / sqrt(head_dim)) with the card's QK gain g, and neither scale 1
        nor 1/head_dim."""
        A, cache = attention_matrix(wide_model, wide_idx, 0, run_traced)
        q0, k0 = cache["transformer.h.0.attn.q_norm"], cache["transformer.h.0.attn.k_norm"]
        q, k = q0 * qk_gain, k0 * qk_gain
        D, window = q.size(-1), layer_window(arch, wide_model.config, 0)

        def weights_of_gain(g):
            return explicit.attention_weights(q0 * g, k0 * g, window=window)
        torch.testing.assert_close(A.double(), explicit.attention_weights(q, k, window=window), **TOL,
                                   msg=lambda m: f"{diagnose.say_qk_gain(qk_gain, weights_of_gain, A)}\n{m}")
        for wrong_scale in (1.0, 1.0 / D):
            wrong = explicit.attention_weights(q * wrong_scale * math.sqrt(D), k, window=window)
            assert (A.double() - wrong).abs().max() > 1e-2

    @pytest.mark.parametrize("mode", ["eval", "train"])
    def test_attention_is_deterministic_with_no_dropout(self, model, idx, mode):
        """Two forwards of the same tokens give bit-identical logits, in eval and in train mode: the architecture
        has no dropout (nanoGPT PR 240: dropout_p passed to SDPA unconditionally)."""
        getattr(model, mode)()
        torch.testing.assert_close(model(idx), model(idx), rtol=0, atol=0)

    def test_heads_attend_in_batches_independently(self, model, idx, run_traced):
        """Each sequence of the batch is attended on its own: batching two sequences changes neither."""
        both = run_traced(model, idx)["logits"]
        for b in range(idx.size(0)):
            alone = run_traced(model, idx[b:b + 1])["logits"]
            torch.testing.assert_close(alone[0], both[b], rtol=1e-5, atol=1e-5)


@pytest.mark.component("attention.causal_mask")
class TestCausalMask:

    @given(j=st.integers(0, 15), offset=st.integers(1, 63))
    def test_changing_token_j_changes_nothing_before_j(self, model, idx, run_traced, j, offset):
        """Replacing the token at position j leaves logits and every layer's residual stream at positions < j unchanged."""
        changed = idx.clone()
        changed[:, j] = (idx[:, j] + offset) % model.config.vocab_size  # always a different token
        a, b = run_traced(model, idx), run_traced(model, changed)
        names = ["logits"] + [f"transformer.h.{i}.output" for i in range(model.config.n_layer)]
        for name in names:
            torch.testing.assert_close(a[name][:, :j], b[name][:, :j], rtol=0, atol=1e-6)
        # and position j itself does see its own token
        assert (a["logits"][:, j] - b["logits"][:, j]).abs().max() > 1e-4

    def test_weights_above_the_diagonal_are_exactly_zero(self, wide_model, wide_idx, run_traced):
        """Query i gives weight exactly 0 to every key j > i, in every head of every layer."""
        for layer in range(wide_model.config.n_layer):
            A, _ = attention_matrix(wide_model, wide_idx, layer, run_traced)
            T = A.size(-1)
            future = torch.ones(T, T, dtype=torch.bool).triu(1)
            assert (A[..., future] == 0).all()

    def test_every_query_attends_to_itself_and_all_earlier_keys(self, wide_model, wide_idx, run_traced, arch):
        """On and below the diagonal every weight is positive: the mask hides the future only, not the present
        (and, under a card whose windows are on, nothing within the layer's window)."""
        A, _ = attention_matrix(wide_model, wide_idx, 0, run_traced)
        T = A.size(-1)
        past_and_present = torch.ones(T, T, dtype=torch.bool).tril()
        window = layer_window(arch, wide_model.config, 0)
        if window is not None:
            past_and_present &= ~torch.ones(T, T, dtype=torch.bool).tril(-window - 1)
        assert (A[..., past_and_present] > 0).all()
        assert (A[..., 0, 0] - 1).abs().max() < 1e-6  # the first query has only itself to attend to


@pytest.mark.component("attention.softmax")
class TestSoftmax:

    def test_each_row_of_weights_is_a_probability_distribution(self, wide_model, wide_idx, run_traced):
        """Attention weights are non-negative and every query's row sums to 1."""
        A, _ = attention_matrix(wide_model, wide_idx, 1, run_traced)
        assert (A >= 0).all()
        torch.testing.assert_close(A.sum(-1), torch.ones(A.shape[:-1]), rtol=0, atol=1e-5)

    def test_weights_are_the_softmax_of_the_scores_over_keys(self, wide_model, wide_idx, run_traced, qk_gain, arch):
        """a_ij = exp(s_ij) / sum_j' exp(s_ij'): normalized over keys (rows), not over queries (columns)."""
        A, cache = attention_matrix(wide_model, wide_idx, 1, run_traced)
        q, k = cache["transformer.h.1.attn.q_norm"] * qk_gain, cache["transformer.h.1.attn.k_norm"] * qk_gain
        window = layer_window(arch, wide_model.config, 1)
        torch.testing.assert_close(A.double(), explicit.attention_weights(q, k, window=window), **TOL)
        assert (A.sum(-2) - 1).abs().max() > 1e-2  # columns do not sum to 1

    def test_weights_are_not_uniform(self, wide_model, wide_idx, run_traced):
        """The softmax is sharp enough to tell keys apart: weights follow the scores, not 1/(i+1)."""
        A, _ = attention_matrix(wide_model, wide_idx, 0, run_traced)
        T = A.size(-1)
        uniform = torch.ones(T, T).tril() / torch.arange(1, T + 1)[:, None]
        assert (A - uniform).abs().max() > 1e-2


@pytest.mark.component("attention.head_concat")
class TestHeadConcat:

    def test_heads_are_concatenated_in_order_to_n_embd(self, model, traced, expected_attention):
        """Channels h*D..(h+1)*D of the (B, T, n_embd) concat hold head h's output at the same position."""
        B, T = traced["idx"].shape
        for i in range(model.config.n_layer):
            concat = traced[f"transformer.h.{i}.attn.heads_concat"]
            assert concat.shape == (B, T, model.config.n_embd)
            expected = expected_attention(model, traced, i)["heads"]  # (B, T, H, D)
            for h in range(model.config.n_head):
                D = expected.size(-1)
                torch.testing.assert_close(concat[..., h * D:(h + 1) * D].double(), expected[:, :, h], **TOL)


@pytest.mark.component("attention.output_projection")
class TestOutputProjection:

    def test_output_is_c_proj_of_the_concatenated_heads(self, model, traced):
        """attn output = concat @ W_proj^T, a bias-free n_embd x n_embd map, shape (B, T, n_embd)."""
        for i in range(model.config.n_layer):
            c_proj = model.transformer.h[i].attn.c_proj
            assert (c_proj.in_features, c_proj.out_features) == (model.config.n_embd, model.config.n_embd)
            assert c_proj.bias is None
            out = traced[f"transformer.h.{i}.attn.output"]
            assert out.shape == traced[f"transformer.h.{i}.attn.input"].shape
            torch.testing.assert_close(out.double(), explicit.linear(traced[f"transformer.h.{i}.attn.heads_concat"], c_proj), **TOL)

    def test_output_projection_starts_at_zero(self, make_model, config, arch):
        """init_weights zeroes attn.c_proj, so attention adds nothing to the residual stream at init."""
        assert arch.init_rule("attn.c_proj").dist == "zeros"  # every card so far: the block starts as the identity
        model = make_model(config, randomize=False)
        for block in model.transformer.h:
            assert (block.attn.c_proj.weight == 0).all()
            assert block.attn.c_q.weight.abs().sum() > 0
