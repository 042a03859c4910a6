"""
A readable GPT in the nanochat style.

What sets it apart from GPT-2:
- rotary position embeddings (RoPE), no learned positions
- RMSNorm without learnable parameters, after the token embedding, before every attention and
  MLP (pre-norm), and before the LM head; and on each query/key head vector (QK norm)
- grouped-query attention when n_kv_head < n_head
- ReLU² in the MLP, no bias in any linear layer
- untied token embedding and LM head; logits soft-capped with 15 * tanh(logits / 15)

and, as config options that are off by default, the components nanochat added since (92d63d4):
sliding-window attention, value embeddings, per-layer residual and x0 lambdas, smear, backout and a
vocabulary padded to a multiple of 64; `nanochat.engine.FlashKVCache` is the flash-attention-style
KV cache. The defaults are the seed architecture (the 561M depth-20 target).
"""

import math
import os
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from nanochat.engine import FlashKVCache, KVCache  # noqa: F401 - the caches this model is used with

ROPE_BASE = 10000  # RoFormer's theta base
LOGIT_SOFTCAP = 15.0
VE_GATE_CHANNELS, VE_GATE_SCALE = 12, 3.0  # value-embedding gate: 3 * sigmoid(W x[..., :12]), in (0, 3)
SMEAR_CHANNELS = 24  # smear gate: smear_lambda * sigmoid(W x[..., :24])
# the dtypes nn.Embedding takes as token ids, and cross_entropy as targets: any other (int8, uint8, int16...)
# would fail inside torch, with an error that names neither the argument nor what it should be
TOKEN_DTYPES, TARGET_DTYPES = (torch.int64, torch.int32), (torch.int64,)


