"""
The KV cache as part of the contract. The inference tests use the cache of the implementation under test:
`engine.KVCache` of its package (read out of `engine.py` without importing the rest of that module: see
engine.py here), else a `KVCache` of the implementation's module. Two styles are understood:

- insert_kv (nanochat a088b7a, this project): `KVCache(batch_size, num_heads, seq_len, head_dim,
  num_layers)`; attention calls `insert_kv(layer_idx, k, v)` and gets the whole prefix back; the
  position advances after the last layer's insert;
- flash (nanochat 92d63d4): `KVCache(..., num_layers, device, dtype)` with `k_cache`/`v_cache` of
  shape (L, B, T, H, D), `get_layer_cache(layer_idx)`, `cache_seqlens`, `advance(T)`.

Both offer `get_pos()` and `reset()`.
"""

import inspect
from contextlib import contextmanager

from nanochat_verify.contract.engine import engine_of
from nanochat_verify.contract.interface import InterfaceDiffers, cache_difference


class NoCache(InterfaceDiffers):
    """The implementation has no KV cache of the kind asked for."""


def cache_class(impl):
    """The KV cache class the implementation under test is used with (see the module docstring)."""
    engine = engine_of(impl)
    if engine.has("KVCache"):
        return engine.get("KVCache")
    if hasattr(impl, "KVCache"):
        return impl.KVCache
    raise NoCache("the implementation has no KV cache (no engine.KVCache in its package, no KVCache in its module)")


def flash_cache_class(impl):
    """A flash-attention-style cache class for this implementation: its own KVCache if that is
    flash-style, else a FlashKVCache of its package's engine or of its module."""
    try:
        cls = cache_class(impl)
    except NoCache:
        cls = None
    if cls is not None and hasattr(cls, "get_layer_cache"):
        return cls
    engine = engine_of(impl)
    if engine.has("FlashKVCache"):
        return engine.get("FlashKVCache")
    if hasattr(impl, "FlashKVCache"):
        return impl.FlashKVCache
    raise NoCache("the implementation has no flash-attention-style KV cache (get_layer_cache, cache_seqlens, advance)")


class CacheAdapter:
    """The KV cache of an implementation, seen through one small interface by the tests."""

    def __init__(self, cls):
        self.cls = cls
        self.style = "flash" if hasattr(cls, "get_layer_cache") else "insert_kv"

    @classmethod
    def of(cls, impl, flash=False):
        return cls(flash_cache_class(impl) if flash else cache_class(impl))

    def new(self, batch_size, num_heads, seq_len, head_dim, num_layers, *, device="cpu", dtype=None):
        """A cache of the implementation's class; device and dtype go to classes that take them."""
        import torch
        difference = cache_difference(self.cls)
        if difference:
            raise InterfaceDiffers(difference)
        params = inspect.signature(self.cls).parameters
        kwargs = {}
        if "device" in params:
            kwargs["device"] = device
        if "dtype" in params:
            kwargs["dtype"] = dtype or torch.float32
        return self.cls(batch_size, num_heads, seq_len, head_dim, num_layers, **kwargs)

    def for_config(self, config, batch_size, seq_len, **kwargs):
        return self.new(batch_size, config.n_kv_head, seq_len, config.n_embd // config.n_head, config.n_layer, **kwargs)

    @staticmethod
    def pos(cache):
        return int(cache.get_pos())

    def tensors(self, cache):
        """The (keys, values) storage, laid out (L, B, H_kv, T, D) whatever the style; None before use."""
        if self.style == "flash":
            return cache.k_cache.transpose(2, 3), cache.v_cache.transpose(2, 3)
        if cache.kv_cache is None:
            return None
        return cache.kv_cache[:, 0], cache.kv_cache[:, 1]

    def nbytes(self, cache):
        kv = self.tensors(cache)
        return 0 if kv is None else sum(t.numel() * t.element_size() for t in kv)

    def kv_heads(self, cache):
        return self.tensors(cache)[0].size(2)

    @contextmanager
    def recording(self, cache):
        """Record, in order, the layer index of every attention layer's access to the cache."""
        method = "get_layer_cache" if self.style == "flash" else "insert_kv"
        original = getattr(cache, method)
        calls = []

        def record(layer_idx, *args, **kwargs):
            calls.append(layer_idx)
            return original(layer_idx, *args, **kwargs)

        setattr(cache, method, record)
        try:
            yield calls
        finally:
            delattr(cache, method)
