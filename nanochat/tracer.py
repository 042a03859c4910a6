"""
See every component on a real forward and backward pass, in the spirit of TransformerLens's
`run_with_cache`: hooks on the model's own modules, and wrappers around the functions its forward
calls (`norm`, `apply_rotary_emb` in the implementation's module; torch's scaled dot-product
attention and cross-entropy). Nothing of the forward pass is re-implemented, so the same tracer
works on any implementation of the contract (see nanochat/contract.py).

    with trace(model) as cache:
        loss = model(idx, targets)
        loss.backward()
    cache["transformer.h.0.attn.q_rope"]        # (B, T, H, D), detached
    cache.stats("transformer.h.0.attn.q_rope")  # shape, dtype, mean, std, min, max, rms, zeros
    cache.grads["lm_head.weight"]               # parameter gradients after backward

Names, per block i (prefix transformer.h.i):
    input, output, output.grad          residual stream into / out of the block, and its gradient
    attn.input                          norm(x), the attention's input
    attn.q, attn.k, attn.v              projections as heads: (B, T, H, D), (B, T, Hkv, D)
    attn.q_rope, attn.k_rope            after RoPE
    attn.q_norm, attn.k_norm            after QK norm
    attn.sdpa_q, attn.sdpa_k, attn.sdpa_v, attn.sdpa_out
                                        (B, H, T, D), k and v (B, Hkv, T, D), at torch's scaled
                                        dot-product attention. An implementation that computes
                                        attention by hand gets (B, heads, T, D) views of its
                                        observed q_norm, k_norm, v and heads_concat instead, and
                                        those names are listed in cache.derived
    attn.heads_concat, attn.output      (B, T, C) into and out of c_proj
    mlp.input, mlp.fc, mlp.act, mlp.output
                                        norm(x), c_fc output (B, T, 4C), ReLU² output, c_proj output
and for the whole model: idx, transformer.wte.output, lm_head.input, lm_head.output (raw logits),
logits (after the softcap), loss. Where the model has nanochat 92d63d4's modern components:
    transformer.h.i.attn.ve_gate        the value-embedding gate's raw output, before gate_scale * sigmoid
    value_embeds.i.output               the value embedding of layer i, (B, T, Hkv * D)
    smear_gate.output                   the smear gate's raw output, before smear_lambda * sigmoid
"""

import math
from collections import Counter
from collections.abc import Mapping
from contextlib import contextmanager
from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class TensorStats:
    shape: tuple
    dtype: str
    mean: float
    std: float
    min: float
    max: float
    rms: float
    zero_fraction: float

    # elements reduced at a time: bounded temporaries for big tensors (the embedding gradient of the
    # 561M model has 84M elements), and no float64 copy of a float32 tensor
    CHUNK = 1 << 22

    @classmethod
    def of(cls, t):
        x = t.detach().reshape(-1)
        n = x.numel()
        shape, dtype = tuple(t.shape), str(t.dtype).removeprefix("torch.")
        if n == 0:
            return cls(shape, dtype, math.nan, 0.0, math.nan, math.nan, math.nan, math.nan)
        parts, lows, highs, zeros = [], [], [], 0
        for chunk in x.split(cls.CHUNK):
            c = chunk if chunk.dtype in (torch.float32, torch.float64) else chunk.double()
            var, mean = torch.var_mean(c, correction=0)  # one pass per chunk
            parts.append((c.numel(), mean.item(), var.item()))
            low, high = torch.aminmax(c)
            lows.append(low)
            highs.append(high)
            zeros += c.numel() - torch.count_nonzero(c).item()
        # combine the chunks' means and variances exactly (Chan, Golub & LeVeque 1979), in float64
        mean = sum(k * m for k, m, _ in parts) / n
        squared_deviations = sum(k * (v + (m - mean) ** 2) for k, m, v in parts)
        return cls(
            shape=shape, dtype=dtype, mean=mean,
            std=math.sqrt(squared_deviations / (n - 1)) if n > 1 else 0.0,
            # torch's min/max over the chunk results, so that a NaN anywhere propagates
            min=torch.stack(lows).min().item(), max=torch.stack(highs).max().item(),
            rms=math.sqrt(squared_deviations / n + mean ** 2), zero_fraction=zeros / n,
        )


