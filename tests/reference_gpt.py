"""
A deliberately naive second implementation of the nanochat GPT contract (see ../shared/SPEC.md).

What it is for:
1. an oracle: load one state_dict into this model and into the implementation under test and compare
   logits and losses; the two are written differently, so a bug they share is unlikely;
2. a second implementation the whole suite must pass: `pytest --gpt-impl tests/reference_gpt.py`.
   A test that only passes on nanochat/gpt.py is testing its accidents, not the contract.

Everything here is spelled out by hand rather than with torch's fused helpers: RMSNorm as
x * rsqrt(mean(x^2) + eps), RoPE as a multiplication by a complex phase, grouped-query attention by
indexing kv heads per query head, an explicit score matrix, boolean causal (and window) mask and
softmax. It is written for clarity, not speed. No input validation beyond what torch does on its own.

The architecture's values (softcap, RoPE base, QK gain, rotary table dtype) and the modern nanochat
components (sliding windows, value embeddings, lambdas, smear, backout, a padded vocabulary) are
config fields whose defaults come from the project's architecture card (nanochat/architecture.py), so
the oracle can be set up as any card's architecture.
"""

import math
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from nanochat_verify.card import load_card

CARD = load_card()


@dataclass
class GPTConfig:
    sequence_len: int = 1024
    vocab_size: int = 50304
    n_layer: int = 12
    n_head: int = 6
    n_kv_head: int = 6
    n_embd: int = 768
    # modern components (switches named as in nanochat/gpt.py)
    window_pattern: str = "L"
    value_embeds: bool = False
    lambdas: bool = False
    smear: bool = False
    backout: bool = False
    pad_vocab_size_to: int = 1
    # the architecture's values
    softcap: float = CARD.softcap
    rope_base: float = CARD.rope_base
    qk_gain: float = CARD.qk_gain
    rotary_len_factor: int = CARD.rotary_len_factor
    table_dtype: str = "float32" if CARD.rotary_dtype == "compute" else CARD.rotary_dtype
    card: object = None  # the Architecture whose rules (init, gate sizes, windows) apply; None: the project's

    def __post_init__(self):
        self.card = self.card or CARD


def _compute_dtype(dtype):
    # half and bfloat16 are worked in float32 (as F.rms_norm does internally); float32/64 as they are
    return torch.promote_types(dtype, torch.float32)


def norm(x):
    """Parameter-free RMSNorm over the last dim: x / sqrt(mean(x^2) + eps).
    eps is the machine epsilon of the dtype the arithmetic is done in (F.rms_norm's default)."""
    xc = x.to(_compute_dtype(x.dtype))
    eps = torch.finfo(xc.dtype).eps
    return (xc * torch.rsqrt(xc.pow(2).mean(-1, keepdim=True) + eps)).to(x.dtype)


def apply_rotary_emb(x, cos, sin):
    """RoPE on the half-split layout. x: (B, T, H, D); cos, sin: (1, T, 1, D/2).
    Dimension i pairs with i + D/2; the pair (x1, x2) is read as the complex number x1 + i*x2 and
    multiplied by exp(-i*angle) = cos - i*sin, which gives exactly
    y1 = x1*cos + x2*sin and y2 = -x1*sin + x2*cos."""
    half = x.shape[-1] // 2
    work = _compute_dtype(x.dtype)
    z = torch.complex(x[..., :half].to(work), x[..., half:].to(work))
    phase = torch.complex(cos.to(work), -sin.to(work))
    rotated = z * phase
    return torch.cat([rotated.real, rotated.imag], dim=-1).to(x.dtype)


