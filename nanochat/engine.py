"""
Inference support: the key/value cache for incremental decoding, the sampler, and an engine that samples
several streams from one prompt.

Each attention layer hands the cache its new keys and values, shape (B, H_kv, T_new, D), and gets back
everything cached for that layer so far, (B, H_kv, T_prefix + T_new, D). The position advances once
the last layer has inserted, so every layer of one forward pass sees the same prefix length.
"""

import torch
import torch.nn.functional as F


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

    def prefill(self, other):
        """Copy the entries of `other` (a batch-1 prefill of a prompt, or one of this batch size) into this
        empty cache: every row then continues from the same prefix, as Engine samples n streams from one
        prompt. The smear's previous embedding comes along, one per row."""
        if self.pos != 0:
            raise ValueError(f"prefill needs an empty cache, this one stands at position {self.pos}")
        if other.kv_cache is None:
            raise ValueError("prefill needs a cache that holds entries, the other one is empty")
        if (other.num_layers, other.num_heads, other.head_dim) != (self.num_layers, self.num_heads, self.head_dim) \
                or other.batch_size not in (1, self.batch_size):
            raise ValueError(f"prefill needs a cache of the same layers, heads and head_dim, of batch 1 or "
                             f"{self.batch_size}; got layers={other.num_layers}, heads={other.num_heads}, "
                             f"head_dim={other.head_dim}, batch={other.batch_size}")
        t = other.pos
        shape = (self.num_layers, 2, self.batch_size, self.num_heads, max(self.seq_len, t), self.head_dim)
        self.kv_cache = torch.empty(shape, dtype=other.kv_cache.dtype, device=other.kv_cache.device)
        self.kv_cache[..., :t, :] = other.kv_cache[..., :t, :]  # a batch of 1 broadcasts to every row
        self.pos = t
        if other.prev_embedding is not None:  # (1 or B, 1, C): one per row, a copy the rows own
            self.prev_embedding = other.prev_embedding.repeat(self.batch_size // other.batch_size, 1, 1)

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


@torch.inference_mode()
def sample_next_token(logits, rng, temperature=1.0, top_k=None):
    """One token id per row of `logits` (B, V), as (B, 1): the argmax at temperature 0, else a draw from
    softmax(logits / temperature) over the top_k highest logits (None, 0 or top_k >= V: over every token),
    with the torch.Generator `rng`, never torch's global RNG."""
    if temperature < 0:
        raise ValueError(f"temperature must be >= 0 (0 is greedy), got {temperature!r}")
    if temperature == 0:
        return logits.argmax(dim=-1, keepdim=True)
    logits = logits / temperature
    if top_k:
        kth = torch.topk(logits, min(top_k, logits.size(-1)), dim=-1).values[:, -1:]
        logits = logits.masked_fill(logits < kth, -float("inf"))  # ties with the k-th logit stay in
    return torch.multinomial(F.softmax(logits, dim=-1), num_samples=1, generator=rng)


class Engine:
    """Several sampled streams from one prompt, in one batch (nanochat's Engine without its tool use): the
    prompt is prefilled once at batch 1 and its cache copied into every row (KVCache.prefill), then each row
    draws its own tokens. With a tokenizer, a row ends at <|assistant_end|> or <|bos|>, as in nanochat."""

    def __init__(self, model, tokenizer=None):
        self.model = model
        self.tokenizer = tokenizer

    def _stop_tokens(self):
        if self.tokenizer is None:
            return set()
        return {self.tokenizer.encode_special("<|assistant_end|>"), self.tokenizer.get_bos_token_id()}

    @torch.inference_mode()
    def generate(self, tokens, num_samples=1, max_tokens=None, temperature=1.0, top_k=None, seed=42):
        """Yield (token_column, token_masks) at each step: the next token of each of the `num_samples` rows,
        and a 1 for each (every token is sampled, none forced). Stops after `max_tokens` steps (None: where the
        rotary tables end) or once every row has ended."""
        if not isinstance(tokens, list) or not tokens or not all(isinstance(t, int) for t in tokens):
            raise ValueError(f"tokens must be a non-empty list of ints, got {tokens!r}")
        model, c = self.model, self.model.config
        if max_tokens is None:
            max_tokens = model.rotary_seq_len - len(tokens)
        device = model.lm_head.weight.device
        rng = torch.Generator(device=device).manual_seed(seed)
        # 1) the prompt once, at batch 1: its forward is paid once whatever num_samples is
        prompt = KVCache(1, c.n_kv_head, len(tokens), c.head_dim, c.n_layer)
        logits = model(torch.tensor([tokens], device=device), kv_cache=prompt)[:, -1, :]
        # 2) its cache copied into every row; each row draws its first token from the prompt's logits
        cache = KVCache(num_samples, c.n_kv_head, len(tokens) + max_tokens, c.head_dim, c.n_layer)
        cache.prefill(prompt)
        logits = logits.expand(num_samples, -1)
        stop, ended = self._stop_tokens(), [False] * num_samples
        for step in range(max_tokens):
            if step > 0:
                logits = model(next_ids, kv_cache=cache)[:, -1, :]  # (num_samples, V)
            next_ids = sample_next_token(logits, rng, temperature, top_k)  # (num_samples, 1)
            column = next_ids[:, 0].tolist()
            ended = [e or t in stop for e, t in zip(ended, column)]
            yield column, [1] * num_samples
            if all(ended):
                return

    def generate_batch(self, tokens, num_samples=1, **kwargs):
        """(results, masks): each row's prompt followed by its sampled tokens, up to (not including) the token
        that ended it, and per token 0 (prompt) or 1 (sampled)."""
        results = [list(tokens) for _ in range(num_samples)]
        masks = [[0] * len(tokens) for _ in range(num_samples)]
        stop, ended = self._stop_tokens(), [False] * num_samples
        for column, column_masks in self.generate(tokens, num_samples, **kwargs):
            for i, (token, mask) in enumerate(zip(column, column_masks)):
                if ended[i]:
                    continue
                if token in stop:
                    ended[i] = True
                else:
                    results[i].append(token)
                    masks[i].append(mask)
            if all(ended):
                break
        return results, masks
