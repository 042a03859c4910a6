"""
A deliberately naive second implementation of the nanochat GPT contract (see /work/shared/SPEC.md).

What it is for:
1. an oracle: load one state_dict into this model and into nanochat/gpt.py and compare logits and
   losses; the two are written differently, so a bug they share is unlikely;
2. a second implementation the whole suite must pass: `pytest --gpt-impl tests/reference_gpt.py`.
   A test that only passes on nanochat/gpt.py is testing its accidents, not the contract.

Everything here is spelled out by hand rather than with torch's fused helpers: RMSNorm as
x * rsqrt(mean(x^2) + eps), RoPE as a multiplication by a complex phase, grouped-query attention by
indexing kv heads per query head, an explicit score matrix, boolean causal mask and softmax. It is
written for clarity, not speed. No input validation beyond what torch does on its own.
"""

import math
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F


@dataclass
class GPTConfig:
    sequence_len: int = 1024
    vocab_size: int = 50304
    n_layer: int = 12
    n_head: int = 6
    n_kv_head: int = 6
    n_embd: int = 768


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


def rotary_tables(n_positions, head_dim, device=None):
    """cos and sin of t * inv_freq_j, shape (1, n_positions, 1, head_dim/2), in bfloat16.
    The angles are computed in float64, vectorised (no Python loop over positions)."""
    inv_freq = 10000.0 ** (-torch.arange(0, head_dim, 2, dtype=torch.float64, device=device) / head_dim)
    positions = torch.arange(n_positions, dtype=torch.float64, device=device)
    angles = positions[:, None] * inv_freq[None, :]  # (T, D/2)
    cos = angles.cos().to(torch.bfloat16)[None, :, None, :]
    sin = angles.sin().to(torch.bfloat16)[None, :, None, :]
    return cos, sin


class CausalSelfAttention(nn.Module):

    def __init__(self, config, layer_idx):
        super().__init__()
        self.layer_idx = layer_idx
        self.n_head = config.n_head
        self.n_kv_head = config.n_kv_head
        self.head_dim = config.n_embd // config.n_head
        self.c_q = nn.Linear(config.n_embd, self.n_head * self.head_dim, bias=False)
        self.c_k = nn.Linear(config.n_embd, self.n_kv_head * self.head_dim, bias=False)
        self.c_v = nn.Linear(config.n_embd, self.n_kv_head * self.head_dim, bias=False)
        self.c_proj = nn.Linear(config.n_embd, config.n_embd, bias=False)

    def forward(self, x, cos_sin, kv_cache=None):
        B, T, _ = x.shape
        H, Hkv, D = self.n_head, self.n_kv_head, self.head_dim
        cos, sin = cos_sin

        # 1. project to heads
        q = self.c_q(x).view(B, T, H, D)
        k = self.c_k(x).view(B, T, Hkv, D)
        v = self.c_v(x).view(B, T, Hkv, D)
        # 2. rotate queries and keys (never values), 3. then normalise each head vector (QK norm)
        q = apply_rotary_emb(q, cos, sin)
        k = apply_rotary_emb(k, cos, sin)
        q = norm(q)
        k = norm(k)
        # 4. heads first: (B, heads, T, D)
        q = q.transpose(1, 2)
        k = k.transpose(1, 2)
        v = v.transpose(1, 2)
        if kv_cache is not None:
            # the cache appends the new keys/values and hands back the whole prefix + chunk
            k, v = kv_cache.insert_kv(self.layer_idx, k, v)
        Tq, Tk = q.shape[2], k.shape[2]

        # 5. grouped-query attention: query head h reads kv head h // (H // Hkv)
        group_size = H // Hkv
        kv_head_of = torch.arange(H, device=q.device) // group_size  # (H,)
        k = k[:, kv_head_of]  # (B, H, Tk, D)
        v = v[:, kv_head_of]

        # 6. scores, causal mask, softmax, weighted sum of values
        scores = torch.matmul(q, k.transpose(-1, -2)) / math.sqrt(D)  # (B, H, Tq, Tk)
        # the Tq queries are the last Tq positions: query i sits at absolute position Tk - Tq + i
        query_pos = torch.arange(Tq, device=q.device) + (Tk - Tq)
        key_pos = torch.arange(Tk, device=q.device)
        allowed = key_pos[None, :] <= query_pos[:, None]  # (Tq, Tk), True where a key may be seen
        scores = scores.masked_fill(~allowed, float("-inf"))
        scores = scores - scores.amax(dim=-1, keepdim=True).detach()  # every row sees >= 1 key
        weights = scores.exp()
        weights = weights / weights.sum(dim=-1, keepdim=True)
        y = torch.matmul(weights, v)  # (B, H, Tq, D)

        # 7. concatenate the heads side by side and project back
        y = y.transpose(1, 2).reshape(B, Tq, H * D)
        return self.c_proj(y)