@dataclass
class GPTConfig:
    sequence_len: int = 1024
    vocab_size: int = 50304
    n_layer: int = 12
    n_head: int = 6  # query heads
    n_kv_head: int = 6  # key/value heads; n_kv_head < n_head means grouped-query attention
    n_embd: int = 768
    # modern nanochat components, all off by default
    window_pattern: str = "L"  # per-layer windows, tiled: L = sequence_len, S = a quarter of it (e.g. "SSSL")
    value_embeds: bool = False  # value embeddings mixed into V through a gate, on alternating layers
    lambdas: bool = False  # learnable per-layer scales of the residual stream and of the embedding x0
    smear: bool = False  # each position mixes in the previous position's embedding
    backout: bool = False  # a learned share of the mid-stack residual is subtracted before the final norm
    pad_vocab_size_to: int = 1  # wte and lm_head rows padded to a multiple of this; logits sliced back

    def __post_init__(self):
        self.validate()

    def validate(self):
        """Raise ValueError, naming the value, for any configuration the model cannot be built from."""
        for name in ("sequence_len", "vocab_size", "n_layer", "n_head", "n_kv_head", "n_embd", "pad_vocab_size_to"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ValueError(f"GPTConfig.{name} must be a positive integer, got {value!r}")
        if self.n_embd % self.n_head != 0:
            raise ValueError(f"n_embd={self.n_embd} must be divisible by n_head={self.n_head} "
                             f"(head_dim = n_embd // n_head)")
        if self.n_head % self.n_kv_head != 0:
            raise ValueError(f"n_head={self.n_head} must be divisible by n_kv_head={self.n_kv_head} "
                             f"(each kv head serves a whole group of query heads)")
        if self.head_dim % 2 != 0:
            raise ValueError(f"head_dim={self.head_dim} (n_embd={self.n_embd} // n_head={self.n_head}) "
                             f"must be even: RoPE rotates pairs of dimensions")
        if not isinstance(self.window_pattern, str) or not self.window_pattern or set(self.window_pattern) - set("SL"):
            raise ValueError(f"window_pattern must be a non-empty string of S (short) and L (long), "
                             f"got {self.window_pattern!r}")
        for name, channels in (("value_embeds", VE_GATE_CHANNELS), ("smear", SMEAR_CHANNELS)):
            if getattr(self, name) and self.n_embd < channels:
                raise ValueError(f"{name} needs n_embd >= {channels} (its gate reads the first {channels} "
                                 f"channels), got n_embd={self.n_embd}")

    @property
    def head_dim(self):
        return self.n_embd // self.n_head

    @property
    def padded_vocab_size(self):
        return -(-self.vocab_size // self.pad_vocab_size_to) * self.pad_vocab_size_to

    def window_sizes(self):
        """Per-layer left window W, or None for full causal attention: a query sees itself and the W
        positions before it ((W, 0) in flash-attention terms). S is sequence_len / 4 rounded up to a
        multiple of 128 (a flash-attention tile), L is sequence_len; the last layer is always L."""
        if self.window_pattern == "L":
            return [None] * self.n_layer
        long, short = self.sequence_len, -(-self.sequence_len // 4 // 128) * 128
        sizes = [short if self.window_pattern[i % len(self.window_pattern)] == "S" else long
                 for i in range(self.n_layer)]
        sizes[-1] = long
        return sizes

    def has_ve(self, layer_idx):
        """Value embeddings on alternating layers, counted back from the last one, which always has one."""
        return self.value_embeds and layer_idx % 2 == (self.n_layer - 1) % 2


def norm(x):
    # RMSNorm (Zhang & Sennrich 2019) with no gain: x / sqrt(mean(x**2) + eps) over the last dim.
    # Purely functional, so the model has no norm parameters at all.
    return F.rms_norm(x, (x.size(-1),))


def apply_rotary_emb(x, cos, sin):
    # RoPE (Su et al. 2021, RoFormer eq. 34) on the half-split layout: dimension i pairs with i + D/2.
    # x: (B, T, H, D); cos, sin: (1, T, 1, D/2). Each pair (x1_i, x2_i) turns by the angle -t*theta_i,
    # so <rope(q, m), rope(k, n)> depends on m - n only.
    if x.ndim != 4 or x.size(3) % 2 != 0:
        raise ValueError(f"apply_rotary_emb expects x of shape (B, T, H, D) with D even, got {tuple(x.shape)}")
    d = x.size(3) // 2
    x1, x2 = x[..., :d], x[..., d:]
    y1 = x1 * cos + x2 * sin
    y2 = x1 * (-sin) + x2 * cos
    return torch.cat([y1, y2], 3).to(x.dtype)


def precompute_rotary(seq_len, head_dim, base=ROPE_BASE, device=None):
    # theta_i = base^(-2i/D) for i in [0, D/2) (RoFormer eq. 15); angles t * theta_i for t in [0, seq_len)
    channels = torch.arange(0, head_dim, 2, dtype=torch.float32, device=device)
    inv_freq = 1.0 / (base ** (channels / head_dim))
    t = torch.arange(seq_len, dtype=torch.float32, device=device)
    freqs = torch.outer(t, inv_freq)  # (T, D/2)
    # bfloat16 halves the buffers' memory; the rotation is computed in the dtype of x
    cos, sin = freqs.cos().bfloat16(), freqs.sin().bfloat16()
    return cos[None, :, None, :], sin[None, :, None, :]  # (1, T, 1, D/2): broadcast over B and H


class CausalSelfAttention(nn.Module):

    def __init__(self, config, layer_idx):
        super().__init__()
        self.layer_idx = layer_idx
        self.n_head = config.n_head
        self.n_kv_head = config.n_kv_head
        self.n_embd = config.n_embd
        self.head_dim = config.n_embd // config.n_head
        self.c_q = nn.Linear(self.n_embd, self.n_head * self.head_dim, bias=False)
        self.c_k = nn.Linear(self.n_embd, self.n_kv_head * self.head_dim, bias=False)
        self.c_v = nn.Linear(self.n_embd, self.n_kv_head * self.head_dim, bias=False)
        self.c_proj = nn.Linear(self.n_embd, self.n_embd, bias=False)
        self.window = config.window_sizes()[layer_idx]  # None: full causal attention
        # value embeddings (ResFormer, Zhou et al. 2024): a per-kv-head gate mixes them into V
        self.ve_gate = nn.Linear(VE_GATE_CHANNELS, self.n_kv_head, bias=False) if config.has_ve(layer_idx) else None

    def forward(self, x, cos_sin, kv_cache=None, ve=None):
        B, T, C = x.size()
        q = self.c_q(x).view(B, T, self.n_head, self.head_dim)
        k = self.c_k(x).view(B, T, self.n_kv_head, self.head_dim)
        v = self.c_v(x).view(B, T, self.n_kv_head, self.head_dim)
        if ve is not None:
            gate = VE_GATE_SCALE * torch.sigmoid(self.ve_gate(x[..., :VE_GATE_CHANNELS]))  # (B, T, Hkv) in (0, 3)
            v = v + gate.unsqueeze(-1) * ve.view(B, T, self.n_kv_head, self.head_dim)
        cos, sin = cos_sin
        q, k = apply_rotary_emb(q, cos, sin), apply_rotary_emb(k, cos, sin)  # position lives in Q, K only
        q, k = norm(q), norm(k)  # QK norm (Henry et al. 2020; Dehghani et al. 2023): bounded logits
        q, k, v = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)  # (B, H, T, D)
        if kv_cache is not None:
            k, v = self._cached(kv_cache, k, v)  # (B, Hkv, T_prefix + T, D)
        Tq, Tk = q.size(2), k.size(2)
        # GQA (Ainslie et al. 2023): query head h reads kv head h // (n_head // n_kv_head)
        gqa = self.n_kv_head != self.n_head
        # softmax(Q K^T / sqrt(D) + mask) V (Vaswani et al. 2017); SDPA's default scale is 1/sqrt(D)
        if Tq == Tk and (self.window is None or self.window >= Tk - 1):
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=gqa)
        else:
            mask = attention_mask(Tq, Tk, self.window, q.device)
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, enable_gqa=gqa)
        y = y.transpose(1, 2).contiguous().view(B, T, -1)  # heads back side by side: (B, T, H*D)
        return self.c_proj(y)

    def _cached(self, kv_cache, k, v):
        """Store this chunk's keys and values in the cache; return every key and value cached so far."""
        if not hasattr(kv_cache, "get_layer_cache"):
            return kv_cache.insert_kv(self.layer_idx, k, v)
        # flash-attention layout: per layer (B, T_max, Hkv, D), written in place at the cache position
        k_cache, v_cache = kv_cache.get_layer_cache(self.layer_idx)
        t0, t1 = kv_cache.get_pos(), kv_cache.get_pos() + k.size(2)
        k_cache[:, t0:t1], v_cache[:, t0:t1] = k.transpose(1, 2), v.transpose(1, 2)
        if self.layer_idx == kv_cache.n_layers - 1:
            kv_cache.advance(t1 - t0)  # every layer of this forward saw the same prefix
        return k_cache[:, :t1].transpose(1, 2), v_cache[:, :t1].transpose(1, 2)


