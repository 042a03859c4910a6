"""Component 17: backout (nanochat 92d63d4): a learned share of the residual stream after block n_layer // 2 is
subtracted from the last block's output before the final norm, removing low-level features from the logits."""

import pytest
import torch

from .explicit import rms_norm

pytestmark = pytest.mark.component("backout.subtraction")


@pytest.mark.parametrize("n_layer", [1, 2, 5], ids=lambda n: f"n_layer={n}")
def test_the_lm_head_sees_norm_of_the_last_output_minus_lambda_times_the_middle_one(make_model, make_config, arch,
                                                                                    idx, run_traced, n_layer):
    """lm_head.input = norm(x_last - backout_lambda * x_mid), x_mid the output of block n_layer // 2."""
    model = make_model(make_config("backout", n_layer=n_layer), live=("backout",))
    with torch.no_grad():
        model.backout_lambda.fill_(0.35)
    cache = run_traced(model, idx)
    mid = arch.backout_layer(n_layer)
    expected = rms_norm(cache[f"transformer.h.{n_layer - 1}.output"].double()
                        - 0.35 * cache[f"transformer.h.{mid}.output"].double())
    torch.testing.assert_close(cache["lm_head.input"].double(), expected, rtol=1e-5, atol=1e-5)


def test_backout_lambda_is_one_learnable_scalar_that_receives_gradient(make_model, make_config, idx):
    """backout_lambda is a single trained scalar: the loss has a nonzero gradient with respect to it."""
    model = make_model(make_config("backout", n_layer=3), live=("backout",))
    assert model.backout_lambda.shape == (1,)
    model(idx, idx.roll(-1, 1)).backward()
    assert model.backout_lambda.grad.abs().item() > 0
