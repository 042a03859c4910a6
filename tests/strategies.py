"""Hypothesis strategies shared by the tests: configs, token batches, positions, scales."""

from hypothesis import strategies as st


@st.composite
def config_kwargs(draw, max_layers=2, max_heads=4, max_head_dim=16, max_vocab=96, max_seq=16, gqa=True):
    """GPTConfig keyword arguments that a valid model accepts, grouped-query attention included."""
    n_head = draw(st.sampled_from([h for h in (1, 2, 3, 4, 6, 8) if h <= max_heads]))
    n_kv_head = draw(st.sampled_from([k for k in range(1, n_head + 1) if n_head % k == 0])) if gqa else n_head
    head_dim = draw(st.sampled_from([d for d in (2, 4, 6, 8, 16) if d <= max_head_dim]))
    return dict(
        sequence_len=draw(st.integers(1, max_seq)),
        vocab_size=draw(st.integers(2, max_vocab)),
        n_layer=draw(st.integers(1, max_layers)),
        n_head=n_head,
        n_kv_head=n_kv_head,
        n_embd=n_head * head_dim,
    )


positions = st.integers(0, 2000)
positive_scales = st.floats(1e-3, 1e3, allow_nan=False, allow_infinity=False)