def rotary_tables(n_positions, head_dim, base, dtype, device=None):
    """cos and sin of t * inv_freq_j, shape (1, n_positions, 1, head_dim/2), in the table dtype.
    The angles are computed in float64, vectorised (no Python loop over positions)."""
    inv_freq = float(base) ** (-torch.arange(0, head_dim, 2, dtype=torch.float64, device=device) / head_dim)
    positions = torch.arange(n_positions, dtype=torch.float64, device=device)
    angles = positions[:, None] * inv_freq[None, :]  # (T, D/2)
    dtype = getattr(torch, dtype)
    return angles.cos().to(dtype)[None, :, None, :], angles.sin().to(dtype)[None, :, None, :]


def window_sizes(config):
    """Left window per layer (None: unlimited). S = the card's share of the context (a quarter in 92d63d4)
    rounded up to a multiple of its tile, or rounded down; L = the context; the pattern is tiled over the
    layers and the last one is L."""
    if config.window_pattern == "L":
        return [None] * config.n_layer
    sw = config.card.sliding_window
    long = config.sequence_len
    if sw["short_rounding"] == "floor":
        short = math.floor(long / sw["short_divisor"])
    else:
        short = math.ceil(math.ceil(long / sw["short_divisor"]) / sw["tile"]) * sw["tile"]
    sizes = []
    for layer in range(config.n_layer):
        letter = config.window_pattern[layer % len(config.window_pattern)]
        sizes.append(short if letter == "S" else long)
    sizes[-1] = long
    return sizes


def has_value_embedding(config, layer):
    return config.value_embeds and (config.n_layer - 1 - layer) % 2 == 0


class CausalSelfAttention(nn.Module):

    def __init__(self, config, layer_idx):
        super().__init__()
        self.layer_idx = layer_idx
        self.n_head = config.n_head
        self.n_kv_head = config.n_kv_head
        self.head_dim = config.n_embd // config.n_head
        self.qk_gain = config.qk_gain
        self.window = window_sizes(config)[layer_idx]
        self.c_q = nn.Linear(config.n_embd, self.n_head * self.head_dim, bias=False)
        self.c_k = nn.Linear(config.n_embd, self.n_kv_head * self.head_dim, bias=False)
        self.c_v = nn.Linear(config.n_embd, self.n_kv_head * self.head_dim, bias=False)
        self.c_proj = nn.Linear(config.n_embd, config.n_embd, bias=False)
        self.card = config.card
        channels = self.card.value_embeddings["gate_channels"]
        self.ve_gate = nn.Linear(channels, self.n_kv_head, bias=False) if has_value_embedding(config, layer_idx) else None

    def forward(self, x, cos_sin, kv_cache=None, ve=None):
        B, T, _ = x.shape
        H, Hkv, D = self.n_head, self.n_kv_head, self.head_dim
        cos, sin = cos_sin

        # 1. project to heads; a value embedding enters V through a per-kv-head gate in (0, scale)
        q = self.c_q(x).view(B, T, H, D)
        k = self.c_k(x).view(B, T, Hkv, D)
        v = self.c_v(x).view(B, T, Hkv, D)
        if ve is not None:
            channels, scale = self.card.value_embeddings["gate_channels"], self.card.value_embeddings["gate_scale"]
            gate = scale * torch.sigmoid(self.ve_gate(x[..., :channels]))  # (B, T, Hkv)
            v = v + gate[..., None] * ve.view(B, T, Hkv, D)
        # 2. rotate queries and keys (never values), 3. then normalise each head vector (QK norm)
        q = apply_rotary_emb(q, cos, sin)
        k = apply_rotary_emb(k, cos, sin)
        q = norm(q) * self.qk_gain
        k = norm(k) * self.qk_gain
        # 4. the cache appends the new keys/values and hands back the whole prefix + chunk
        if kv_cache is not None:
            k, v = self._through_cache(kv_cache, k, v)
        # 5. heads first: (B, heads, T, D)
        q = q.transpose(1, 2)
        k = k.transpose(1, 2)
        v = v.transpose(1, 2)
        Tq, Tk = q.shape[2], k.shape[2]

        # 6. grouped-query attention: query head h reads kv head h // (H // Hkv)
        group_size = H // Hkv
        kv_head_of = torch.arange(H, device=q.device) // group_size  # (H,)
        k = k[:, kv_head_of]  # (B, H, Tk, D)
        v = v[:, kv_head_of]

        # 7. scores, causal (and window) mask, softmax, weighted sum of values
        scores = torch.matmul(q, k.transpose(-1, -2)) / math.sqrt(D)  # (B, H, Tq, Tk)
        # the Tq queries are the last Tq positions: query i sits at absolute position Tk - Tq + i
        query_pos = torch.arange(Tq, device=q.device) + (Tk - Tq)
        key_pos = torch.arange(Tk, device=q.device)
        allowed = key_pos[None, :] <= query_pos[:, None]  # (Tq, Tk), True where a key may be seen
        if self.window is not None:
            allowed = allowed & (query_pos[:, None] - key_pos[None, :] <= self.window)
        scores = scores.masked_fill(~allowed, float("-inf"))
        scores = scores - scores.amax(dim=-1, keepdim=True).detach()  # every row sees >= 1 key
        weights = scores.exp()
        weights = weights / weights.sum(dim=-1, keepdim=True)
        y = torch.matmul(weights, v)  # (B, H, Tq, D)

        # 8. concatenate the heads side by side and project back
        y = y.transpose(1, 2).reshape(B, Tq, H * D)
        return self.c_proj(y)

    def _through_cache(self, kv_cache, k, v):
        """k, v: (B, T, Hkv, D). Both cache styles of the contract (nanochat/contract.py)."""
        if hasattr(kv_cache, "get_layer_cache"):
            k_cache, v_cache = kv_cache.get_layer_cache(self.layer_idx)  # (B, T_max, Hkv, D)
            start, stop = kv_cache.get_pos(), kv_cache.get_pos() + k.shape[1]
            k_cache[:, start:stop] = k
            v_cache[:, start:stop] = v
            if self.layer_idx == kv_cache.n_layers - 1:
                kv_cache.advance(stop - start)
            return k_cache[:, :stop], v_cache[:, :stop]
        k_all, v_all = kv_cache.insert_kv(self.layer_idx, k.transpose(1, 2), v.transpose(1, 2))
        return k_all.transpose(1, 2), v_all.transpose(1, 2)


