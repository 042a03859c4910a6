"""Component 4: the pre-norm residual block, x = x + attn(norm(x)); x = x + mlp(norm(x))."""

import pytest
import torch

from .explicit import rms_norm

TOL = dict(rtol=1e-4, atol=1e-5)


def blocks(model):
    return list(enumerate(model.transformer.h))


@pytest.mark.component("block.attention_path")
def test_attention_path_adds_attention_of_the_normalized_stream(model, traced):
    """attn sees norm(x), and x + attn(norm(x)) is what the MLP path starts from (the attention's own output, as
    observed: what attention computes is component 5's)."""
    for i, block in blocks(model):
        x = traced[f"transformer.h.{i}.input"].double()
        torch.testing.assert_close(traced[f"transformer.h.{i}.attn.input"].double(), rms_norm(x), **TOL)
        a = traced[f"transformer.h.{i}.attn.output"].double()
        torch.testing.assert_close(traced[f"transformer.h.{i}.mlp.input"].double(), rms_norm(x + a), **TOL)


@pytest.mark.component("block.mlp_path")
def test_mlp_path_adds_mlp_of_the_normalized_stream(model, traced):
    """The MLP sees norm(x + attn(norm(x))), and the block returns that sum plus the MLP's output."""
    for i, block in blocks(model):
        mid = traced[f"transformer.h.{i}.input"].double() + traced[f"transformer.h.{i}.attn.output"].double()
        mlp_in = traced[f"transformer.h.{i}.mlp.input"]
        torch.testing.assert_close(mlp_in.double(), rms_norm(mid), **TOL)
        m = traced[f"transformer.h.{i}.mlp.output"].double()
        torch.testing.assert_close(traced[f"transformer.h.{i}.output"].double(), mid + m, **TOL)


@pytest.mark.component("block")
def test_block_equals_the_pre_norm_formula_with_its_own_mlp(model, traced):
    """block(x) == x + a + mlp(norm(x + a)), a the block's attention output: the block's own MLP, called on the
    norm computed here from the observed stream, gives what the block added."""
    for i, block in blocks(model):
        x = traced[f"transformer.h.{i}.input"].double()
        a = traced[f"transformer.h.{i}.attn.output"].double()
        with torch.no_grad():
            m = block.mlp(rms_norm(x + a).to(traced[f"transformer.h.{i}.mlp.input"].dtype)).double()
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