class MLP(nn.Module):

    def __init__(self, config):
        super().__init__()
        self.c_fc = nn.Linear(config.n_embd, 4 * config.n_embd, bias=False)
        self.c_proj = nn.Linear(4 * config.n_embd, config.n_embd, bias=False)

    def forward(self, x):
        h = self.c_fc(x)
        h = torch.relu(h) ** 2  # ReLU squared
        return self.c_proj(h)


class Block(nn.Module):

    def __init__(self, config, layer_idx):
        super().__init__()
        self.attn = CausalSelfAttention(config, layer_idx)
        self.mlp = MLP(config)

    def forward(self, x, cos_sin, kv_cache=None):
        # pre-norm: the branches see norm(x), the residual stream itself is left unnormalised
        after_attention = x + self.attn(norm(x), cos_sin, kv_cache)
        return after_attention + self.mlp(norm(after_attention))


class GPT(nn.Module):

    def __init__(self, config):
        super().__init__()
        self.config = config
        blocks = [Block(config, i) for i in range(config.n_layer)]
        self.transformer = nn.ModuleDict({
            "wte": nn.Embedding(config.vocab_size, config.n_embd),
            "h": nn.ModuleList(blocks),
        })
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)  # not tied to wte
        # rotary tables for 10 x sequence_len positions; derived, so not part of the state dict
        cos, sin = rotary_tables(10 * config.sequence_len, config.n_embd // config.n_head)
        self.register_buffer("cos", cos, persistent=False)
        self.register_buffer("sin", sin, persistent=False)
        self.init_weights()

    @torch.no_grad()
    def init_weights(self):
        for name, module in self.named_modules():
            if isinstance(module, nn.Linear):
                fan_out, fan_in = module.weight.shape
                std = (1.0 / math.sqrt(fan_in)) * min(1.0, math.sqrt(fan_out / fan_in))
                module.weight.normal_(0.0, std)
            elif isinstance(module, nn.Embedding):
                module.weight.normal_(0.0, 1.0)
        # zero the output projections of every residual branch, and the LM head
        for name, module in self.named_modules():
            if name == "lm_head" or name.endswith(".c_proj"):
                module.weight.zero_()
        # rebuild the rotary tables where the weights live (after to_empty() they hold garbage)
        cos, sin = rotary_tables(10 * self.config.sequence_len, self.config.n_embd // self.config.n_head,
                                 device=self.transformer.wte.weight.device)
        self.cos = cos
        self.sin = sin

    def forward(self, idx, targets=None, kv_cache=None, loss_reduction="mean"):
        B, T = idx.shape
        start = 0 if kv_cache is None else kv_cache.get_pos()  # RoPE continues after the cached prefix
        cos_sin = (self.cos[:, start:start + T], self.sin[:, start:start + T])

        x = norm(self.transformer.wte(idx))
        for block in self.transformer.h:
            x = block(x, cos_sin, kv_cache)
        x = norm(x)

        logits = self.lm_head(x)
        # at least float32 (float64 stays float64, so a double model can be gradchecked end to end)
        logits = logits.to(_compute_dtype(logits.dtype))
        logits = 15.0 * torch.tanh(logits / 15.0)  # soft cap
        if targets is None:
            return logits
        V = logits.shape[-1]
        return F.cross_entropy(logits.view(-1, V), targets.view(-1), ignore_index=-1,
                               reduction=loss_reduction)
