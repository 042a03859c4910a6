"""
A readable GPT in the nanochat style.

What sets it apart from GPT-2:
- rotary position embeddings (RoPE), no learned positions
- RMSNorm without learnable parameters, after the token embedding, before every attention and
  MLP (pre-norm), and before the LM head; and on each query/key head vector (QK norm)
- grouped-query attention when n_kv_head < n_head
- ReLU² in the MLP, no bias in any linear layer
- untied token embedding and LM head; logits soft-capped with 15 * tanh(logits / 15)
"""

import math
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from nanochat.engine import KVCache

ROPE_BASE = 10000  # RoFormer's theta base
LOGIT_SOFTCAP = 15.0


@dataclass
class GPTConfig:
    sequence_len: int = 1024
    vocab_size: int = 50304
    n_layer: int = 12
    n_head: int = 6  # query heads
    n_kv_head: int = 6  # key/value heads; n_kv_head < n_head means grouped-query attention
    n_embd: int = 768

    def __post_init__(self):
        self.validate()

    def validate(self):
        """Raise ValueError, naming the value, for any configuration the model cannot be built from."""
        for name in ("sequence_len", "vocab_size", "n_layer", "n_head", "n_kv_head", "n_embd"):
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

    @property
    def head_dim(self):
        return self.n_embd // self.n_head


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

    def forward(self, x, cos_sin, kv_cache=None):
        B, T, C = x.size()
        q = self.c_q(x).view(B, T, self.n_head, self.head_dim)
        k = self.c_k(x).view(B, T, self.n_kv_head, self.head_dim)
        v = self.c_v(x).view(B, T, self.n_kv_head, self.head_dim)
        cos, sin = cos_sin
        q, k = apply_rotary_emb(q, cos, sin), apply_rotary_emb(k, cos, sin)  # position lives in Q, K only
        q, k = norm(q), norm(k)  # QK norm (Henry et al. 2020; Dehghani et al. 2023): bounded logits
        q, k, v = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)  # (B, H, T, D)
        if kv_cache is not None:
            k, v = kv_cache.insert_kv(self.layer_idx, k, v)  # (B, Hkv, T_prefix + T, D)
        Tq, Tk = q.size(2), k.size(2)
        # GQA (Ainslie et al. 2023): query head h reads kv head h // (n_head // n_kv_head)
        gqa = self.n_kv_head != self.n_head
        # softmax(Q K^T / sqrt(D) + mask) V (Vaswani et al. 2017); SDPA's default scale is 1/sqrt(D)
        if Tq == Tk:
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=gqa)
        else:
            # a chunk of Tq queries after a cached prefix: query i sits at absolute position
            # Tk - Tq + i and sees the whole prefix plus the chunk up to itself
            mask = torch.ones(Tq, Tk, dtype=torch.bool, device=q.device).tril(diagonal=Tk - Tq)
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, enable_gqa=gqa)
        y = y.transpose(1, 2).contiguous().view(B, T, -1)  # heads back side by side: (B, T, H*D)
        return self.c_proj(y)


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

    def forward(self, x, cos_sin, kv_cache=None):
        # pre-norm residual block (Xiong et al. 2020): the residual stream itself is never normalized
        x = x + self.attn(norm(x), cos_sin, kv_cache)
        x = x + self.mlp(norm(x))
        return x


