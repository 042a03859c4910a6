"""Component 12: gradient flow, from the zero-initialised output layers outwards.

Which parameters of the seed architecture (wte, the blocks' projections, lm_head) get a gradient, and
when, follows from which of them the card's [init] rules start at zero: a zero lm_head blocks every
gradient but its own; a zero c_proj blocks its block's q, k, v and c_fc. Step by step, every zero
layer that received a gradient moves off zero and opens the path behind it. (The gradients of the
modern components' parameters are checked by their own tests.)
"""

import pytest
import torch
from torch.autograd import gradcheck

from .conftest import cast_parameters
from .explicit import rope_tables
from .strategies import min_width

pytestmark = pytest.mark.component("gradients.backward")

SEED_GROUPS = ("wte", "lm_head", "c_q", "c_k", "c_v", "attn.c_proj", "c_fc", "mlp.c_proj")


def group_of(name):
    """The card's init key of a seed-architecture parameter name, or None for the modern components'."""
    parts = name.split(".")
    if name in ("transformer.wte.weight", "lm_head.weight"):
        return parts[-2]
    if len(parts) == 6 and parts[:2] == ["transformer", "h"] and parts[-1] == "weight":
        if parts[4] == "c_proj":
            return f"{parts[3]}.c_proj"
        return parts[4] if parts[4] in ("c_q", "c_k", "c_v", "c_fc") else None
    return None


def seed_parameters(model):
    return {name: p for name, p in model.named_parameters() if group_of(name)}


def nonzero_grads(model):
    return {name for name, p in seed_parameters(model).items() if p.grad is not None and p.grad.abs().max() > 0}


def expected_flow(card, names, steps):
    """The sets of parameter names with a nonzero gradient at steps 0, 1, ..., derived from the card: lm_head
    always; wte and every c_proj once lm_head is nonzero; a block's q, k, v and c_fc once its c_proj is too."""
    nonzero = {n for n in names if card.init_rule(group_of(n)).dist != "zeros"}
    flows = []
    for _ in range(steps):
        grads = {"lm_head.weight"}
        if "lm_head.weight" in nonzero:
            grads |= {n for n in names if group_of(n) in ("wte", "attn.c_proj", "mlp.c_proj")}
            for n in names:
                block = n.rsplit(".", 3)[0]  # transformer.h.i
                if group_of(n) in ("c_q", "c_k", "c_v") and f"{block}.attn.c_proj.weight" in nonzero:
                    grads.add(n)
                if group_of(n) == "c_fc" and f"{block}.mlp.c_proj.weight" in nonzero:
                    grads.add(n)
        flows.append(grads)
        nonzero |= grads  # an optimizer step moves every parameter that had a gradient
    return flows


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


def test_seed_parameter_groups_are_known():
    """Every group the gradient flow reasons about maps back to a parameter name of the contract."""
    assert group_of("transformer.h.3.attn.c_k.weight") == "c_k"
    assert group_of("transformer.h.0.mlp.c_proj.weight") == "mlp.c_proj"
    assert group_of("transformer.h.0.attn.ve_gate.weight") is None and group_of("resid_lambdas") is None


def test_at_init_only_what_the_zero_layers_allow_gets_a_gradient(fresh, arch):
    """The first backward reaches exactly the parameters the card's zero-initialised layers leave open (lm_head
    alone in the seed architecture, whose lm_head starts at zero)."""
    model, idx, optimizer = fresh
    assert step(model, idx, optimizer) == expected_flow(arch, set(seed_parameters(model)), 1)[0]


def test_each_step_opens_the_next_layer_of_the_gradient_flow(fresh, arch):
    """Once a zero layer has moved, gradient flows behind it: the first three steps reach exactly the
    predicted sets (seed: lm_head; then wte and every c_proj; then q, k, v and c_fc too)."""
    model, idx, optimizer = fresh
    expected = expected_flow(arch, set(seed_parameters(model)), 3)
    assert [step(model, idx, optimizer) for _ in range(3)] == expected