def attention_mask(Tq, Tk, window, device):
    """(Tq, Tk) True where a query may see a key. The Tq queries are the last Tq of Tk positions: query
    i sits at Tk - Tq + i and sees every key up to itself (causal), within `window` positions back."""
    q_pos = torch.arange(Tk - Tq, Tk, device=device)[:, None]
    k_pos = torch.arange(Tk, device=device)[None, :]
    mask = k_pos <= q_pos
    if window is not None:
        mask = mask & (q_pos - k_pos <= window)
    return mask


class MLP(nn.Module):

    def __init__(self, config):
        super().__init__()
        self.c_fc = nn.Linear(config.n_embd, 4 * config.n_embd, bias=False)
        self.c_proj = nn.Linear(4 * config.n_embd, config.n_embd, bias=False)

    def forward(self, x):
        x = self.c_fc(x)  # (B, T, 4C)
        x = F.relu(x).square()  # ReLU² (So et al. 2021, Primer)
        return self.c_proj(x)  # (B, T, C)


class Block(nn.Module):

    def __init__(self, config, layer_idx):
        super().__init__()
        self.attn = CausalSelfAttention(config, layer_idx)
        self.mlp = MLP(config)

    def forward(self, x, cos_sin, kv_cache=None, ve=None):
        # pre-norm residual block (Xiong et al. 2020): the residual stream itself is never normalized
        x = x + self.attn(norm(x), cos_sin, kv_cache, ve)
        x = x + self.mlp(norm(x))
        return x


