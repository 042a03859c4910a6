"""
Inference support: the key/value cache for incremental decoding.

Each attention layer hands the cache its new keys and values, shape (B, H_kv, T_new, D), and gets back
everything cached for that layer so far, (B, H_kv, T_prefix + T_new, D). The position advances once
the last layer has inserted, so every layer of one forward pass sees the same prefix length.
"""

import torch


class KVCache:

    def __init__(self, batch_size, num_heads, seq_len, head_dim, num_layers):
        sizes = dict(batch_size=batch_size, num_heads=num_heads, seq_len=seq_len, head_dim=head_dim,
                     num_layers=num_layers)
        for name, value in sizes.items():
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ValueError(f"KVCache {name} must be a positive integer, got {value!r}")
        self.batch_size, self.num_heads, self.head_dim, self.num_layers = batch_size, num_heads, head_dim, num_layers
        self.seq_len = seq_len  # initial capacity in positions; grows on demand
        self.kv_cache = None  # (num_layers, 2, B, H_kv, capacity, D), allocated on first insert
        self.pos = 0
        self.prev_embedding = None  # the smear's previous position, for the next chunk

    def reset(self):
        self.pos = 0
        self.prev_embedding = None

    def get_pos(self):
        return self.pos

    @property
    def nbytes(self):
        return 0 if self.kv_cache is None else self.kv_cache.nbytes

    def insert_kv(self, layer_idx, k, v):
        expected = (self.batch_size, self.num_heads, k.size(2) if k.ndim == 4 else -1, self.head_dim)
        if k.ndim != 4 or tuple(k.shape) != expected or v.shape != k.shape:
            raise ValueError(f"insert_kv expects k and v of shape (B={self.batch_size}, H_kv={self.num_heads}, "
                             f"T, D={self.head_dim}), got k {tuple(k.shape)} and v {tuple(v.shape)}")
        if not 0 <= layer_idx < self.num_layers:
            raise ValueError(f"layer_idx must lie in [0, {self.num_layers}), got {layer_idx}")
        t0, t1 = self.pos, self.pos + k.size(2)
        if self.kv_cache is None:
            shape = (self.num_layers, 2, self.batch_size, self.num_heads, max(self.seq_len, t1), self.head_dim)
            self.kv_cache = torch.empty(shape, dtype=k.dtype, device=k.device)
        elif t1 > self.kv_cache.size(4):
            self._grow(t1)
        self.kv_cache[layer_idx, 0, :, :, t0:t1] = k
        self.kv_cache[layer_idx, 1, :, :, t0:t1] = v
        k_all = self.kv_cache[layer_idx, 0, :, :, :t1]
        v_all = self.kv_cache[layer_idx, 1, :, :, :t1]
        if layer_idx == self.num_layers - 1:
            self.pos = t1
        return k_all, v_all

    def _grow(self, needed):
        # double the capacity (amortised O(1) per token), at least to what is needed now
        capacity = max(needed, 2 * self.kv_cache.size(4))
        grown = torch.empty(*self.kv_cache.shape[:4], capacity, self.head_dim,
                            dtype=self.kv_cache.dtype, device=self.kv_cache.device)
        grown[..., :self.kv_cache.size(4), :] = self.kv_cache
        self.kv_cache = grown


class FlashKVCache:
    """The key/value cache in flash-attention's layout (nanochat 92d63d4): per layer (B, T_max, H_kv, D),
    preallocated, written in place by the attention at `cache_seqlens`; the last layer advances it."""

    def __init__(self, batch_size, num_heads, seq_len, head_dim, num_layers, device=None, dtype=None):
        sizes = dict(batch_size=batch_size, num_heads=num_heads, seq_len=seq_len, head_dim=head_dim,
                     num_layers=num_layers)
        for name, value in sizes.items():
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ValueError(f"FlashKVCache {name} must be a positive integer, got {value!r}")
        self.batch_size, self.max_seq_len, self.n_layers = batch_size, seq_len, num_layers
        shape = (num_layers, batch_size, seq_len, num_heads, head_dim)
        self.k_cache = torch.zeros(shape, device=device, dtype=dtype or torch.float32)
        self.v_cache = torch.zeros(shape, device=device, dtype=dtype or torch.float32)
        self.cache_seqlens = torch.zeros(batch_size, dtype=torch.int32, device=device)
        self.prev_embedding = None  # the smear's previous position, for the next chunk

    def reset(self):
        self.cache_seqlens.zero_()
        self.prev_embedding = None

    def get_pos(self):
        return int(self.cache_seqlens[0])

    def get_layer_cache(self, layer_idx):
        return self.k_cache[layer_idx], self.v_cache[layer_idx]

    def advance(self, num_tokens):
        self.cache_seqlens += num_tokens
