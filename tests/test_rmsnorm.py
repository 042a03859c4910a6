"""Component 6: RMSNorm without learnable parameters, x / sqrt(mean(x**2) + eps), at four places."""

import re
import pytest
import torch
from hypothesis import example, given
from hypothesis import strategies as st

from .explicit import rms, rms_norm

moderate_scales = st.floats(0.3, 1e3)

TOL = dict(rtol=1e-5, atol=1e-5)
shapes = st.lists(st.integers(1, 5), min_size=0, max_size=2).map(tuple)


def random_x(shape, dim, seed, dtype=torch.float32):
    return torch.randn(*shape, dim, dtype=dtype, generator=torch.Generator().manual_seed(seed))


def with_rms(x, r):
    """x rescaled so that every last-dim vector has RMS exactly r."""
    return (x.double() / rms(x)[..., None] * r).to(x.dtype)


def unit(x):
    return torch.ones(x.shape[:-1], dtype=torch.float64)


@pytest.mark.component("rmsnorm")
class TestNormFunction:

    @given(shape=shapes, dim=st.integers(2, 64), scale=moderate_scales, seed=st.integers(0, 2**16))
    @example(shape=(3,), dim=8, scale=0.3, seed=0)
    @example(shape=(3,), dim=8, scale=1e3, seed=0)
    def test_output_has_unit_rms_at_any_scale(self, impl, shape, dim, scale, seed):
        """norm(x) has root mean square 1 over the last dimension, for inputs of RMS 0.3 to 1000."""
        y = impl.norm(with_rms(random_x(shape, dim, seed), scale))
        assert y.shape == (*shape, dim)
        torch.testing.assert_close(rms(y), unit(y), **TOL)

    @given(dim=st.integers(2, 64), c=moderate_scales, seed=st.integers(0, 2**16))
    def test_is_invariant_to_positive_rescaling(self, impl, dim, c, seed):
        """norm(c * x) == norm(x) for every c > 0 (away from the epsilon regime)."""
        x = with_rms(random_x((4,), dim, seed), 1.0)
        torch.testing.assert_close(impl.norm(c * x), impl.norm(x), **TOL)

    @pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=str)
    def test_epsilon_is_negligible(self, impl, dtype):
        """The eps in sqrt(mean(x**2) + eps) is machine-epsilon small (<= 5e-7), not a 1e-5 or 1e-2 fudge."""
        r = 1e-2
        x = with_rms(random_x((4,), 16, seed=3, dtype=dtype), r)
        implied_eps = r ** 2 * (1 / rms(impl.norm(x)) ** 2 - 1)
        assert (implied_eps <= 5e-7).all(), implied_eps
        assert (implied_eps >= -1e-9).all(), implied_eps

    def test_equals_x_over_its_root_mean_square(self, impl):
        """norm(x) == x / sqrt(mean(x**2)) over the last dimension, computed independently."""
        x = random_x((3, 5), 16, seed=1)
        torch.testing.assert_close(impl.norm(x).double(), rms_norm(x), **TOL)

    @pytest.mark.parametrize("r", [1e-3, 1e-2, 3.0], ids=lambda r: f"rms={r:g}")
    def test_eps_is_the_dtypes_machine_epsilon_inside_the_square_root(self, impl, r):
        """For tiny and normal rows, norm(x) == x / sqrt(mean(x**2) + eps) with eps = float32's machine epsilon
        (F.rms_norm's default): eps outside the root, or another value, shows at RMS 1e-3 (gpt-neox PR 1345)."""
        x = with_rms(random_x((6,), 32, seed=5), r)
        eps = torch.finfo(torch.float32).eps
        expected = x.double() / (x.double().pow(2).mean(-1, keepdim=True) + eps).sqrt()
        torch.testing.assert_close(impl.norm(x).double(), expected, rtol=1e-5, atol=0)

    def test_does_not_center_the_vector(self, impl):
        """Unlike LayerNorm, RMSNorm keeps the mean: norm([1, 2, 3, 4]) is x / rms(x), all positive, and rows with a
        large common offset (randn + 3) are divided by their RMS, not their standard deviation (timm issue 2380)."""
        x = torch.tensor([[1.0, 2.0, 3.0, 4.0]])
        y = impl.norm(x)
        torch.testing.assert_close(y, x / x.pow(2).mean().sqrt(), **TOL)
        assert y.mean() > 0.5
        layer_norm = torch.nn.functional.layer_norm(x, (4,))
        assert (y - layer_norm).abs().max() > 0.5
        offset = random_x((4,), 16, seed=6) + 3.0
        torch.testing.assert_close(impl.norm(offset).double(), rms_norm(offset), **TOL)

    def test_normalizes_the_last_dimension_only(self, impl):
        """Each row is normalized on its own: rows of very different scale all come out at unit RMS."""
        x = with_rms(random_x((3,), 8, seed=2), 1.0) * torch.tensor([[0.3], [1.0], [1e2]])
        y = impl.norm(x)
        torch.testing.assert_close(rms(y), unit(y), **TOL)
        torch.testing.assert_close(y[1].double(), rms_norm(x[1]), **TOL)

    def test_norm_has_no_parameters_anywhere_in_the_model(self, model):
        """No norm carries a gain or bias: no norm module with a parameter (a parameter-free nn.RMSNorm is the same
        norm), no parameter of a module named as one (ln_f, norm, rmsnorm...) and no bias; the norms' outputs are unit
        RMS whatever the parameters (checked at each place below)."""
        norm_types = (torch.nn.LayerNorm, torch.nn.RMSNorm, torch.nn.GroupNorm, torch.nn.BatchNorm1d)
        assert [n for n, m in model.named_modules() if isinstance(m, norm_types) and list(m.parameters())] == []

        def named_like_a_norm(name):
            parts = name.split(".")
            words = re.split(r"[_\d]+", parts[-2].lower()) if len(parts) > 1 else []
            return parts[-1] == "bias" or any(w in ("ln", "norm", "rmsnorm", "layernorm", "gain") for w in words)
        assert [n for n, _ in model.named_parameters() if named_like_a_norm(n)] == []

    @pytest.mark.parametrize("r", [1e-3, 1.0, 300.0], ids=lambda r: f"rms={r:g}")
    def test_bfloat16_rows_come_out_as_the_float32_computation_says(self, impl, r):
        """In bfloat16, rows of RMS 1e-3, 1 and 300 come out as norm of the float32 row, within two bfloat16 steps:
        an eps taken from bfloat16 (2^-7, pytorch issue 140092) turns unit RMS into 0.01 for the tiny rows."""
        x = with_rms(random_x((8,), 64, seed=4, dtype=torch.float32), r).to(torch.bfloat16)
        y = impl.norm(x)
        assert y.dtype == torch.bfloat16
        expected = impl.norm(x.float())
        torch.testing.assert_close(y.float(), expected, rtol=2 * 2 ** -8, atol=2 ** -8)
        # and that float32 result is unit RMS but for the float32 eps (1.2e-7) inside the square root
        implied = rms(expected) / (r ** 2 / (r ** 2 + torch.finfo(torch.float32).eps)) ** 0.5
        torch.testing.assert_close(implied, torch.ones_like(implied), rtol=2e-2, atol=0)


