"""Component 15: residual and x0 lambdas (modded-nanogpt; nanochat 92d63d4). Before block i the residual stream
becomes resid_lambdas[i] * x + x0_lambdas[i] * x0, x0 being the normalized (and smeared) token embedding.
Their init schedules are in tests/test_init.py (cases resid_lambdas, x0_lambdas)."""

import pytest
import torch

from .explicit import rms_norm

pytestmark = pytest.mark.component("lambdas.application")


@pytest.fixture
def lambda_model(make_model, make_config):
    """A 3-layer model with its lambdas live and set to distinct values, far from neutral."""
    model = make_model(make_config("lambdas", n_layer=3), live=("lambdas",))
    with torch.no_grad():
        model.resid_lambdas.copy_(torch.tensor([0.5, 1.7, -0.8]))
        model.x0_lambdas.copy_(torch.tensor([0.3, -1.1, 2.0]))
    return model


def test_lambdas_are_one_pair_of_scalars_per_layer(lambda_model):
    """resid_lambdas and x0_lambdas hold n_layer learnable scalars each."""
    L = lambda_model.config.n_layer
    assert lambda_model.resid_lambdas.shape == lambda_model.x0_lambdas.shape == (L,)
    assert lambda_model.resid_lambdas.requires_grad and lambda_model.x0_lambdas.requires_grad


def test_each_block_receives_resid_lambda_times_x_plus_x0_lambda_times_x0(lambda_model, idx, run_traced):
    """Block i's input is resid_lambdas[i] * (block i-1's output, or x0) + x0_lambdas[i] * x0, with
    x0 = norm(wte[idx]): applied before every block, with that block's own pair."""
    cache = run_traced(lambda_model, idx)
    x0 = rms_norm(cache["transformer.wte.output"])
    stream = x0
    for i in range(lambda_model.config.n_layer):
        r, a = lambda_model.resid_lambdas[i].item(), lambda_model.x0_lambdas[i].item()
        torch.testing.assert_close(cache[f"transformer.h.{i}.input"].double(), r * stream + a * x0,
                                   rtol=1e-5, atol=1e-5, msg=f"block {i}")
        stream = cache[f"transformer.h.{i}.output"].double()


def test_lambdas_receive_gradient(lambda_model, idx):
    """Both lambdas of every layer are trained: the loss has a nonzero gradient with respect to each."""
    lambda_model(idx, idx.roll(-1, 1)).backward()
    assert (lambda_model.resid_lambdas.grad.abs() > 0).all()
    assert (lambda_model.x0_lambdas.grad.abs() > 0).all()