class GPT(nn.Module):

    def __init__(self, config):
        super().__init__()
        config.validate()
        self.config = config
        _refuse_what_cannot_fit(config)  # before the first weight is allocated
        V, L = config.padded_vocab_size, config.n_layer  # padded rows: the logits are sliced back to vocab_size
        self.transformer = nn.ModuleDict(dict(
            wte=nn.Embedding(V, config.n_embd),
            h=nn.ModuleList([Block(config, layer_idx) for layer_idx in range(config.n_layer)]),
        ))
        self.lm_head = nn.Linear(config.n_embd, V, bias=False)  # untied from wte
        kv_dim = config.n_kv_head * config.head_dim
        if config.value_embeds:
            self.value_embeds = nn.ModuleDict({str(i): nn.Embedding(V, kv_dim) for i in range(L) if config.has_ve(i)})
        if config.lambdas:  # per layer: x = resid_lambdas[i] * x + x0_lambdas[i] * x0 (modded-nanogpt)
            self.resid_lambdas = nn.Parameter(torch.ones(L))
            self.x0_lambdas = nn.Parameter(torch.zeros(L))
        if config.smear:
            self.smear_gate = nn.Linear(SMEAR_CHANNELS, 1, bias=False)
            self.smear_lambda = nn.Parameter(torch.zeros(1))
        if config.backout:
            self.backout_lambda = nn.Parameter(torch.zeros(1))
        # rotary tables for 10x the training length, so generation can run past it;
        # derived from the config, hence not saved in the state dict
        self.rotary_seq_len = 10 * config.sequence_len
        cos, sin = precompute_rotary(self.rotary_seq_len, config.head_dim)
        self.register_buffer("cos", cos, persistent=False)
        self.register_buffer("sin", sin, persistent=False)
        self.init_weights()

    @torch.no_grad()
    def init_weights(self):
        """Initialise every weight and recompute the rotary tables (so `to_empty()` + `init_weights()` works)."""
        for module in self.modules():
            if isinstance(module, nn.Linear):
                fan_out, fan_in = module.weight.shape
                # 1/sqrt(fan_in), shrunk for layers that narrow (fan_out < fan_in)
                std = 1.0 / math.sqrt(fan_in) * min(1.0, math.sqrt(fan_out / fan_in))
                nn.init.normal_(module.weight, mean=0.0, std=std)
            elif isinstance(module, nn.Embedding):
                nn.init.normal_(module.weight, mean=0.0, std=1.0)
        # every residual branch and the logits start at exactly zero: each block is the identity,
        # the initial prediction is uniform and the initial loss is ln(vocab_size)
        nn.init.zeros_(self.lm_head.weight)
        for block in self.transformer.h:
            nn.init.zeros_(block.attn.c_proj.weight)
            nn.init.zeros_(block.mlp.c_proj.weight)
        self._init_modern_components()
        self.cos, self.sin = precompute_rotary(self.rotary_seq_len, self.config.head_dim,
                                               device=self.lm_head.weight.device)

    def _init_modern_components(self):
        c, s = self.config, math.sqrt(3.0 / self.config.n_embd)  # U(-s, s) has std 1/sqrt(n_embd)
        for ve in getattr(self, "value_embeds", {}).values():
            nn.init.uniform_(ve.weight, -s, s)
        for block in self.transformer.h:
            if block.attn.ve_gate is not None:  # gates start just above neutral: 3 * sigmoid(~0) = 1.5
                nn.init.uniform_(block.attn.ve_gate.weight, 0.0, 0.02)
        if c.lambdas:  # a stronger residual and more of the embedding in early layers
            for i in range(c.n_layer):
                frac = i / max(c.n_layer - 1, 1)
                self.resid_lambdas[i] = 1.15 - 0.10 * frac
                self.x0_lambdas[i] = 0.20 - 0.15 * frac
        if c.smear:
            nn.init.uniform_(self.smear_gate.weight, 0.0, 0.02)
            nn.init.zeros_(self.smear_lambda)  # smear starts off
        if c.backout:
            nn.init.constant_(self.backout_lambda, 0.2)

    # ---- cost estimates (nanochat's): what training and inference cost, from the config alone ----

    def num_matmul_params(self):
        """The weights that multiply the token stream, every nn.Linear (the gates included): 2 FLOPs each per
        token in the forward pass. Embeddings are lookups and the lambdas scalars: no matmul."""
        return sum(m.weight.numel() for m in self.modules() if isinstance(m, nn.Linear))

    def estimate_flops(self):
        """Training FLOPs per token: 6 per matmul weight (forward 2, backward 4), plus attention over each
        layer's window, at most the sequence (PaLM, Chowdhery et al. 2022, app. B)."""
        c = self.config
        n_matmul = self.num_matmul_params()
        seen = [c.sequence_len if w is None else min(w, c.sequence_len) for w in c.window_sizes()]
        return 6 * n_matmul + sum(12 * c.n_head * c.head_dim * t for t in seen)

    def num_scaling_params(self):
        """Parameter counts by group, for scaling laws ('total' is Chinchilla's count: all of them): the token
        embedding, the value embeddings, the LM head, the blocks' matrices, and the scalars (the lambdas, and
        the smear gate, grouped with them as in nanochat)."""
        def count(module):
            return sum(p.numel() for p in module.parameters())
        value_embeds = getattr(self, "value_embeds", None)  # there with value embeddings on only
        groups = dict(wte=count(self.transformer.wte), value_embeds=0 if value_embeds is None else count(value_embeds),
                      lm_head=count(self.lm_head), transformer_matrices=count(self.transformer.h))
        groups["scalars"] = count(self) - sum(groups.values())
        groups["total"] = count(self)
        return groups

    def _keys_seen(self, context_len):
        """Per layer, how many of `context_len` cached positions a decoded token attends to: its window's."""
        return [context_len if w is None else min(context_len, w) for w in self.config.window_sizes()]

    def estimate_decode_flops(self, context_len):
        """Forward FLOPs to decode one token after `context_len` positions: 2 per matmul weight, plus 4 *
        n_head * head_dim per key attended (scores and weighted values), over min(context_len, W) keys in a
        layer of window W."""
        c = self.config
        return 2 * self.num_matmul_params() + sum(4 * c.n_head * c.head_dim * k for k in self._keys_seen(context_len))

    def estimate_prefill_flops(self, num_tokens):
        """Forward FLOPs to prefill a prompt of `num_tokens`: 2 per matmul weight and token, plus attention
        over the keys each token sees, causally: token t (from 1) sees min(t, W) in a layer of window W."""
        c = self.config
        attended = 0
        for w in self._keys_seen(num_tokens):  # a ramp from 1 up to w keys, then w for every later token
            attended += w * (2 * num_tokens - w + 1) // 2
        return 2 * self.num_matmul_params() * num_tokens + 4 * c.n_head * c.head_dim * attended

    def kv_bytes_per_token(self):
        """Bytes of KV cache one position takes, per row: a key and a value of n_kv_head * head_dim in each
        layer, in the dtype c_k computes the keys in (the cache keeps it)."""
        c = self.config
        return c.n_layer * 2 * c.n_kv_head * c.head_dim * self.transformer.h[0].attn.c_k.weight.element_size()

    def kv_read_bytes(self, context_len):
        """Bytes of KV cache one decode step reads after `context_len` positions, per row: each layer reads
        the keys and values of the positions its window covers."""
        per_layer_position = self.kv_bytes_per_token() // self.config.n_layer
        return sum(per_layer_position * k for k in self._keys_seen(context_len))

    def forward(self, idx, targets=None, kv_cache=None, loss_reduction="mean"):
        T0 = self._cache_position(kv_cache)
        self._check_inputs(idx, targets, T0, loss_reduction)
        B, T = idx.size()
        cos_sin = self.cos[:, T0:T0 + T], self.sin[:, T0:T0 + T]  # RoPE resumes at the cache position

        x = self.transformer.wte(idx)  # (B, T, C)
        x = norm(x)
        embedded = x
        if self.config.smear:
            x = self._smear(x, getattr(kv_cache, "prev_embedding", None))
        x0, x_mid = x, None
        for i, block in enumerate(self.transformer.h):
            if self.config.lambdas:
                x = self.resid_lambdas[i] * x + self.x0_lambdas[i] * x0
            ve = self.value_embeds[str(i)](idx) if self.config.has_ve(i) else None
            x = block(x, cos_sin, kv_cache, ve)
            if i == self.config.n_layer // 2:
                x_mid = x
        if self.config.backout:  # remove a share of the low-level features of the first half
            x = x - self.backout_lambda * x_mid
        if self.config.smear and kv_cache is not None:
            kv_cache.prev_embedding = embedded[:, -1:]  # the next chunk's first position smears this in
        x = norm(x)

        logits = self.lm_head(x)[..., :self.config.vocab_size]  # (B, T, V): padding rows sliced off
        logits = logits.to(torch.promote_types(logits.dtype, torch.float32))  # at least float32 for the softmax
        # soft cap (Gemma 2, Team et al. 2024): smooth, and |logit| < 15 whatever the activations
        logits = LOGIT_SOFTCAP * torch.tanh(logits / LOGIT_SOFTCAP)
        if targets is None:
            return logits
        # per-token losses come back flat, (B*T,), with loss_reduction='none'; -1 marks ignored targets.
        # reshape, not view: targets are often a non-contiguous slice (model(x[:, :-1], x[:, 1:]))
        targets = targets.reshape(-1)
        losses = F.cross_entropy(logits.reshape(-1, logits.size(-1)), targets, ignore_index=-1, reduction="none")
        if loss_reduction == "none":
            return losses
        if loss_reduction == "sum":
            return losses.sum()
        # the mean over the targets that count: 0, not 0/0 = NaN, when every one is ignored (nanochat issue 590)
        return losses.sum() / (targets != -1).sum().clamp(min=1)

    def _smear(self, x, last=None):
        """Position t adds smear_lambda * sigmoid(smear_gate(x_t[:24])) * x_{t-1}: a cheap bigram signal.
        `last` is the embedding before this chunk (decoding with a KV cache), or None at the start."""
        prev = x[:, :-1] if last is None else torch.cat([last, x[:, :-1]], dim=1)
        first = x.size(1) - prev.size(1)  # 1 when position 0 of this chunk has no predecessor
        gate = self.smear_lambda * torch.sigmoid(self.smear_gate(x[:, first:, :SMEAR_CHANNELS]))
        return torch.cat([x[:, :first], x[:, first:] + gate * prev], dim=1)

    @staticmethod
    def _cache_position(kv_cache):
        """Where the chunk starts: one position for the whole batch. A flash-style cache keeps one per row
        (cache_seqlens); rows at different positions are refused, not all decoded at row 0's (nanochat PR 485)."""
        if kv_cache is None:
            return 0
        rows = getattr(kv_cache, "cache_seqlens", None)
        if torch.is_tensor(rows) and rows.device.type != "meta" and not bool((rows == rows[0]).all()):
            raise ValueError(f"every row of the KV cache must stand at the same position, got cache_seqlens "
                             f"{rows.tolist()}")
        return kv_cache.get_pos()

    def _check_inputs(self, idx, targets, T0, loss_reduction):
        V = self.config.vocab_size
        if not (torch.is_tensor(idx) and idx.ndim == 2 and idx.dtype in TOKEN_DTYPES):
            raise ValueError(f"idx must be a 2-D (B, T) tensor of int64 or int32 token ids, got {_describe(idx)}")
        B, T = idx.shape
        if B == 0:
            raise ValueError(f"idx must hold at least one sequence, got batch size 0 (shape {tuple(idx.shape)})")
        if T == 0 or T0 + T > self.rotary_seq_len:
            raise ValueError(f"sequence of T={T} tokens at position {T0} does not fit the rotary cache of "
                             f"{self.rotary_seq_len} positions (10 * sequence_len); need 1 <= T0 + T <= "
                             f"{self.rotary_seq_len}")
        # value ranges are read on the CPU only: on an accelerator .item() would stall every step
        # (there an out-of-range id fails inside the embedding instead); meta tensors hold no values
        if idx.device.type == "cpu":
            lo, hi = (int(v) for v in torch.aminmax(idx))
            if lo < 0 or hi >= V:
                raise ValueError(f"token ids must lie in [0, {V}) (vocab_size), got values in [{lo}, {hi}]")
        if loss_reduction not in ("mean", "sum", "none"):
            raise ValueError(f"loss_reduction must be 'mean', 'sum' or 'none', got {loss_reduction!r}")
        if targets is None:
            return
        if not (torch.is_tensor(targets) and targets.dtype in TARGET_DTYPES and targets.shape == idx.shape):
            raise ValueError(f"targets must be an int64 tensor of the same shape as idx "
                             f"{tuple(idx.shape)}, got {_describe(targets)}")
        if targets.device.type == "cpu":
            lo, hi = (int(v) for v in torch.aminmax(targets))
            if lo < -1 or hi >= V:
                raise ValueError(f"targets must lie in [0, {V}) or be -1 (ignored), got values in [{lo}, {hi}]")

    @torch.inference_mode()
    def generate(self, tokens, max_tokens, temperature=1.0, top_k=None, seed=42):
        """Stream `max_tokens` sampled token ids after the prompt `tokens` (a list of ints), batch 1, with a KV cache.

        Each token is drawn from softmax(logits / temperature) restricted to the `top_k` highest logits;
        temperature=0 is greedy (the argmax). top_k=None, top_k=0 and top_k >= vocab_size all mean no
        filtering (0 as in nanochat since its issue 466). Sampling draws from a torch.Generator of its own,
        seeded with `seed`: torch's global RNG is untouched and a stream depends on its seed only.
        """
        V = self.config.vocab_size
        if not isinstance(tokens, list) or not tokens:
            raise ValueError(f"tokens must be a non-empty list of ints in [0, {V}), got {_describe(tokens)}")
        bad = next((i for i, t in enumerate(tokens) if not (_is_int(t) and 0 <= t < V)), None)
        if bad is not None:
            raise ValueError(f"tokens must be a non-empty list of ints in [0, {V}), got tokens[{bad}] = {tokens[bad]!r}")
        if not _is_int(max_tokens) or max_tokens < 0:
            raise ValueError(f"max_tokens must be a non-negative int, got {max_tokens!r}")
        if not (isinstance(temperature, (int, float)) and not isinstance(temperature, bool)
                and math.isfinite(temperature) and temperature >= 0):
            raise ValueError(f"temperature must be a finite number >= 0 (0 is greedy), got {temperature!r}")
        if top_k is not None and not (_is_int(top_k) and top_k >= 0):
            raise ValueError(f"top_k must be None or an int >= 0 (0: no filtering), got {top_k!r}")
        if not (_is_int(seed) and -2 ** 63 <= seed < 2 ** 64):
            raise ValueError(f"seed must be an int in [-2**63, 2**64) (torch.Generator.manual_seed), got {seed!r}")
        if len(tokens) + max_tokens > self.rotary_seq_len:
            raise ValueError(f"prompt of {len(tokens)} plus max_tokens={max_tokens} exceeds the rotary cache "
                             f"of {self.rotary_seq_len} positions")
        # 0 is greedy, and so is a temperature too small to divide by: |logits| < LOGIT_SOFTCAP, divided by it,
        # would overflow float32 into inf (and the softmax into NaN); the argmax is sampling's limit there anyway
        greedy = temperature * torch.finfo(torch.float32).max < LOGIT_SOFTCAP
        device = self.lm_head.weight.device
        rng = torch.Generator(device=device).manual_seed(seed)
        c = self.config
        cache = KVCache(1, c.n_kv_head, len(tokens) + max_tokens, c.head_dim, c.n_layer)
        logits = self.forward(torch.tensor([tokens], device=device), kv_cache=cache)[:, -1, :]  # (1, V)
        for i in range(max_tokens):
            if greedy:
                next_id = logits.argmax(dim=-1, keepdim=True)
            else:
                logits = logits / temperature
                if top_k:  # None and 0 filter nothing; top_k >= vocab_size keeps every token
                    kth = torch.topk(logits, min(top_k, logits.size(-1))).values[:, -1:]
                    logits = logits.masked_fill(logits < kth, -float("inf"))
                next_id = torch.multinomial(F.softmax(logits, dim=-1), num_samples=1, generator=rng)
            yield next_id.item()
            if i + 1 < max_tokens:
                logits = self.forward(next_id, kv_cache=cache)[:, -1, :]


