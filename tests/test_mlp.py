"""Component 7: the MLP, c_fc (n_embd -> 4*n_embd), ReLU², c_proj (4*n_embd -> n_embd), no bias."""

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given
from hypothesis import strategies as st

from tests import explicit

TOL = dict(rtol=1e-4, atol=1e-5)


def layers(model):
    return [(i, block.mlp) for i, block in enumerate(model.transformer.h)]


@pytest.mark.component("mlp.fc")
class TestExpansion:

    @given(n_head=st.sampled_from([1, 2, 4]), head_dim=st.sampled_from([2, 4, 8]))
    def test_hidden_layer_is_four_times_n_embd(self, make_model, make_config, n_head, head_dim):
        """c_fc maps n_embd to 4 * n_embd and c_proj maps it back, for any width."""
        n_embd = n_head * head_dim
        model = make_model(make_config(n_embd=n_embd, n_head=n_head, n_kv_head=n_head, n_layer=1))
        mlp = model.transformer.h[0].mlp
        assert (mlp.c_fc.in_features, mlp.c_fc.out_features) == (n_embd, 4 * n_embd)
        assert (mlp.c_proj.in_features, mlp.c_proj.out_features) == (4 * n_embd, n_embd)

    def test_fc_is_a_bias_free_linear_map_of_the_mlp_input(self, model, traced):
        """The hidden pre-activation is mlp_input @ W_fc^T, shape (B, T, 4*n_embd)."""
        B, T = traced["idx"].shape
        for i, mlp in layers(model):
            fc = traced[f"transformer.h.{i}.mlp.fc"]
            assert fc.shape == (B, T, 4 * model.config.n_embd)
            torch.testing.assert_close(fc.double(), explicit.linear(traced[f"transformer.h.{i}.mlp.input"], mlp.c_fc), **TOL)


@pytest.mark.component("mlp.relu2")
class TestReLUSquared:

    def test_activation_is_relu_squared(self, model, traced):
        """act = relu(fc) ** 2 exactly: the square of the positive part."""
        for i, _ in layers(model):
            fc, act = traced[f"transformer.h.{i}.mlp.fc"], traced[f"transformer.h.{i}.mlp.act"]
            torch.testing.assert_close(act, F.relu(fc).square(), rtol=1e-6, atol=0)

    def test_negative_inputs_give_exactly_zero(self, model, traced):
        """Wherever the pre-activation is negative the activation is 0 (about half the units are off)."""
        fc, act = traced["transformer.h.0.mlp.fc"], traced["transformer.h.0.mlp.act"]
        assert (act[fc <= 0] == 0).all()
        assert 0.2 < (act == 0).float().mean() < 0.8

    def test_is_neither_relu_nor_gelu(self, model, traced):
        """The activation differs from plain ReLU and from GELU, and is positive wherever fc is."""
        fc, act = traced["transformer.h.0.mlp.fc"], traced["transformer.h.0.mlp.act"]
        assert (act - F.relu(fc)).abs().max() > 0.1
        assert (act - F.gelu(fc)).abs().max() > 0.1
        assert (act[fc > 0] > 0).all()

    def test_output_equals_explicit_relu_squared_mlp(self, model, traced):
        """mlp(x) == relu(x W_fc^T)**2 W_proj^T, computed independently in float64."""
        for i, mlp in layers(model):
            expected = explicit.mlp(mlp, traced[f"transformer.h.{i}.mlp.input"])
            torch.testing.assert_close(traced[f"transformer.h.{i}.mlp.output"].double(), expected["output"], **TOL)


@pytest.mark.component("mlp.projection")
class TestProjection:

    def test_output_is_c_proj_of_the_activation(self, model, traced):
        """The MLP output is act @ W_proj^T, back to (B, T, n_embd)."""
        for i, mlp in layers(model):
            out = traced[f"transformer.h.{i}.mlp.output"]
            assert out.shape == traced[f"transformer.h.{i}.mlp.input"].shape
            torch.testing.assert_close(out.double(), explicit.linear(traced[f"transformer.h.{i}.mlp.act"], mlp.c_proj), **TOL)

    def test_projection_starts_at_zero(self, make_model, config):
        """init_weights zeroes mlp.c_proj, so the MLP adds nothing to the residual stream at init."""
        model = make_model(config, randomize=False)
        for block in model.transformer.h:
            assert (block.mlp.c_proj.weight == 0).all()
            assert block.mlp.c_fc.weight.abs().sum() > 0


@pytest.mark.component("mlp.fc", "mlp.projection", "attention.projections", "lm_head")
def test_no_linear_layer_in_the_model_has_a_bias(model):
    """Every nn.Linear of the model is bias-free, and no parameter is a bias vector."""
    linears = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
    assert len(linears) == 6 * model.config.n_layer + 1
    assert all(m.bias is None for m in linears)
    assert all(p.dim() == 2 for p in model.parameters())


@pytest.mark.component("mlp.fc", "mlp.projection")
def test_linear_init_std_is_one_over_sqrt_fan_in_shrunk_for_narrowing_layers(make_model, make_config):
    """c_fc starts with std 1/sqrt(n_embd); c_fc of a narrowing layer would be shrunk by sqrt(fan_out/fan_in)."""
    config = make_config(n_embd=64, n_head=4, n_kv_head=1, n_layer=1)
    model = make_model(config, randomize=False)
    attn, mlp = model.transformer.h[0].attn, model.transformer.h[0].mlp
    d = config.n_embd
    expected = {
        "c_fc": (mlp.c_fc, 1 / d ** 0.5),  # widening: no shrink
        "c_q": (attn.c_q, 1 / d ** 0.5),  # square
        "c_k": (attn.c_k, 1 / d ** 0.5 * (16 / d) ** 0.5),  # narrowing: 64 -> 16
    }
    for name, (layer, std) in expected.items():
        measured = layer.weight.double().std().item()
        assert abs(measured / std - 1) < 0.1, f"{name}: std {measured:.4f}, expected {std:.4f}"
