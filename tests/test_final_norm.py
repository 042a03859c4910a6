"""Component 9: the final RMSNorm, between the last block and the LM head."""

import pytest
import torch

from .explicit import rms, rms_norm

pytestmark = pytest.mark.component("final_norm.before_lm_head")


def test_lm_head_input_has_unit_rms_at_every_position(traced):
    """Whatever scale the residual stream reaches, the LM head sees unit-RMS vectors."""
    x = traced["lm_head.input"]
    torch.testing.assert_close(rms(x), torch.ones(x.shape[:-1], dtype=torch.float64), rtol=1e-5, atol=1e-5)


def test_lm_head_input_is_the_normalized_last_block_output(traced, model):
    """lm_head.input == norm(output of block n_layer-1): the final norm sits after the whole stack."""
    last = traced[f"transformer.h.{model.config.n_layer - 1}.output"]
    assert (rms(last) - 1).abs().max() > 0.05  # the stream itself is not unit RMS
    torch.testing.assert_close(traced["lm_head.input"].double(), rms_norm(last), rtol=1e-5, atol=1e-5)


def test_scaling_the_residual_stream_does_not_change_the_logits(model, idx, run_traced):
    """Because of the final norm, multiplying the last block's output by 7 leaves the logits as they were."""
    before = run_traced(model, idx)["logits"]
    last = model.transformer.h[model.config.n_layer - 1]
    handle = last.register_forward_hook(lambda module, args, output: output * 7.0)
    try:
        after = run_traced(model, idx)["logits"]
    finally:
        handle.remove()
    torch.testing.assert_close(after, before, rtol=1e-5, atol=1e-5)
