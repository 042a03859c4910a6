"""Component 3: the stack of n_layer blocks, each feeding the next through the residual stream."""

import pytest
import torch

from .explicit import rms_norm

pytestmark = pytest.mark.component("block_stack.layers")


@pytest.mark.parametrize("n_layer", [1, 3, 5])
def test_model_holds_n_layer_blocks(make_model, make_config, n_layer):
    """transformer.h is a ModuleList of exactly n_layer blocks, each with attn and mlp."""
    model = make_model(make_config(n_layer=n_layer))
    assert isinstance(model.transformer.h, torch.nn.ModuleList)
    assert len(model.transformer.h) == n_layer
    assert all(hasattr(block, "attn") and hasattr(block, "mlp") for block in model.transformer.h)


def test_blocks_run_in_order_each_with_its_own_layer_index(make_model, make_config, new_cache, caches):
    """One forward pass visits block 0, 1, ..., n_layer-1 once each, every block under its own index."""
    config = make_config(n_layer=4)
    model = make_model(config)
    cache = new_cache(config, batch_size=1, seq_len=8)
    with caches.recording(cache) as layers:
        model(torch.randint(0, config.vocab_size, (1, 5)), kv_cache=cache)
    assert layers == [0, 1, 2, 3]


def test_each_block_feeds_the_next(model, traced):
    """The output of block i is the input of block i+1; the last one's, normalized, feeds the LM head."""
    L = model.config.n_layer
    for i in range(L - 1):
        torch.testing.assert_close(traced[f"transformer.h.{i + 1}.input"], traced[f"transformer.h.{i}.output"],
                                   rtol=0, atol=0)
    torch.testing.assert_close(traced["lm_head.input"].double(), rms_norm(traced[f"transformer.h.{L - 1}.output"]),
                               rtol=1e-5, atol=1e-5)


def test_residual_stream_is_the_embedding_plus_every_branch_output(model, traced):
    """x_L = x_0 + sum over blocks of attn and MLP outputs: nothing is dropped or rescaled on the way."""
    L = model.config.n_layer
    total = traced["transformer.h.0.input"].double()
    for i in range(L):
        total = total + traced[f"transformer.h.{i}.attn.output"].double() + traced[f"transformer.h.{i}.mlp.output"].double()
    torch.testing.assert_close(traced[f"transformer.h.{L - 1}.output"].double(), total, rtol=1e-5, atol=1e-5)


def test_every_block_changes_the_stream(traced, model):
    """With trained-like weights every block contributes: no block is skipped or left dead."""
    for i in range(model.config.n_layer):
        delta = traced[f"transformer.h.{i}.output"] - traced[f"transformer.h.{i}.input"]
        assert delta.abs().max() > 1e-3


@pytest.mark.component("block")
def test_at_init_every_block_is_the_identity(make_model, config, idx, run_traced, arch):
    """Zero-initialised c_proj weights make every residual branch, hence every block, the identity at init."""
    assert arch.init_rule("attn.c_proj").dist == arch.init_rule("mlp.c_proj").dist == "zeros"
    model = make_model(config, randomize=False)
    cache = run_traced(model, idx)
    for i in range(config.n_layer):
        torch.testing.assert_close(cache[f"transformer.h.{i}.output"], cache[f"transformer.h.{i}.input"],
                                   rtol=0, atol=0)
