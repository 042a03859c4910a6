"""Component 12: gradient flow, from the zero-initialised output layers outwards.

At init lm_head and every c_proj are zero. So the first backward reaches lm_head alone; after one
optimizer step the gradient also reaches wte and every c_proj (through the residual stream); after a
second step every parameter has a nonzero gradient.
"""

import pytest
import torch
from torch.autograd import gradcheck

from tests.explicit import rope_tables

pytestmark = pytest.mark.component("gradients.backward")


def nonzero_grads(model):
    return {name for name, p in model.named_parameters() if p.grad is not None and p.grad.abs().max() > 0}


def category(name):
    if name == "lm_head.weight" or name == "transformer.wte.weight":
        return name.split(".")[-2]
    return name.split(".")[-3] + "." + name.split(".")[-2]  # e.g. attn.c_q


@pytest.fixture
def fresh(make_model, config):
    """The tiny model as init_weights leaves it, with an AdamW optimizer and a batch."""
    model = make_model(config, randomize=False)
    idx = torch.randint(0, config.vocab_size, (2, 12), generator=torch.Generator().manual_seed(0))
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    return model, idx, optimizer


def step(model, idx, optimizer):
    optimizer.zero_grad(set_to_none=True)
    model(idx, idx.roll(-1, 1)).backward()
    grads = nonzero_grads(model)
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
    optimizer.step()
    return grads


def test_at_init_only_the_lm_head_gets_a_gradient(fresh):
    """The first backward gives lm_head a nonzero gradient and every other parameter exactly zero."""
    model, idx, optimizer = fresh
    assert step(model, idx, optimizer) == {"lm_head.weight"}


def test_after_one_step_the_gradient_reaches_wte_and_every_output_projection(fresh):
    """Once lm_head is nonzero, gradient flows down the residual stream to wte and every c_proj, not yet further."""
    model, idx, optimizer = fresh
    step(model, idx, optimizer)
    grads = step(model, idx, optimizer)
    L = model.config.n_layer
    expected = {"lm_head.weight", "transformer.wte.weight"} | {
        f"transformer.h.{i}.{m}.c_proj.weight" for i in range(L) for m in ("attn", "mlp")}
    assert grads == expected


def test_after_two_steps_every_parameter_gets_a_finite_nonzero_gradient(fresh):
    """With the c_proj weights moved off zero, q, k, v and c_fc receive gradient too: nothing is dead."""
    model, idx, optimizer = fresh
    step(model, idx, optimizer)
    step(model, idx, optimizer)
    grads = step(model, idx, optimizer)
    assert grads == {name for name, _ in model.named_parameters()}


def test_norm_gradient_matches_finite_differences(impl):
    """torch.autograd.gradcheck of norm in float64."""
    x = torch.randn(3, 2, 8, dtype=torch.float64, requires_grad=True)
    assert gradcheck(impl.norm, (x,))


def test_rope_gradient_matches_finite_differences(impl):
    """torch.autograd.gradcheck of apply_rotary_emb in float64 (RoPE is linear in x)."""
    cos, sin = rope_tables(range(5), 8)
    x = torch.randn(2, 5, 3, 8, dtype=torch.float64, requires_grad=True)
    assert gradcheck(lambda t: impl.apply_rotary_emb(t, cos, sin), (x,))


@pytest.mark.component("attention.sdpa")
def test_attention_gradient_matches_finite_differences(impl):
    """gradcheck of the whole float64 model's logits with respect to c_q, c_k and c_v of block 0."""
    config = impl.GPTConfig(sequence_len=4, vocab_size=8, n_layer=1, n_head=2, n_kv_head=1, n_embd=8)
    model = impl.GPT(config).double()
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn_like(p) / p.size(-1) ** 0.5)
    idx = torch.tensor([[1, 5, 2, 7]])
    attn = model.transformer.h[0].attn
    names = ["c_q", "c_k", "c_v"]
    weights = tuple(getattr(attn, n).weight.detach().clone().requires_grad_(True) for n in names)

    def logits(*ws):
        params = {f"transformer.h.0.attn.{n}.weight": w for n, w in zip(names, ws)}
        return torch.func.functional_call(model, params, (idx,))

    assert logits(*weights).dtype == torch.float64
    assert gradcheck(logits, weights)