@pytest.mark.component("rmsnorm.after_embedding")
def test_applied_after_the_token_embedding(traced):
    """Block 0 receives norm(wte[idx]), unit RMS at every position."""
    torch.testing.assert_close(traced["transformer.h.0.input"].double(), rms_norm(traced["transformer.wte.output"]), **TOL)


@pytest.mark.component("rmsnorm.pre_attention")
def test_applied_before_attention_in_every_block(traced, model):
    """Each block's attention sees norm(x) of the residual stream x entering the block."""
    for i in range(model.config.n_layer):
        x = traced[f"transformer.h.{i}.input"]
        attn_in = traced[f"transformer.h.{i}.attn.input"]
        torch.testing.assert_close(attn_in.double(), rms_norm(x), **TOL)
        torch.testing.assert_close(rms(attn_in), unit(attn_in), **TOL)


@pytest.mark.component("rmsnorm.pre_mlp")
def test_applied_before_the_mlp_in_every_block(traced, model):
    """Each block's MLP sees norm(x + attn(norm(x))), unit RMS at every position."""
    for i in range(model.config.n_layer):
        mid = traced[f"transformer.h.{i}.input"].double() + traced[f"transformer.h.{i}.attn.output"].double()
        mlp_in = traced[f"transformer.h.{i}.mlp.input"]
        torch.testing.assert_close(mlp_in.double(), rms_norm(mid), **TOL)
        torch.testing.assert_close(rms(mlp_in), unit(mlp_in), **TOL)


@pytest.mark.component("rmsnorm.final", "final_norm.before_lm_head")
def test_applied_before_the_lm_head(traced, model):
    """The LM head sees norm(x) of the last block's output, unit RMS at every position."""
    last = traced[f"transformer.h.{model.config.n_layer - 1}.output"]
    head_in = traced["lm_head.input"]
    torch.testing.assert_close(head_in.double(), rms_norm(last), **TOL)
    torch.testing.assert_close(rms(head_in), unit(head_in), **TOL)


@pytest.mark.component("rmsnorm")
def test_the_residual_stream_needs_the_norms(traced, model):
    """The stream the norms act on is far from unit RMS, so each placement check above is not vacuous."""
    for i in range(1, model.config.n_layer):
        assert (rms(traced[f"transformer.h.{i}.input"]) - 1).abs().max() > 0.05
    assert (rms(traced[f"transformer.h.{model.config.n_layer - 1}.output"]) - 1).abs().max() > 0.05
    assert (rms(traced["transformer.wte.output"]) - 1).abs().max() > 0.05