def _parameter_count(config):
    """The model's parameter count, from its config alone (nothing built): wte and lm_head (padded rows
    included), each block's attention and MLP, then the modern components that are on."""
    c, d, V = config, config.n_embd, config.padded_vocab_size
    kv_dim = c.n_kv_head * c.head_dim
    per_block = 2 * d * d + 2 * d * kv_dim + 8 * d * d  # c_q, c_proj; c_k, c_v; the 4x MLP
    ve_layers = (c.n_layer + 1) // 2 if c.value_embeds else 0  # alternating, the last one included
    extras = ve_layers * (V * kv_dim + VE_GATE_CHANNELS * c.n_kv_head) + (2 * c.n_layer if c.lambdas else 0) \
        + (SMEAR_CHANNELS + 1 if c.smear else 0) + (1 if c.backout else 0)
    return 2 * V * d + c.n_layer * per_block + extras


def _refuse_what_cannot_fit(config):
    """ValueError, naming the sizes, for a model whose weights alone would not fit in this machine's memory, before
    anything is allocated: torch would fail deep inside nn.Embedding ("you tried to allocate 70368744177664
    bytes"), or take minutes to build what init_weights then cannot fill. Only on the CPU: the meta device
    allocates nothing (build a huge model there to count or inspect it), an accelerator checks its own memory."""
    if torch.empty(0).device.type != "cpu" or not hasattr(os, "sysconf"):
        return
    try:
        memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError):  # not known on this system
        return
    count, dtype = _parameter_count(config), torch.get_default_dtype()
    if count * dtype.itemsize > memory:
        c = config
        raise ValueError(f"GPTConfig(n_layer={c.n_layer}, n_embd={c.n_embd}, vocab_size={c.vocab_size}) makes "
                         f"{count:,} parameters, {count * dtype.itemsize / 1e9:,.1f} GB in {dtype}: more than this "
                         f"machine's {memory / 1e9:.1f} GB of memory; build it on the meta device to count or "
                         f"inspect it (with torch.device('meta'): GPT(config))")


def _is_int(x):
    # a Python int; True and False are ints to Python but flags, not counts or token ids
    return isinstance(x, int) and not isinstance(x, bool)


def _describe(x):
    if torch.is_tensor(x):
        return f"a tensor of shape {tuple(x.shape)} dtype {x.dtype}"
    text = repr(x)
    return f"{type(x).__name__} {text if len(text) <= 80 else text[:77] + '...'}"
