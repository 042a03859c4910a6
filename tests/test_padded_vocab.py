"""Component 18: a vocabulary padded to a multiple of 64 (nanochat 92d63d4): wte and lm_head get
ceil(V / 64) * 64 rows for efficient matmuls, the logits are sliced back to vocab_size, and the padding rows
never reach a logit or the loss."""

import math

import pytest
import torch

VOCAB = 50  # not a multiple of 64: 14 padding rows


@pytest.fixture
def padded_model(make_model, make_config):
    return make_model(make_config("padded_vocab", vocab_size=VOCAB), live=("padded_vocab",))


@pytest.fixture
def tokens():
    return torch.randint(0, VOCAB, (2, 16), generator=torch.Generator().manual_seed(6))


@pytest.mark.component("padded_vocab.parameters")
@pytest.mark.parametrize("vocab_size", [VOCAB, 64, 65], ids=lambda v: f"vocab_size={v}")
def test_wte_and_lm_head_have_rows_padded_to_the_multiple(make_model, make_config, arch, vocab_size):
    """wte and lm_head hold ceil(V / multiple) * multiple rows, no more (a multiple of 64 gets no padding): the
    parameter count with padding."""
    model = make_model(make_config("padded_vocab", vocab_size=vocab_size), live=("padded_vocab",))
    padded = math.ceil(vocab_size / arch.padded_vocab["multiple"]) * arch.padded_vocab["multiple"]
    assert model.transformer.wte.weight.shape[0] == model.lm_head.weight.shape[0] == padded


@pytest.mark.component("padded_vocab.logits")
def test_logits_are_sliced_back_to_vocab_size(padded_model, tokens, run_traced):
    """The logits are (B, T, vocab_size) and follow the first vocab_size raw outputs of lm_head, column for column
    (the same order at every position: the softcap is increasing, whatever its value)."""
    cache = run_traced(padded_model, tokens)
    assert cache["lm_head.output"].shape == (2, 16, padded_model.lm_head.weight.shape[0])
    assert cache["logits"].shape == (2, 16, VOCAB)
    raw = cache["lm_head.output"][..., :VOCAB]
    in_raw_order = cache["logits"].gather(-1, raw.argsort(-1))  # the logits, sorted by their raw values
    assert (in_raw_order.diff(dim=-1) >= 0).all()
    assert torch.equal(cache["logits"].argmax(-1), raw.argmax(-1))


@pytest.mark.component("padded_vocab.logits")
def test_padding_rows_never_reach_a_logit_or_the_loss(padded_model, tokens):
    """Changing the padding rows of lm_head leaves logits and loss unchanged: the softmax runs over vocab_size
    classes only."""
    logits, loss = padded_model(tokens), padded_model(tokens, tokens.roll(-1, 1))
    with torch.no_grad():
        padded_model.lm_head.weight[VOCAB:] = 1e3
    torch.testing.assert_close(padded_model(tokens), logits, rtol=0, atol=0)
    torch.testing.assert_close(padded_model(tokens, tokens.roll(-1, 1)), loss, rtol=0, atol=0)
    log_probs = logits.double().log_softmax(-1)
    expected = -log_probs.gather(-1, tokens.roll(-1, 1)[..., None]).mean()
    torch.testing.assert_close(loss.double(), expected, rtol=1e-5, atol=1e-6)