def test_after_enough_steps_every_parameter_gets_a_finite_nonzero_gradient(fresh, arch):
    """Nothing is dead: after three steps every parameter of the model, the modern components' included,
    receives a finite nonzero gradient (the card's declared extras, held neutral, aside)."""
    model, idx, optimizer = fresh
    for _ in range(3):
        step(model, idx, optimizer)
    optimizer.zero_grad(set_to_none=True)
    model(idx, idx.roll(-1, 1)).backward()
    extras = arch.extra_parameters()
    dead = [name for name, p in model.named_parameters()
            if name not in extras and (p.grad is None or not p.grad.abs().max() > 0)]
    assert dead == []


def test_norm_gradient_matches_finite_differences(impl):
    """torch.autograd.gradcheck of norm in float64."""
    x = torch.randn(3, 2, 8, dtype=torch.float64, requires_grad=True)
    assert gradcheck(impl.norm, (x,))


def test_rope_gradient_matches_finite_differences(impl, rope_base):
    """torch.autograd.gradcheck of apply_rotary_emb in float64 (RoPE is linear in x)."""
    cos, sin = rope_tables(range(5), 8, rope_base)
    x = torch.randn(2, 5, 3, 8, dtype=torch.float64, requires_grad=True)
    assert gradcheck(lambda t: impl.apply_rotary_emb(t, cos, sin), (x,))


@pytest.mark.component("attention.sdpa")
def test_attention_gradient_matches_finite_differences(make_model, make_config, arch):
    """The logits' gradient with respect to c_q, c_k and c_v of block 0 matches finite differences: gradcheck
    where a float64 model computes in float64, else directional differences at a float32-justified tolerance
    (an implementation that computes in its own compute dtype, as nanochat 92d63d4 does)."""
    width = max(8, -(-min_width(arch) // 4) * 4)  # two heads of even width, wide enough for the gates
    model = make_model(make_config(sequence_len=4, vocab_size=8, n_layer=1, n_head=2, n_kv_head=1, n_embd=width))
    cast_parameters(model, torch.float64)
    idx = torch.tensor([[1, 5, 2, 7]])
    attn = model.transformer.h[0].attn
    names = ["c_q", "c_k", "c_v"]
    weights = tuple(getattr(attn, n).weight.detach().clone().requires_grad_(True) for n in names)

    def logits(*ws):
        params = {f"transformer.h.0.attn.{n}.weight": w for n, w in zip(names, ws)}
        return torch.func.functional_call(model, params, (idx,))

    if logits(*weights).dtype == torch.float64:
        assert gradcheck(logits, weights)
        return
    # float32 arithmetic: compare d/dh f(w + h u) along random unit directions u with a central difference.
    # Its error is h^2/6 |f^(3)| + eps32 |f| / h; with |f| <= the softcap and h = 1e-2 both terms are near
    # 1e-4 of the derivative's scale, so 2% of it (plus 1e-3 absolute) is a safe, still sharp tolerance.
    gen = torch.Generator().manual_seed(0)
    probe = torch.randn(logits(*weights).shape, generator=gen, dtype=torch.float64)

    def f(*ws):  # one scalar of every logit
        return (logits(*ws).double() * probe).sum()

    analytic = torch.autograd.grad(f(*weights), weights)
    h = 1e-2
    for _ in range(4):
        direction = [torch.randn(w.shape, generator=gen, dtype=torch.float64) for w in weights]
        length = sum(u.pow(2).sum() for u in direction).sqrt()
        direction = [u / length for u in direction]  # a unit step h in weight space
        with torch.no_grad():
            plus = f(*(w + h * u for w, u in zip(weights, direction)))
            minus = f(*(w - h * u for w, u in zip(weights, direction)))
        numeric = (plus - minus) / (2 * h)
        along = sum((g * u).sum() for g, u in zip(analytic, direction))
        assert abs(numeric - along) <= 0.02 * abs(along) + 1e-3, (float(numeric), float(along))
