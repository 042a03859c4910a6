"""
Independent reference computations, written from the formulas in float64, that the tests compare
the model against. Nothing here calls the implementation under test: weights are read from its
modules and every step (RoPE as complex multiplication, grouped heads by an explicit loop, the
causal mask, the softmax) is spelled out.
"""

import math

import torch


def rms(x):
    """Root mean square over the last dimension, in float64."""
    return x.double().pow(2).mean(-1).sqrt()


def rms_norm(x):
    """x / sqrt(mean(x**2)) over the last dimension, in float64."""
    x = x.double()
    return x / x.pow(2).mean(-1, keepdim=True).sqrt()


def linear(x, module):
    """x @ W^T for a bias-free nn.Linear, in float64."""
    return x.double() @ module.weight.double().T


def rope_complex(x, cos, sin):
    """RoPE as complex multiplication: pair i is (x_i, x_{i+D/2}) = x_i + i*x_{i+D/2}, turned by -angle,
    i.e. multiplied by cos - i*sin. x: (..., T, H, D); cos, sin: (..., T, 1, D/2)."""
    x = x.double()
    d = x.size(-1) // 2
    z = torch.complex(x[..., :d], x[..., d:]) * torch.complex(cos.double(), -sin.double())
    return torch.cat([z.real, z.imag], dim=-1)


def rope_tables(positions, head_dim, base):
    """Exact float64 cos/sin of angle t * base^(-2i/D), shape (1, len(positions), 1, D/2)."""
    t = torch.as_tensor(positions, dtype=torch.float64)
    inv_freq = base ** (-torch.arange(0, head_dim, 2, dtype=torch.float64) / head_dim)
    angles = t[:, None] * inv_freq[None, :]
    return angles.cos()[None, :, None, :], angles.sin()[None, :, None, :]


def attention_weights(q, k, prefix=0, window=None):
    """softmax(q k^T / sqrt(D) + causal mask) with query head h reading kv head h // (H // Hkv); with a left
    window W, a query also sees no key more than W positions before it (itself and the W keys before it).
    q: (B, Tq, H, D), k: (B, Tk, Hkv, D) with Tk = prefix + Tq. Returns (B, H, Tq, Tk), float64."""
    q, k = q.double(), k.double()
    B, Tq, H, D = q.shape
    Tk, Hkv = k.size(1), k.size(2)
    group = H // Hkv
    weights = torch.empty(B, H, Tq, Tk, dtype=torch.float64)
    for h in range(H):
        scores = q[:, :, h, :] @ k[:, :, h // group, :].transpose(1, 2) / math.sqrt(D)  # (B, Tq, Tk)
        for i in range(Tq):
            scores[:, i, prefix + i + 1:] = -math.inf  # query i sits at position prefix + i
            if window is not None:
                scores[:, i, :max(prefix + i - window, 0)] = -math.inf
        weights[:, h] = torch.exp(scores - scores.max(-1, keepdim=True).values)
        weights[:, h] /= weights[:, h].sum(-1, keepdim=True)
    return weights


def attention(attn, x, cos, sin, config, qk_gain=1.0, window=None):
    """Every intermediate of causal self-attention for input x (B, T, C), from the module's weights.
    cos, sin: the rotary tables at the T positions, (1, T, 1, D/2); qk_gain multiplies the normalized
    q and k (the architecture card's value); window: the layer's left window (None: full causal)."""
    B, T, C = x.shape
    H, Hkv = config.n_head, config.n_kv_head
    D = C // H
    out = {}
    out["q"] = linear(x, attn.c_q).view(B, T, H, D)
    out["k"] = linear(x, attn.c_k).view(B, T, Hkv, D)
    out["v"] = linear(x, attn.c_v).view(B, T, Hkv, D)
    out["q_rope"], out["k_rope"] = rope_complex(out["q"], cos, sin), rope_complex(out["k"], cos, sin)
    out["q_norm"], out["k_norm"] = rms_norm(out["q_rope"]), rms_norm(out["k_rope"])
    out["weights"] = attention_weights(out["q_norm"] * qk_gain, out["k_norm"] * qk_gain, window=window)  # (B, H, T, T)
    group = H // Hkv
    out["heads"] = torch.stack([out["weights"][:, h] @ out["v"][:, :, h // group, :] for h in range(H)], dim=2)
    out["heads_concat"] = torch.cat([out["heads"][:, :, h, :] for h in range(H)], dim=-1)  # (B, T, H*D)
    out["output"] = linear(out["heads_concat"], attn.c_proj)
    return out


def mlp(mlp_module, x):
    """fc, ReLU² activation and output projection of the MLP, from its weights."""
    fc = linear(x, mlp_module.c_fc)
    act = torch.relu(fc).pow(2)
    return {"fc": fc, "act": act, "output": linear(act, mlp_module.c_proj)}
