"""Component 4: the pre-norm residual block, x = x + attn(norm(x)); x = x + mlp(norm(x))."""

import pytest
import torch

from . import explicit
from .conftest import layer_window
from .explicit import rms_norm

TOL = dict(rtol=1e-4, atol=1e-5)


def blocks(model):
    return list(enumerate(model.transformer.h))


@pytest.mark.component("block.attention_path")
def test_attention_path_adds_attention_of_the_normalized_stream(model, traced, qk_gain, arch):
    """attn sees norm(x), and x + attn(norm(x)) is what the MLP path starts from."""
    T = traced["idx"].size(1)
    for i, block in blocks(model):
        x = traced[f"transformer.h.{i}.input"]
        attn_in = traced[f"transformer.h.{i}.attn.input"]
        torch.testing.assert_close(attn_in.double(), rms_norm(x), **TOL)
        expected = explicit.attention(block.attn, attn_in, model.cos[:, :T], model.sin[:, :T], model.config, qk_gain,
                                      layer_window(arch, model.config, i))
        torch.testing.assert_close(traced[f"transformer.h.{i}.attn.output"].double(), expected["output"], **TOL)


@pytest.mark.component("block.mlp_path")
def test_mlp_path_adds_mlp_of_the_normalized_stream(model, traced):
    """The MLP sees norm(x + attn(norm(x))), and the block returns that sum plus the MLP's output."""
    for i, block in blocks(model):
        mid = traced[f"transformer.h.{i}.input"].double() + traced[f"transformer.h.{i}.attn.output"].double()
        mlp_in = traced[f"transformer.h.{i}.mlp.input"]
        torch.testing.assert_close(mlp_in.double(), rms_norm(mid), **TOL)
        expected = explicit.mlp(block.mlp, mlp_in)
        torch.testing.assert_close(traced[f"transformer.h.{i}.mlp.output"].double(), expected["output"], **TOL)
        torch.testing.assert_close(traced[f"transformer.h.{i}.output"].double(), mid + expected["output"], **TOL)


@pytest.mark.component("block")
def test_block_equals_the_explicit_pre_norm_formula(model, traced, qk_gain, arch):
    """block(x) == x + a + mlp(norm(x + a)) with a = attn(norm(x)), every step computed independently."""
    T = traced["idx"].size(1)
    for i, block in blocks(model):
        x = traced[f"transformer.h.{i}.input"].double()
        a = explicit.attention(block.attn, rms_norm(x), model.cos[:, :T], model.sin[:, :T], model.config,
                               qk_gain, layer_window(arch, model.config, i))["output"]
        m = explicit.mlp(block.mlp, rms_norm(x + a))["output"]
        torch.testing.assert_close(traced[f"transformer.h.{i}.output"].double(), x + a + m, **TOL)


@pytest.mark.component("block")
def test_residual_stream_itself_is_never_normalized(model, traced):
    """Pre-norm, not post-norm: block outputs keep the growing scale of the residual stream."""
    from .explicit import rms
    for i, _ in blocks(model):
        out_rms = rms(traced[f"transformer.h.{i}.output"])
        assert (out_rms - 1).abs().max() > 0.05, f"block {i} output has unit RMS, as if normalized"


@pytest.mark.component("block.attention_path")
def test_zero_attention_projection_makes_the_attention_path_the_identity(model, idx, run_traced):
    """With attn.c_proj zeroed, the MLP path starts from the untouched block input."""
    with torch.no_grad():
        for block in model.transformer.h:
            block.attn.c_proj.weight.zero_()
    cache = run_traced(model, idx)
    for i, _ in blocks(model):
        torch.testing.assert_close(cache[f"transformer.h.{i}.mlp.input"].double(),
                                   rms_norm(cache[f"transformer.h.{i}.input"]), **TOL)


@pytest.mark.component("block.mlp_path")
def test_zero_mlp_projection_makes_the_mlp_path_the_identity(model, idx, run_traced):
    """With mlp.c_proj zeroed, a block's output is its input plus the attention output alone."""
    with torch.no_grad():
        for block in model.transformer.h:
            block.mlp.c_proj.weight.zero_()
    cache = run_traced(model, idx)
    for i, _ in blocks(model):
        torch.testing.assert_close(cache[f"transformer.h.{i}.output"],
                                   cache[f"transformer.h.{i}.input"] + cache[f"transformer.h.{i}.attn.output"],
                                   rtol=1e-6, atol=1e-6)