class ActivationCache(Mapping):
    """Detached tensors by dotted name, the parameter gradients, and facts about the calls seen."""

    def __init__(self, model):
        self.config = model.config
        self._tensors = {}
        self.grads = {}  # parameter name -> gradient, snapshot when the trace ends
        self.calls = Counter()  # name -> how many times it was recorded (the latest value is kept)
        self.attention_calls = {}  # "transformer.h.i.attn" -> kwargs of its last SDPA call
        # names whose tensors were not seen at a call but laid out from observed ones (the sdpa_*
        # views of an implementation without an SDPA call); everything else was observed
        self.derived = set()

    def __getitem__(self, name):
        return self._tensors[name]

    def __iter__(self):
        return iter(self._tensors)

    def __len__(self):
        return len(self._tensors)

    def _store(self, name, tensor):
        self._tensors[name] = tensor.detach()
        self.calls[name] += 1
        self.derived.discard(name)

    def _store_derived(self, name, tensor):
        self._store(name, tensor)
        self.derived.add(name)

    def stats(self, name):
        return TensorStats.of(self._tensors[name])

    def attention_pattern(self, layer, qk_gain=1.0, window=None):
        """Attention weights (B, H, T, T) of a layer, derived for display from its captured
        post-norm q and k: softmax(g q . g k / sqrt(D)) under the causal mask (and a left window W:
        a query sees itself and W keys before it), g the architecture's QK gain. Valid for a pass
        without a KV-cache prefix."""
        p = f"transformer.h.{layer}.attn"
        q = self._tensors[f"{p}.q_norm"].float().transpose(1, 2) * qk_gain  # (B, H, T, D)
        k = self._tensors[f"{p}.k_norm"].float().transpose(1, 2) * qk_gain  # (B, Hkv, T, D)
        k = k.repeat_interleave(q.size(1) // k.size(1), dim=1)
        scores = q @ k.transpose(-2, -1) / math.sqrt(q.size(-1))
        T = q.size(2)
        ahead = torch.arange(T, device=q.device)[None, :] - torch.arange(T, device=q.device)[:, None]  # key - query
        hidden = (ahead > 0) if window is None else (ahead > 0) | (ahead < -window)
        return scores.masked_fill(hidden, float("-inf")).softmax(dim=-1)


def _globals_of(cls):
    forward = getattr(cls, "forward", None)
    return getattr(forward, "__globals__", None)


@contextmanager
def trace(model):
    """Record the named intermediates of every forward (and the gradients of every backward) run
    inside the block. Hooks and wrappers are always removed on exit, even after an error."""
    cfg = model.config
    H, Hkv, D = cfg.n_head, cfg.n_kv_head, cfg.n_embd // cfg.n_head
    # where the model's code looks its functions up: the globals of its classes' forward methods (the
    # implementation's module, or a sibling module of its package that defines Block or the attention)
    namespaces = list({id(ns): ns for ns in (_globals_of(type(m)) for m in
                                             (model, model.transformer.h[0], model.transformer.h[0].attn,
                                              model.transformer.h[0].mlp)) if ns is not None}.values())
    cache = ActivationCache(model)
    handles, patches = [], []
    state = {"attn": None, "rope": 0, "norm": 0, "sdpa": False, "idx_shape": None}

    def save_output(name, heads=None):
        def hook(module, args, output):
            if heads is not None:  # a projection: show it as heads, (B, T, heads, D)
                output = output.view(*output.shape[:-1], heads, D)
            cache._store(name, output)
        return hook

    def save_input(name):
        def hook(module, args):
            cache._store(name, args[0])
        return hook

    def save_with_grad(name):
        def hook(module, args, output):
            cache._store(name, output)
            if output.requires_grad:
                output.register_hook(lambda g: cache._store(f"{name}.grad", g))
        return hook

    def enter_attention(prefix):
        def hook(module, args):
            state.update(attn=prefix, rope=0, norm=0, sdpa=False)
            cache._store(f"{prefix}.input", args[0])
        return hook

    def leave_attention(prefix):
        def hook(module, args, output):
            state["attn"] = None
            cache._store(f"{prefix}.output", output)
            if not state["sdpa"]:
                lay_out_attention_core(prefix)
        return hook

    def lay_out_attention_core(prefix):
        # No call to torch's SDPA in this forward: the attention was computed by hand. What entered
        # it are the observed q_norm, k_norm, v, and what left it is the observed heads_concat; store
        # them in SDPA's (B, heads, T, D) layout under the sdpa_* names, marked as derived.
        # (Layout only, no arithmetic; with a KV-cache prefix the real k and v would be longer.)
        sources = {"sdpa_q": "q_norm", "sdpa_k": "k_norm", "sdpa_v": "v", "sdpa_out": "heads_concat"}
        seen = {name: cache._tensors.get(f"{prefix}.{src}") for name, src in sources.items()}
        if any(t is None for t in seen.values()):
            return
        concat = seen["sdpa_out"]
        seen["sdpa_out"] = concat.reshape(*concat.shape[:-1], H, D)
        for name, t in seen.items():
            cache._store_derived(f"{prefix}.{name}", t.transpose(1, 2))

    def which(x, names, counter):
        # q or k? match the storage the tensor came from, else the order of the calls (q first)
        p = state["attn"]
        for name in names:
            seen = cache._tensors.get(f"{p}.{name}")
            if seen is not None and seen.data_ptr() == x.data_ptr() and seen.shape == x.shape:
                return name
        return names[min(state[counter], 1)]

    def capture_in_attention(original, inputs, outputs, counter):
        # wrap norm or apply_rotary_emb: inside an attention call, store the result under the name
        # of what went in (q -> q_rope, k_rope -> k_norm, ...); elsewhere just pass through
        def wrapper(x, *args, **kwargs):
            out = original(x, *args, **kwargs)
            if state["attn"] is not None:
                name = dict(zip(inputs, outputs))[which(x, inputs, counter)]
                cache._store(f"{state['attn']}.{name}", out)
                state[counter] += 1
            return out
        wrapper.__name__, wrapper.__doc__ = original.__name__, original.__doc__
        return wrapper

    def sdpa_wrapper(original):
        def scaled_dot_product_attention(q, k, v, *args, **kwargs):
            out = original(q, k, v, *args, **kwargs)
            p = state["attn"]
            if p is not None:
                state["sdpa"] = True
                for name, t in (("sdpa_q", q), ("sdpa_k", k), ("sdpa_v", v), ("sdpa_out", out)):
                    cache._store(f"{p}.{name}", t)
                cache.attention_calls[p] = {k_: v_ for k_, v_ in kwargs.items() if k_ != "attn_mask"} | {
                    "attn_mask": None if kwargs.get("attn_mask") is None else tuple(kwargs["attn_mask"].shape)}
            return out
        return scaled_dot_product_attention

    def cross_entropy_wrapper(original):
        def cross_entropy(logits, target, *args, **kwargs):
            if state["idx_shape"] is not None and logits.ndim == 2:
                cache._store("logits", logits.view(*state["idx_shape"], logits.size(-1)))
            return original(logits, target, *args, **kwargs)
        return cross_entropy

    def model_pre(module, args, kwargs):
        idx = args[0] if args else kwargs["idx"]
        state["idx_shape"] = tuple(idx.shape)
        cache._store("idx", idx)

    def model_post(module, args, kwargs, output):
        if torch.is_tensor(output) and output.ndim == 0:
            cache._store("loss", output)
        elif torch.is_tensor(output) and output.ndim == 3:
            cache._store("logits", output)
        elif torch.is_tensor(output):
            cache._store("loss", output)  # per-token losses (loss_reduction='none')

    def patch(namespace, attr, make):
        original = namespace[attr]
        namespace[attr] = make(original)
        patches.append((namespace, attr, original))

    try:
        handles.append(model.register_forward_pre_hook(model_pre, with_kwargs=True))
        handles.append(model.register_forward_hook(model_post, with_kwargs=True))
        handles.append(model.transformer.wte.register_forward_hook(save_with_grad("transformer.wte.output")))
        for i, block in enumerate(model.transformer.h):
            p = f"transformer.h.{i}"
            attn, mlp = block.attn, block.mlp
            handles += [
                block.register_forward_pre_hook(save_input(f"{p}.input")),
                block.register_forward_hook(save_with_grad(f"{p}.output")),
                attn.register_forward_pre_hook(enter_attention(f"{p}.attn")),
                attn.register_forward_hook(leave_attention(f"{p}.attn")),
                attn.c_q.register_forward_hook(save_output(f"{p}.attn.q", heads=H)),
                attn.c_k.register_forward_hook(save_output(f"{p}.attn.k", heads=Hkv)),
                attn.c_v.register_forward_hook(save_output(f"{p}.attn.v", heads=Hkv)),
                attn.c_proj.register_forward_pre_hook(save_input(f"{p}.attn.heads_concat")),
                mlp.register_forward_pre_hook(save_input(f"{p}.mlp.input")),
                mlp.c_fc.register_forward_hook(save_output(f"{p}.mlp.fc")),
                mlp.c_proj.register_forward_pre_hook(save_input(f"{p}.mlp.act")),
                mlp.register_forward_hook(save_output(f"{p}.mlp.output")),
            ]
        handles.append(model.lm_head.register_forward_pre_hook(save_input("lm_head.input")))
        handles.append(model.lm_head.register_forward_hook(save_output("lm_head.output")))
        # the modern components (nanochat 92d63d4), where the model has them: the value embeddings and their
        # gates' raw (pre-sigmoid) outputs, and the smear gate's
        for i, block in enumerate(model.transformer.h):
            if getattr(block.attn, "ve_gate", None) is not None:
                handles.append(block.attn.ve_gate.register_forward_hook(save_output(f"transformer.h.{i}.attn.ve_gate")))
        for key, embedding in getattr(model, "value_embeds", {}).items():
            handles.append(embedding.register_forward_hook(save_output(f"value_embeds.{key}.output")))
        if isinstance(getattr(model, "smear_gate", None), torch.nn.Module):
            handles.append(model.smear_gate.register_forward_hook(save_output("smear_gate.output")))
        for ns in namespaces:
            if callable(ns.get("apply_rotary_emb")):
                patch(ns, "apply_rotary_emb",
                      lambda f: capture_in_attention(f, ("q", "k"), ("q_rope", "k_rope"), "rope"))
            if callable(ns.get("norm")):
                patch(ns, "norm", lambda f: capture_in_attention(f, ("q_rope", "k_rope"), ("q_norm", "k_norm"), "norm"))
        # torch's functions, wherever the implementation looks them up (F.x, or x imported by name)
        for attr, make in (("scaled_dot_product_attention", sdpa_wrapper), ("cross_entropy", cross_entropy_wrapper)):
            original = getattr(F, attr)
            for ns in [vars(F), *namespaces]:
                if ns.get(attr) is original:
                    patch(ns, attr, make)
        yield cache
    finally:
        for handle in handles:
            handle.remove()
        for namespace, attr, original in reversed(patches):
            namespace[attr] = original
        cache.grads = {name: p.grad.detach() for name, p in model.named_parameters() if p.grad is not None}
