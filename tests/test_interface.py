"""The contract's interface, checked once per point: where an implementation differs (its GPTConfig fields, its
forward's arguments and return values, its KV cache's constructor, the module names the suite reads), one test
here fails naming the difference, and the tests that need that point say they cannot observe it."""

import pytest
import torch

from nanochat_verify.contract import interface
from nanochat_verify.contract.cache import NoCache, cache_class

from .conftest import TINY, forward_problem

pytestmark = pytest.mark.component("contract.interface")


def test_the_config_takes_the_contracts_fields(impl):
    """GPTConfig(sequence_len, vocab_size, n_layer, n_head, n_kv_head, n_embd) can be built with those names."""
    assert interface.config_difference(impl.GPTConfig, TINY) is None


def test_forward_takes_idx_targets_kv_cache_and_loss_reduction(impl):
    """forward(idx, targets=None, kv_cache=None, loss_reduction='mean'): the contract's arguments, in that order."""
    model = impl.GPT(impl.GPTConfig(**TINY))
    assert interface.forward_difference(model) is None


def test_forward_returns_the_logits_and_given_targets_a_scalar_loss(impl):
    """forward(idx) returns (B, T, vocab_size) logits, nothing else; forward(idx, targets) a scalar loss."""
    model = impl.GPT(impl.GPTConfig(**TINY))
    model.init_weights()
    idx = torch.randint(0, TINY["vocab_size"], (2, TINY["sequence_len"]), generator=torch.Generator().manual_seed(0))
    shape = (2, TINY["sequence_len"], TINY["vocab_size"])
    try:
        problem = interface.returned_logits(model(idx), shape)
    except interface.InterfaceDiffers as e:
        problem = e.args[0]
    assert problem is None
    loss = model(idx, targets=idx)
    assert torch.is_tensor(loss) and loss.ndim == 0, f"forward(idx, targets) returned {type(loss).__name__}"


def test_the_model_has_the_modules_the_contract_and_the_card_name(impl, arch):
    """transformer.wte, transformer.h[i].attn.c_q/c_k/c_v/c_proj, .mlp.c_fc/c_proj, lm_head, the cos/sin buffers, and
    the parameters of every component the card declares always on (a fork that removed one declares it absent)."""
    missing = interface.missing_modules(impl.GPT(impl.GPTConfig(**TINY)), arch)
    assert missing == [], (f"the model has no {', '.join(missing)}: renamed, or removed (then say so in the card: "
                           f"[<component>] presence = \"absent\")")


def test_the_kv_cache_is_built_with_the_contracts_sizes(impl):
    """The implementation's KV cache is KVCache(batch_size, num_heads, seq_len, head_dim, num_layers)."""
    try:
        cls = cache_class(impl)
    except NoCache as e:
        pytest.fail(str(e))
    assert interface.cache_difference(cls) is None


def test_a_float32_model_runs_a_forward_on_the_cpu(impl, arch):
    """GPT(GPTConfig(...)), init_weights() and a forward of float32 weights run on the CPU (nanochat 3a5e0bc cast
    wte to bfloat16 in __init__, so every float32 CPU forward failed: fixed in 306bc38)."""
    assert forward_problem(impl, arch) is None


@pytest.mark.parametrize("name", ["norm", "apply_rotary_emb"])
def test_the_module_defines_the_contracts_functions(impl, name):
    """The implementation's module defines norm and apply_rotary_emb, the functions the RMSNorm and RoPE tests call
    directly (a fork with RMSNorm modules instead is still verified through its forward)."""
    assert callable(getattr(impl, name, None)), f"the implementation's module defines no {name}"