class GPT(nn.Module):

    def __init__(self, config):
        super().__init__()
        config.validate()
        self.config = config
        self.transformer = nn.ModuleDict(dict(
            wte=nn.Embedding(config.vocab_size, config.n_embd),
            h=nn.ModuleList([Block(config, layer_idx) for layer_idx in range(config.n_layer)]),
        ))
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)  # untied from wte
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
        self.cos, self.sin = precompute_rotary(self.rotary_seq_len, self.config.head_dim,
                                               device=self.lm_head.weight.device)

    def estimate_flops(self):
        """Training FLOPs per token: 6 per non-embedding parameter, plus attention (PaLM, Chowdhery et al. 2022, app. B)."""
        n_params = sum(p.numel() for p in self.parameters())
        n_embedding = self.transformer.wte.weight.numel()  # a lookup, not a matmul
        c = self.config
        return 6 * (n_params - n_embedding) + 12 * c.n_layer * c.n_head * c.head_dim * c.sequence_len

    def forward(self, idx, targets=None, kv_cache=None, loss_reduction="mean"):
        T0 = 0 if kv_cache is None else kv_cache.get_pos()
        self._check_inputs(idx, targets, T0, loss_reduction)
        B, T = idx.size()
        cos_sin = self.cos[:, T0:T0 + T], self.sin[:, T0:T0 + T]  # RoPE resumes at the cache position

        x = self.transformer.wte(idx)  # (B, T, C)
        x = norm(x)
        for block in self.transformer.h:
            x = block(x, cos_sin, kv_cache)
        x = norm(x)

        logits = self.lm_head(x)  # (B, T, V)
        logits = logits.to(torch.promote_types(logits.dtype, torch.float32))  # at least float32 for the softmax
        # soft cap (Gemma 2, Team et al. 2024): smooth, and |logit| < 15 whatever the activations
        logits = LOGIT_SOFTCAP * torch.tanh(logits / LOGIT_SOFTCAP)
        if targets is None:
            return logits
        # per-token losses come back flat, (B*T,), with loss_reduction='none'; -1 marks ignored targets
        return F.cross_entropy(logits.view(-1, logits.size(-1)), targets.view(-1),
                               ignore_index=-1, reduction=loss_reduction)

    def _check_inputs(self, idx, targets, T0, loss_reduction):
        V = self.config.vocab_size
        if not (torch.is_tensor(idx) and idx.ndim == 2 and _is_integer(idx)):
            raise ValueError(f"idx must be a 2-D (B, T) tensor of integer token ids, got {_describe(idx)}")
        T = idx.size(1)
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
        if not (torch.is_tensor(targets) and _is_integer(targets) and targets.shape == idx.shape):
            raise ValueError(f"targets must be an integer tensor of the same shape as idx "
                             f"{tuple(idx.shape)}, got {_describe(targets)}")
        if targets.device.type == "cpu":
            lo, hi = (int(v) for v in torch.aminmax(targets))
            if lo < -1 or hi >= V:
                raise ValueError(f"targets must lie in [0, {V}) or be -1 (ignored), got values in [{lo}, {hi}]")

    @torch.inference_mode()
    def generate(self, tokens, max_tokens, temperature=1.0, top_k=None, seed=42):
        """Stream `max_tokens` sampled token ids after the prompt `tokens` (a list of ints), batch 1, with a KV cache."""
        if not tokens or not all(isinstance(t, int) and 0 <= t < self.config.vocab_size for t in tokens):
            raise ValueError(f"tokens must be a non-empty list of ints in [0, {self.config.vocab_size}), got {tokens!r}")
        if not isinstance(max_tokens, int) or max_tokens < 0:
            raise ValueError(f"max_tokens must be a non-negative int, got {max_tokens!r}")
        if temperature < 0:
            raise ValueError(f"temperature must be >= 0 (0 is greedy), got {temperature!r}")
        if top_k is not None and (not isinstance(top_k, int) or top_k < 1):
            raise ValueError(f"top_k must be None or a positive int, got {top_k!r}")
        if len(tokens) + max_tokens > self.rotary_seq_len:
            raise ValueError(f"prompt of {len(tokens)} plus max_tokens={max_tokens} exceeds the rotary cache "
                             f"of {self.rotary_seq_len} positions")
        device = self.lm_head.weight.device
        rng = torch.Generator(device=device).manual_seed(seed)
        c = self.config
        cache = KVCache(1, c.n_kv_head, len(tokens) + max_tokens, c.head_dim, c.n_layer)
        logits = self.forward(torch.tensor([tokens], device=device), kv_cache=cache)[:, -1, :]  # (1, V)
        for i in range(max_tokens):
            if temperature == 0:
                next_id = logits.argmax(dim=-1, keepdim=True)
            else:
                logits = logits / temperature
                if top_k is not None:
                    kth = torch.topk(logits, min(top_k, logits.size(-1))).values[:, -1:]
                    logits = logits.masked_fill(logits < kth, -float("inf"))
                next_id = torch.multinomial(F.softmax(logits, dim=-1), num_samples=1, generator=rng)
            yield next_id.item()
            if i + 1 < max_tokens:
                logits = self.forward(next_id, kv_cache=cache)[:, -1, :]


def _is_integer(t):
    return not (t.dtype.is_floating_point or t.dtype.is_complex or t.dtype == torch.bool)


def _describe(x):
    return f"shape {tuple(x.shape)} dtype {x.dtype}" if torch.is_tensor(x) else f"{type(x).__name__} {x!r}"
