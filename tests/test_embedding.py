"""Component 1: token embeddings (wte), an untied lookup table followed by RMSNorm."""

import pytest
import torch

from .explicit import rms, rms_norm

pytestmark = pytest.mark.component("embedding.wte")


def test_wte_is_a_vocab_size_by_n_embd_embedding_table(model, config, arch):
    """transformer.wte is an nn.Embedding with one row of n_embd numbers per token id (rows padded as the card says)."""
    wte = model.transformer.wte
    assert isinstance(wte, torch.nn.Embedding)
    padded = arch.padded_vocab_size(config.vocab_size, arch.active("padded_vocab", config))
    assert tuple(wte.weight.shape) == (padded, config.n_embd)


def test_embedding_output_rows_are_rows_of_wte(model, traced):
    """The embedding of token id t is row t of wte.weight, shape (B, T, n_embd)."""
    idx, emb = traced["idx"], traced["transformer.wte.output"]
    assert emb.shape == (*idx.shape, model.config.n_embd)
    torch.testing.assert_close(emb, model.transformer.wte.weight.detach()[idx], rtol=0, atol=0)


def test_same_token_gets_the_same_vector_at_every_position(make_model, config, run_traced):
    """Embeddings carry no position: a repeated token gives identical rows before any attention."""
    model = make_model(config)
    idx = torch.full((1, config.sequence_len), 7)
    cache = run_traced(model, idx)
    for name in ("transformer.wte.output", "transformer.h.0.input"):
        rows = cache[name][0]
        torch.testing.assert_close(rows, rows[:1].expand_as(rows), rtol=0, atol=0)


@pytest.mark.component("rmsnorm.after_embedding")
def test_residual_stream_entering_block_0_is_the_normalized_embedding(traced):
    """Block 0 receives norm(wte[idx]): every position has unit RMS."""
    x0 = traced["transformer.h.0.input"]
    torch.testing.assert_close(x0.double(), rms_norm(traced["transformer.wte.output"]), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(rms(x0), torch.ones(x0.shape[:-1], dtype=torch.float64), rtol=1e-5, atol=1e-5)


def test_embedding_weights_start_as_the_card_says(make_model, make_config, arch):
    """init_weights draws wte from the card's normal distribution (N(0, 1) in the seed architecture), unlike the
    linear layers' 1/sqrt(fan_in)."""
    rule = arch.init_rule("wte")
    assert rule.dist == "normal"
    model = make_model(make_config(vocab_size=512, n_embd=64), randomize=False)
    w = model.transformer.wte.weight.detach().double()
    std = rule.std_for(*w.shape, 64)
    assert abs(w.mean().item()) < 0.02 * std  # 32768 draws: the mean's standard error is std/181
    assert abs(w.std().item() / std - 1.0) < 0.02


def test_a_float32_model_computes_in_float32_on_the_cpu(traced):
    """Every activation of a float32 model on the CPU is float32, the embedding's included: a table cast to bfloat16
    in the wrong place breaks the CPU matmuls (nanochat commit 306bc38)."""
    wrong = {name: t.dtype for name, t in traced.items() if t.is_floating_point() and t.dtype != torch.float32}
    assert wrong == {}
