"""Every tensor the model makes for itself (the rotary tables in init_weights, the masks in forward, the KV
cache) is made on the device of the weights and the input, never on the default (CPU) one.

On a machine without a GPU this is checked on the meta device: a model whose weights, tables and input are
meta tensors must run without touching a CPU tensor, so a tensor made without `device=` shows at once. On
a CUDA machine the same checks run on the GPU.
"""

import pytest
import torch

from .conftest import contract_model

from nanochat_verify.card import FEATURES

DEVICES = ["meta"] + (["cuda"] if torch.cuda.is_available() else [])


def on(device, make_model, config, features=()):
    """The model for `config`, on `device`: built there (meta) or moved there (cuda), then init_weights() there."""
    if device == "meta":
        with torch.device("meta"):
            model = contract_model(make_model.impl.GPT(config))
    else:
        model = make_model(config, live=features).to(device)
    model.init_weights()
    return model


@pytest.fixture
def make_on(impl, make_model):
    make_model.impl = impl
    return make_model


def tokens(config, T, device):
    return torch.randint(0, config.vocab_size, (2, T), generator=torch.Generator().manual_seed(0)).to(device)


@pytest.mark.component("rope.rotary")
@pytest.mark.parametrize("device", DEVICES)
def test_init_weights_makes_the_rotary_tables_on_the_weights_device(make_on, config, arch, device):
    """After init_weights() on a model on `device`, cos and sin are there too, in the card's dtype (a table rebuilt
    without device= lands on the CPU, and the next forward mixes devices)."""
    model = on(device, make_on, config)
    assert model.cos.device.type == model.sin.device.type == device
    assert model.cos.dtype == arch.table_dtype(make_on.impl)


# inference only: for a flash-style cache this needs CUDA, and a skip there must not leave the attention row unverified
@pytest.mark.component("inference.kv_cache")
@pytest.mark.parametrize("device", DEVICES)
def test_the_kv_cache_and_a_chunk_after_a_prefix_stay_on_the_inputs_device(make_on, make_config, caches, arch, device):
    """Decoding through the implementation's cache on `device`: the cached keys and values, the storage a growing
    cache moves to, and the chunk's mask are made there."""
    if device == "meta" and caches.style == "flash":
        pytest.skip("needs a CUDA device: a flash-style cache keeps its position in a tensor read with .item(), "
                    "which a meta tensor does not hold")
    config = make_config()
    model = on(device, make_on, config)
    # a cache that must grow (where the card says caches grow): its new storage is made on the device too
    cache = caches.for_config(config, 2, 6 if arch.kv_cache_grows else 12, device=device)
    idx = tokens(config, 12, device)
    with torch.inference_mode():  # as an engine decodes (the growth itself is tests/test_kv_cache.py's)
        model(idx[:, :5], kv_cache=cache)
        assert model(idx[:, 5:9], kv_cache=cache).device.type == device
        assert model(idx[:, 9:12], kv_cache=cache).device.type == device
    keys, values = caches.tensors(cache)
    assert keys.device.type == values.device.type == device


@pytest.mark.component("sliding_window.keys")
@pytest.mark.parametrize("device", DEVICES)
def test_sliding_window_masks_are_made_on_the_inputs_device(make_on, make_config, device):
    """Past the short window (an explicit window mask), a forward runs on `device` alone."""
    config = make_config("sliding_window", sequence_len=512, n_layer=2)
    model = on(device, make_on, config, features=("sliding_window",))
    assert model(tokens(config, 140, device)).device.type == device


@pytest.mark.component("gradients.backward")
@pytest.mark.parametrize("device", DEVICES)
def test_every_parameter_and_buffer_of_every_component_stays_on_the_device(make_on, make_config, arch, device):
    """With every modern component the card has, init_weights() and a forward and backward leave every parameter,
    buffer and gradient on `device`."""
    config = make_config(*[f for f in FEATURES if arch.has(f)], n_layer=2)
    model = on(device, make_on, config, features=FEATURES)
    idx = tokens(config, 8, device)
    model(idx, idx).backward()
    misplaced = [name for name, t in [*model.named_parameters(), *model.named_buffers()] if t.device.type != device]
    misplaced += [name for name, p in model.named_parameters() if p.grad is not None and p.grad.device.type != device]
    assert misplaced == []
