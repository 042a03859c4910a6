"""Hypothesis strategies shared by the tests: the config space, token batches, positions, scales.

The config space (issue: the suite beyond one tiny config): n_head from 1 to 12 with every divisor as
n_kv_head (MHA, GQA 2, 3, 4, 6, MQA), even head_dim from 8 to 64, 1 to 4 layers, sequences of 1 to
sequence_len tokens. The width is bounded (n_embd <= MAX_WIDTH) so that each drawn model costs
milliseconds; the widest heads and the largest ratios are still in reach (1 x 64, 12 x 8, 4 x 64).
"""

from hypothesis import strategies as st

MAX_WIDTH = 256
HEADS = tuple(range(1, 13))
HEAD_DIMS = tuple(range(8, 65, 2))
# the grouped-query ratios public code got wrong (real-bugs.md 3, 10, 11): GQA mapping tests run each of these
GQA_SHAPES = ((4, 2), (6, 2), (6, 3), (8, 2), (12, 4), (12, 3), (12, 6), (6, 1), (1, 1), (12, 12))


def gqa_id(shape):
    n_head, n_kv_head = shape
    kind = "MHA" if n_head == n_kv_head else "MQA" if n_kv_head == 1 else f"GQA {n_head // n_kv_head}"
    return f"{n_head}:{n_kv_head} {kind}"


def min_width(card):
    """The narrowest n_embd the card's always-on components accept (the smear gate reads 24 channels)."""
    widths = [1]
    if card is not None and card.always("smear"):
        widths.append(card.smear["channels"])
    if card is not None and card.always("value_embeddings"):
        widths.append(card.value_embeddings["gate_channels"])
    return max(widths)


@st.composite
def config_kwargs(draw, card=None, max_layers=2, max_heads=12, max_width=MAX_WIDTH, max_vocab=96, max_seq=16,
                  gqa=True, head_dims=HEAD_DIMS, min_embd=1):
    """GPTConfig keyword arguments that a valid model accepts, grouped-query attention included."""
    lo = max(min_width(card), min_embd)
    n_head = draw(st.sampled_from([h for h in HEADS if h <= max_heads and h * head_dims[0] <= max_width
                                   and lo <= h * head_dims[-1]]))
    dims = [d for d in head_dims if lo <= n_head * d <= max_width]
    head_dim = draw(st.sampled_from(dims))
    n_kv_head = draw(st.sampled_from([k for k in range(1, n_head + 1) if n_head % k == 0])) if gqa else n_head
    return dict(
        sequence_len=draw(st.integers(card.min_train_len if card else 1, max(max_seq, 2))),
        vocab_size=draw(st.integers(2, max_vocab)),
        n_layer=draw(st.integers(1, max_layers)),
        n_head=n_head,
        n_kv_head=n_kv_head,
        n_embd=n_head * head_dim,
    )


def sequence_lengths(card, sequence_len):
    """T for a forward without a KV cache: 1 (or the card's shortest) to sequence_len."""
    return st.integers(min(card.min_train_len, sequence_len), sequence_len) if card else st.integers(1, sequence_len)


positions = st.integers(0, 2000)
positive_scales = st.floats(1e-3, 1e3, allow_nan=False, allow_infinity=False)
