"""Component 7: the MLP, c_fc (n_embd -> mlp_ratio*n_embd, 4 in every card so far), ReLU², c_proj back to
n_embd, no bias."""

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given
from hypothesis import strategies as st

from nanochat_verify.contract import interface

from . import explicit

TOL = dict(rtol=1e-4, atol=1e-5)


def layers(model):
    return [(i, block.mlp) for i, block in enumerate(model.transformer.h)]


@pytest.mark.component("mlp.fc")
class TestExpansion:

    @given(n_head=st.sampled_from([1, 2, 4, 6]), head_dim=st.sampled_from([8, 12, 16]))
    def test_hidden_layer_is_mlp_ratio_times_n_embd(self, make_model, make_config, n_head, head_dim, mlp_ratio):
        """c_fc maps n_embd to mlp_ratio * n_embd and c_proj maps it back, for any width."""
        n_embd = max(n_head * head_dim, 24)  # the narrowest a card's gates allow
        n_embd -= n_embd % n_head
        model = make_model(make_config(n_embd=n_embd, n_head=n_head, n_kv_head=n_head, n_layer=1))
        mlp = model.transformer.h[0].mlp
        assert (mlp.c_fc.in_features, mlp.c_fc.out_features) == (n_embd, mlp_ratio * n_embd)
        assert (mlp.c_proj.in_features, mlp.c_proj.out_features) == (mlp_ratio * n_embd, n_embd)

    def test_fc_is_a_bias_free_linear_map_of_the_mlp_input(self, model, traced, mlp_ratio):
        """The hidden pre-activation is mlp_input @ W_fc^T, shape (B, T, mlp_ratio*n_embd)."""
        B, T = traced["idx"].shape
        for i, mlp in layers(model):
            fc = traced[f"transformer.h.{i}.mlp.fc"]
            assert fc.shape == (B, T, mlp_ratio * model.config.n_embd)
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

    def test_projection_starts_at_zero(self, make_model, config, arch):
        """init_weights zeroes mlp.c_proj, so the MLP adds nothing to the residual stream at init."""
        assert arch.init_rule("mlp.c_proj").dist == "zeros"  # every card so far
        model = make_model(config, randomize=False)
        for block in model.transformer.h:
            assert (block.mlp.c_proj.weight == 0).all()
            assert block.mlp.c_fc.weight.abs().sum() > 0


@pytest.mark.component("mlp.fc", "mlp.projection", "attention.projections", "lm_head")
def test_no_linear_layer_in_the_model_has_a_bias(model):
    """Every nn.Linear of the model is bias-free (the contract's six per block and lm_head among them), and no
    parameter is a bias vector."""
    linears = {name: m for name, m in model.named_modules() if isinstance(m, torch.nn.Linear)}
    contract = {f"transformer.h.{i}.{n}" for i in range(model.config.n_layer)
                for n in ("attn.c_q", "attn.c_k", "attn.c_v", "attn.c_proj", "mlp.c_fc", "mlp.c_proj")} | {"lm_head"}
    missing = sorted(contract - set(linears))
    if missing and interface.missing_modules(model):  # named otherwise: tests/test_interface.py says so once
        raise interface.InterfaceDiffers(f"the model has no {', '.join(missing[:3])}")
    assert missing == []
    assert all(m.bias is None for m in linears.values())
    assert not any(name.endswith("bias") for name, _ in model.named_parameters())
