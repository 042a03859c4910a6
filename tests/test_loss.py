"""Component 11: the loss, cross-entropy of the soft-capped float32 logits, ignoring targets of -1."""

import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

pytestmark = pytest.mark.component("loss.cross_entropy")


def explicit_token_losses(logits, targets):
    """-log softmax(logits)[target] per token, in float64, 0 where the target is -1."""
    logp = logits.double().log_softmax(-1)
    safe = targets.clamp(min=0)
    losses = -logp.gather(-1, safe[..., None])[..., 0]
    return torch.where(targets == -1, torch.zeros_like(losses), losses)


@pytest.fixture
def targets(idx):
    return idx.roll(-1, dims=1)


def test_loss_is_the_mean_cross_entropy_of_the_returned_logits(model, idx, targets):
    """model(idx, targets) == mean over tokens of -log softmax(model(idx))[target]."""
    logits = model(idx)
    loss = model(idx, targets)
    assert loss.shape == ()
    torch.testing.assert_close(loss.double(), explicit_token_losses(logits, targets).mean(), rtol=1e-5, atol=1e-6)


def test_sum_reduction_adds_up_the_losses_of_the_valid_targets(model, idx, targets):
    """loss_reduction='sum' is the sum of the per-token losses, ignored (-1) targets contributing 0."""
    masked = targets.clone()
    masked[:, :5] = -1
    expected = explicit_token_losses(model(idx), masked).sum()
    torch.testing.assert_close(model(idx, masked, loss_reduction="sum").double(), expected, rtol=1e-5, atol=1e-5)


def test_none_reduction_gives_one_loss_per_token(model, idx, targets):
    """loss_reduction='none' returns B*T per-token losses, in row-major (b, t) order."""
    B, T = idx.shape
    losses = model(idx, targets, loss_reduction="none")
    assert losses.numel() == B * T
    expected = explicit_token_losses(model(idx), targets)
    torch.testing.assert_close(losses.reshape(B, T).double(), expected, rtol=1e-5, atol=1e-6)


@given(ignored=st.lists(st.booleans(), min_size=16, max_size=16).filter(lambda m: not all(m)))
def test_targets_of_minus_one_contribute_nothing(model, idx, targets, ignored):
    """Positions with target -1 are left out of the mean and get loss 0 with reduction 'none'."""
    mask = torch.tensor(ignored).expand_as(targets)
    masked = targets.masked_fill(mask, -1)
    logits = model(idx)
    per_token = explicit_token_losses(logits, masked)
    torch.testing.assert_close(model(idx, masked).double(), per_token[~mask].mean(), rtol=1e-5, atol=1e-6)
    none = model(idx, masked, loss_reduction="none").reshape(mask.shape)
    assert (none[mask] == 0).all()


def test_ignored_positions_do_not_depend_on_their_logits(model, idx, targets):
    """Changing what an ignored position predicts (its target token) leaves the loss unchanged."""
    masked = targets.clone()
    masked[:, -3:] = -1
    loss = model(idx, masked)
    other = idx.clone()
    other[:, -1] = (other[:, -1] + 1) % model.config.vocab_size  # last input only affects the last (ignored) output
    torch.testing.assert_close(model(other, masked), loss, rtol=0, atol=1e-7)


@given(vocab_size=st.integers(2, 300))
def test_loss_at_init_is_log_vocab_size(make_model, make_config, arch, vocab_size):
    """At init the prediction is (nearly) uniform, so the loss is ln(vocab_size): exactly, to float rounding, when
    the card starts lm_head at zero (every logit 0); within the spread its small init std allows otherwise."""
    model = make_model(make_config(vocab_size=vocab_size), randomize=False)
    idx = torch.randint(0, vocab_size, (2, 8), generator=torch.Generator().manual_seed(0))
    loss = model(idx, idx).item()
    rule = arch.init_rule("lm_head")
    if rule.dist == "zeros":
        assert math.isclose(loss, math.log(vocab_size), rel_tol=1e-6)
    else:
        # logits ~ N(0, s^2) with s = std * sqrt(n_embd) (unit-RMS input); E[loss] - ln V ~ s^2 / 2, and a
        # token's loss differs from ln V by at most 2 * max|logit| <= 2 * 6 s
        s = rule.std_for(vocab_size, model.config.n_embd, model.config.n_embd) * math.sqrt(model.config.n_embd)
        assert s < 0.05, "this check is for a small init std"
        assert abs(loss - math.log(vocab_size)) < 12 * s


def test_loss_is_computed_on_the_returned_logits_even_when_they_saturate(model, idx, targets, run_traced):
    """With huge raw logits the loss is the cross-entropy of the returned (capped) logits, not of the raw ones."""
    with torch.no_grad():
        model.lm_head.weight.mul_(1e4)
    cache = run_traced(model, idx, targets)
    loss = cache["loss"].double()
    torch.testing.assert_close(loss, explicit_token_losses(cache["logits"], targets).mean(), rtol=1e-5, atol=1e-5)
    assert (loss - explicit_token_losses(cache["lm_head.output"], targets).mean()).abs() > 1.0


@pytest.mark.project_only
def test_a_batch_whose_targets_are_all_ignored_has_loss_0_and_zero_gradients(model, idx):
    """When every target is -1 the mean loss is 0 and every gradient is 0, not 0/0 = NaN poisoning the
    weights (nanochat issues 590, 618)."""
    ignored = torch.full_like(idx, -1)
    loss = model(idx, ignored)
    assert loss.item() == 0.0
    loss.backward()
    assert all(torch.isfinite(p.grad).all() and (p.grad == 0).all() for p in model.parameters())