class MLP(nn.Module):

    def __init__(self, config):
        super().__init__()
        ratio = config.card.mlp_ratio
        self.c_fc = nn.Linear(config.n_embd, ratio * config.n_embd, bias=False)
        self.c_proj = nn.Linear(ratio * config.n_embd, config.n_embd, bias=False)

    def forward(self, x):
        h = self.c_fc(x)
        h = torch.relu(h) ** 2  # ReLU squared
        return self.c_proj(h)


class Block(nn.Module):

    def __init__(self, config, layer_idx):
        super().__init__()
        self.attn = CausalSelfAttention(config, layer_idx)
        self.mlp = MLP(config)

    def forward(self, x, cos_sin, kv_cache=None, ve=None):
        # pre-norm: the branches see norm(x), the residual stream itself is left unnormalised
        after_attention = x + self.attn(norm(x), cos_sin, kv_cache, ve)
        return after_attention + self.mlp(norm(after_attention))


class GPT(nn.Module):

    def __init__(self, config):
        super().__init__()
        self.config = config
        V = math.ceil(config.vocab_size / config.pad_vocab_size_to) * config.pad_vocab_size_to
        L = config.n_layer
        self.transformer = nn.ModuleDict({
            "wte": nn.Embedding(V, config.n_embd),
            "h": nn.ModuleList([Block(config, i) for i in range(L)]),
        })
        self.lm_head = nn.Linear(config.n_embd, V, bias=False)  # not tied to wte
        kv_dim = config.n_kv_head * (config.n_embd // config.n_head)
        if config.value_embeds:
            self.value_embeds = nn.ModuleDict({str(i): nn.Embedding(V, kv_dim)
                                               for i in range(L) if has_value_embedding(config, i)})
        if config.lambdas:
            self.resid_lambdas = nn.Parameter(torch.ones(L))
            self.x0_lambdas = nn.Parameter(torch.zeros(L))
        if config.smear:
            self.smear_gate = nn.Linear(config.card.smear["channels"], 1, bias=False)
            self.smear_lambda = nn.Parameter(torch.zeros(1))
        if config.backout:
            self.backout_lambda = nn.Parameter(torch.zeros(1))
        # rotary tables for rotary_len_factor x sequence_len positions; derived, so not in the state dict
        self.rotary_seq_len = config.rotary_len_factor * config.sequence_len
        cos, sin = rotary_tables(self.rotary_seq_len, config.n_embd // config.n_head, config.rope_base,
                                 config.table_dtype)
        self.register_buffer("cos", cos, persistent=False)
        self.register_buffer("sin", sin, persistent=False)
        self.init_weights()

    @torch.no_grad()
    def init_weights(self):
        """Every parameter as the card's [init] rules say, and the rotary tables rebuilt where the
        weights live (after to_empty() they hold garbage)."""
        n_embd, L = self.config.n_embd, self.config.n_layer
        groups = {"wte": [self.transformer.wte.weight], "lm_head": [self.lm_head.weight]}
        for block in self.transformer.h:
            for name in ("c_q", "c_k", "c_v"):
                groups.setdefault(name, []).append(getattr(block.attn, name).weight)
            groups.setdefault("attn.c_proj", []).append(block.attn.c_proj.weight)
            groups.setdefault("c_fc", []).append(block.mlp.c_fc.weight)
            groups.setdefault("mlp.c_proj", []).append(block.mlp.c_proj.weight)
            if block.attn.ve_gate is not None:
                groups.setdefault("ve_gate", []).append(block.attn.ve_gate.weight)
        groups["value_embeds"] = [e.weight for e in getattr(self, "value_embeds", {}).values()]
        for name in ("smear_gate",):
            if hasattr(self, name):
                groups[name] = [getattr(self, name).weight]
        for name in ("resid_lambdas", "x0_lambdas", "smear_lambda", "backout_lambda"):
            if hasattr(self, name):
                groups[name] = [getattr(self, name)]
        for key, params in groups.items():
            rule = self.config.card.init_rule(key)
            for p in params:
                fan_out, fan_in = (p.shape[0], p.shape[1]) if p.dim() == 2 else (1, 1)
                if rule.dist == "zeros":
                    p.zero_()
                elif rule.dist == "constant":
                    p.fill_(rule.value)
                elif rule.dist == "linear":
                    p.copy_(torch.tensor(rule.schedule(L), dtype=p.dtype))
                elif rule.dist == "normal":
                    p.normal_(0.0, rule.std_for(fan_out, fan_in, n_embd))
                else:
                    p.uniform_(*rule.bounds(fan_out, fan_in, n_embd))
        cos, sin = rotary_tables(self.rotary_seq_len, n_embd // self.config.n_head, self.config.rope_base,
                                 self.config.table_dtype, device=self.transformer.wte.weight.device)
        self.cos = cos
        self.sin = sin

    def forward(self, idx, targets=None, kv_cache=None, loss_reduction="mean"):
        B, T = idx.shape
        cfg = self.config
        start = 0 if kv_cache is None else kv_cache.get_pos()  # RoPE continues after the cached prefix
        cos_sin = (self.cos[:, start:start + T], self.sin[:, start:start + T])

        x = norm(self.transformer.wte(idx))
        embedded = x
        if cfg.smear:  # each position mixes in the previous position's normalized embedding
            previous = x[:, :-1]
            last = getattr(kv_cache, "prev_embedding", None)
            if last is not None:
                previous = torch.cat([last, previous], dim=1)
            first = T - previous.shape[1]
            gate = self.smear_lambda * torch.sigmoid(self.smear_gate(x[:, first:, :cfg.card.smear["channels"]]))
            x = torch.cat([x[:, :first], x[:, first:] + gate * previous], dim=1)
        x0 = x
        middle = None
        for i, block in enumerate(self.transformer.h):
            if cfg.lambdas:
                x = self.resid_lambdas[i] * x + self.x0_lambdas[i] * x0
            ve = self.value_embeds[str(i)](idx) if has_value_embedding(cfg, i) else None
            x = block(x, cos_sin, kv_cache, ve)
            if i == cfg.n_layer // 2:
                middle = x
        if cfg.backout:
            x = x - self.backout_lambda * middle
        if cfg.smear and kv_cache is not None:
            kv_cache.prev_embedding = embedded[:, -1:]
        x = norm(x)

        logits = self.lm_head(x)[..., :cfg.vocab_size]
        # at least float32 (float64 stays float64, so a double model can be gradchecked end to end)
        logits = logits.to(_compute_dtype(logits.dtype))
        logits = cfg.softcap * torch.tanh(logits / cfg.softcap)  # soft cap
        if targets is None:
            return logits
        V = logits.shape[-1]
        return F.cross_entropy(logits.reshape(-1, V), targets.reshape(-1), ignore_index=-1,
                               reduction=loss_reduction)


class KVCache:
    """The insert_kv-style cache of the contract (nanochat_verify/contract/cache.py), written naively: the
    storage (num_layers, 2, B, H_kv, T, D) grows by concatenation, exactly to what has been inserted."""

    def __init__(self, batch_size, num_heads, seq_len, head_dim, num_layers):
        self.batch_size, self.num_heads, self.head_dim, self.num_layers = batch_size, num_heads, head_dim, num_layers
        self.kv_cache = None
        self.pos = 0
        self.prev_embedding = None

    def reset(self):
        self.pos, self.prev_embedding = 0, None

    def get_pos(self):
        return self.pos

    def insert_kv(self, layer_idx, k, v):
        end = self.pos + k.shape[2]
        if self.kv_cache is None:
            self.kv_cache = torch.zeros(self.num_layers, 2, *k.shape[:2], 0, k.shape[3], dtype=k.dtype, device=k.device)
        if self.kv_cache.shape[4] < end:
            more = torch.zeros(*self.kv_cache.shape[:4], end - self.kv_cache.shape[4], self.kv_cache.shape[5],
                               dtype=self.kv_cache.dtype, device=self.kv_cache.device)
            self.kv_cache = torch.cat([self.kv_cache, more], dim=4)
        self.kv_cache[layer_idx, 0, :, :, self.pos:end] = k
        self.kv_cache[layer_idx, 1, :, :, self.pos:end] = v
        keys, values = self.kv_cache[layer_idx, 0, :, :, :end], self.kv_cache[layer_idx, 1, :, :, :end]
        if layer_idx == self.num_layers - 1:
            self.pos = end
        return keys, values


class FlashKVCache:
    """The flash-attention-style cache of the contract: per layer (B, T_max, H_kv, D), preallocated, written
    by the attention at cache_seqlens, advanced by the last layer."""

    def __init__(self, batch_size, num_heads, seq_len, head_dim, num_layers, device=None, dtype=None):
        shape = (num_layers, batch_size, seq_len, num_heads, head_dim)
        self.k_cache = torch.zeros(shape, device=device, dtype=dtype or torch.float32)
        self.v_cache = torch.zeros(shape, device=device, dtype=dtype or torch.float32)
        self.cache_seqlens = torch.zeros(batch_size, dtype=torch.int32, device=device)
        self.n_layers = num_layers
        self.prev_embedding = None

    def reset(self):
        self.cache_seqlens.zero_()
        self.prev_embedding = None

    def get_pos(self):
        return int(self.cache_seqlens[0])

    def get_layer_cache(self, layer_idx):
        return self.k_cache[layer_idx], self.v_cache[layer_idx]

    def advance(self, num_tokens):
        self.cache_seqlens += num_tokens
