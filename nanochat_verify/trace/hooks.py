"""
See every component on a real forward and backward pass, in the spirit of TransformerLens's
`run_with_cache`: hooks on the model's own modules, and wrappers around the functions its forward
calls (`norm`, `apply_rotary_emb` in the implementation's module; torch's scaled dot-product
attention and cross-entropy). Nothing of the forward pass is re-implemented, so the same tracer
works on any implementation of the contract (see nanochat_verify/contract/).

A hook never raises into the implementation's forward pass: what it cannot observe (a module the model
does not have, a projection that is not laid out as heads of head_dim) is left out, with the reason, and
reading such a name raises NotObservable, which the suite reports as "not observable in this
implementation" rather than as a failure of the implementation.

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
logits (after the softcap), loss. Where the model has a modern component, the output of every module
its parameter groups declare (nanochat_verify/components.py), as `<module>.output`, e.g.
    transformer.h.i.attn.ve_gate.output the value-embedding gate's raw output, before gate_scale * sigmoid
    value_embeds.i.output               the value embedding of layer i, (B, T, Hkv * D)
    smear_gate.output                   the smear gate's raw output, before smear_lambda * sigmoid
"""

import math
from collections import Counter
from collections.abc import Mapping
from contextlib import contextmanager

import torch
import torch.nn.functional as F

from nanochat_verify.trace.stats import TensorStats

# what each name needs of the implementation, for the reason of a name that was not observed
NEEDS = {
    "q_rope": "apply_rotary_emb called on the queries inside the attention's forward",
    "k_rope": "apply_rotary_emb called on the keys inside the attention's forward",
    "q_norm": "norm called on the rotated queries inside the attention's forward",
    "k_norm": "norm called on the rotated keys inside the attention's forward",
    "sdpa_q": "a call of torch's scaled_dot_product_attention, or the observed q_norm, k_norm, v and c_proj input",
    "logits": "forward returning (B, T, vocab_size) logits, or a cross_entropy call on them",
    "loss": "forward returning the loss when given targets",
}


class NotObservable(KeyError):
    """A name the tracer could not observe in this implementation; `reason` says what is missing."""

    def __init__(self, name, reason):
        super().__init__(name)
        self.name, self.reason = name, reason

    def __str__(self):
        return f"not observable in this implementation: {self.name} ({self.reason})"


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
        self.unobservable = {}  # name (or name prefix) -> why the tracer could not observe it

    def __getitem__(self, name):
        try:
            return self._tensors[name]
        except KeyError:
            raise NotObservable(name, self.why_missing(name)) from None

    def why_missing(self, name):
        """Why `name` holds nothing: what a hook recorded, or what the name needs of the implementation."""
        for key, reason in self.unobservable.items():
            if name == key or name.startswith(key + "."):
                return reason
        leaf = name.rsplit(".", 1)[-1]
        if leaf in NEEDS or leaf.startswith("sdpa_"):
            return f"needs {NEEDS.get(leaf, NEEDS['sdpa_q'])}"
        return "no forward of the traced model produced it"

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
        return TensorStats.of(self[name])

    def attention_pattern(self, layer, qk_gain=1.0, window=None):
        """Attention weights (B, H, T, T) of a layer, derived for display from its captured
        post-norm q and k: softmax(g q . g k / sqrt(D)) under the causal mask (and a left window W:
        a query sees itself and W keys before it), g the architecture's QK gain. Valid for a pass
        without a KV-cache prefix."""
        p = f"transformer.h.{layer}.attn"
        q = self[f"{p}.q_norm"].float().transpose(1, 2) * qk_gain  # (B, H, T, D)
        k = self[f"{p}.k_norm"].float().transpose(1, 2) * qk_gain  # (B, Hkv, T, D)
        k = k.repeat_interleave(q.size(1) // k.size(1), dim=1)
        scores = q @ k.transpose(-2, -1) / math.sqrt(q.size(-1))
        T = q.size(2)
        ahead = torch.arange(T, device=q.device)[None, :] - torch.arange(T, device=q.device)[:, None]  # key - query
        hidden = (ahead > 0) if window is None else (ahead > 0) | (ahead < -window)
        return scores.masked_fill(hidden, float("-inf")).softmax(dim=-1)


def _globals_of(cls):
    forward = getattr(cls, "forward", None)
    return getattr(forward, "__globals__", None)


def _submodule(module, path):
    """module.a.b (ModuleDict and ModuleList entries included), or None where the model has no such module."""
    for part in path.split("."):
        module = getattr(module, part, None) if not part.isdigit() else (
            module[int(part)] if isinstance(module, (torch.nn.ModuleList, torch.nn.Sequential)) and
            int(part) < len(module) else None)
        if module is None:
            return None
    return module


class _Tracer:
    """The hooks and wrappers of one trace() block. Every hook records into the cache, or records why it could
    not; none raises into the forward pass."""

    def __init__(self, model):
        self.model, self.cache = model, ActivationCache(model)
        cfg = model.config
        self.heads = {"q": getattr(cfg, "n_head", None), "kv": getattr(cfg, "n_kv_head", None)}
        n_embd, n_head = getattr(cfg, "n_embd", None), getattr(cfg, "n_head", None)
        self.head_dim = n_embd // n_head if n_embd and n_head else None
        self.blocks = list(getattr(getattr(model, "transformer", None), "h", None) or [])
        self.handles, self.patches = [], []
        self.state = {"attn": None, "rope": 0, "norm": 0, "sdpa": False, "idx_shape": None}

    # ---- recording, safely ----------------------------------------------------------------------

    def record(self, name, tensor, heads=None, tokens_first=False):
        """Store `tensor` under `name`; `tokens_first`: a tensor of the residual stream or a projection, laid out
        (B, T, ...) like the tokens of the forward (a model that flattens to (B*T, C) is left out, with why)."""
        idx_shape = self.state["idx_shape"]
        if tokens_first and idx_shape is not None and tuple(tensor.shape[:len(idx_shape)]) != idx_shape:
            self.cache._tensors.pop(name, None)
            self.cache.unobservable[name] = (f"its tensor {tuple(tensor.shape)} is not laid out (B, T, ...) as the "
                                             f"tokens {idx_shape} are")
            return
        try:
            if heads is not None:  # a projection: shown as heads, (B, T, heads, head_dim)
                tensor = tensor.view(*tensor.shape[:-1], heads, self.head_dim)
            self.cache._store(name, tensor)
        except Exception as e:  # noqa: BLE001 - another layout is the implementation's right, not an error
            self.cache.unobservable[name] = (f"its output {tuple(tensor.shape)} is not laid out as {heads} heads of "
                                             f"head_dim {self.head_dim}: {type(e).__name__}")

    def hook(self, path, name, kind="output", heads=None, grad=False, tokens_first=True):
        """Record the output (or the first input) of the module at `path` under `name` (and its gradient, `grad`);
        `tokens_first`: it is laid out (B, T, ...), as every tensor of the residual stream and each projection."""
        module = _submodule(self.model, path) if path else self.model
        if module is None:
            self.cache.unobservable[name] = f"the model has no module {path}"
            return
        if kind == "input":
            def pre(module, args):
                if args and torch.is_tensor(args[0]):
                    self.record(name, args[0], tokens_first=tokens_first)
            self.handles.append(module.register_forward_pre_hook(pre))
            return

        def post(module, args, output):
            if not torch.is_tensor(output):
                self.cache.unobservable[name] = f"{path} returned {type(output).__name__}, not a tensor"
                return
            self.record(name, output, heads, tokens_first)
            if grad and output.requires_grad:
                output.register_hook(lambda g: self.record(f"{name}.grad", g, tokens_first=tokens_first))
        self.handles.append(module.register_forward_hook(post))

    # ---- the model, its blocks, the modern components -------------------------------------------

    def hook_model(self):
        def model_pre(module, args, kwargs):
            idx = args[0] if args else kwargs.get("idx")
            if torch.is_tensor(idx):
                self.state["idx_shape"] = tuple(idx.shape)
                self.record("idx", idx)

        def model_post(module, args, kwargs, output):
            if torch.is_tensor(output) and output.ndim == 3:
                self.record("logits", output)
            elif torch.is_tensor(output):
                self.record("loss", output)  # a scalar, or per-token losses (loss_reduction='none')
        self.handles.append(self.model.register_forward_pre_hook(model_pre, with_kwargs=True))
        self.handles.append(self.model.register_forward_hook(model_post, with_kwargs=True))
        self.hook("transformer.wte", "transformer.wte.output", grad=True)
        self.hook("lm_head", "lm_head.input", kind="input")
        self.hook("lm_head", "lm_head.output")

    def hook_block(self, i):
        p = f"transformer.h.{i}"
        self.hook(p, f"{p}.input", kind="input")
        self.hook(p, f"{p}.output", grad=True)
        attn = _submodule(self.model, f"{p}.attn")
        if attn is None:
            self.cache.unobservable[f"{p}.attn"] = f"the model has no module {p}.attn"
        else:
            self.handles.append(attn.register_forward_pre_hook(self.enter_attention(f"{p}.attn")))
            self.handles.append(attn.register_forward_hook(self.leave_attention(f"{p}.attn")))
        for proj, name, heads in (("c_q", "q", self.heads["q"]), ("c_k", "k", self.heads["kv"]),
                                  ("c_v", "v", self.heads["kv"])):
            self.hook(f"{p}.attn.{proj}", f"{p}.attn.{name}", heads=heads)
        self.hook(f"{p}.attn.c_proj", f"{p}.attn.heads_concat", kind="input")
        self.hook(f"{p}.mlp", f"{p}.mlp.input", kind="input")
        self.hook(f"{p}.mlp.c_fc", f"{p}.mlp.fc")
        self.hook(f"{p}.mlp.c_proj", f"{p}.mlp.act", kind="input")
        self.hook(f"{p}.mlp", f"{p}.mlp.output")

    def hook_modern_components(self):
        """The output of every module a modern component's parameter groups declare, where the model has it
        (value embeddings and their gates' raw, pre-sigmoid outputs; the smear gate's)."""
        from nanochat_verify.components import ALL
        for group in (g for c in ALL if c.feature for g in c.parameters if g.module):
            paths = [group.module.format(i=i) for i in range(len(self.blocks))] if "{i}" in group.module \
                else [group.module]
            for path in paths:
                if isinstance(_submodule(self.model, path), torch.nn.Module):
                    self.hook(path, f"{path}.output", tokens_first=False)  # the smear gate reads positions 1..T-1

    # ---- inside the attention: which call saw q, which k ----------------------------------------

    def enter_attention(self, prefix):
        def hook(module, args):
            self.state.update(attn=prefix, rope=0, norm=0, sdpa=False)
            if args and torch.is_tensor(args[0]):
                self.record(f"{prefix}.input", args[0])
        return hook

    def leave_attention(self, prefix):
        def hook(module, args, output):
            self.state["attn"] = None
            if torch.is_tensor(output):
                self.record(f"{prefix}.output", output)
            if not self.state["sdpa"]:
                self.lay_out_attention_core(prefix)
        return hook

    def lay_out_attention_core(self, prefix):
        # No call to torch's SDPA in this forward: the attention was computed by hand. What entered
        # it are the observed q_norm, k_norm, v, and what left it is the observed heads_concat; store
        # them in SDPA's (B, heads, T, D) layout under the sdpa_* names, marked as derived.
        # (Layout only, no arithmetic; with a KV-cache prefix the real k and v would be longer.)
        sources = {"sdpa_q": "q_norm", "sdpa_k": "k_norm", "sdpa_v": "v", "sdpa_out": "heads_concat"}
        seen = {name: self.cache._tensors.get(f"{prefix}.{src}") for name, src in sources.items()}
        if any(t is None for t in seen.values()) or self.heads["q"] is None:
            return
        try:
            concat = seen["sdpa_out"]
            seen["sdpa_out"] = concat.reshape(*concat.shape[:-1], self.heads["q"], self.head_dim)
            for name, t in seen.items():
                self.cache._store_derived(f"{prefix}.{name}", t.transpose(1, 2))
        except Exception as e:  # noqa: BLE001
            self.cache.unobservable[f"{prefix}.sdpa_out"] = f"the attention output is not laid out as heads ({e})"

    def which(self, x, names, counter):
        # q or k? match the storage the tensor came from, else the order of the calls (q first)
        p = self.state["attn"]
        for name in names:
            seen = self.cache._tensors.get(f"{p}.{name}")
            if seen is not None and seen.data_ptr() == x.data_ptr() and seen.shape == x.shape:
                return name
        return names[min(self.state[counter], 1)]

    def capture_in_attention(self, original, inputs, outputs, counter):
        # wrap norm or apply_rotary_emb: inside an attention call, store the result under the name
        # of what went in (q -> q_rope, k_rope -> k_norm, ...); elsewhere just pass through
        def wrapper(x, *args, **kwargs):
            out = original(x, *args, **kwargs)
            if self.state["attn"] is not None and torch.is_tensor(x) and torch.is_tensor(out):
                name = dict(zip(inputs, outputs))[self.which(x, inputs, counter)]
                self.record(f"{self.state['attn']}.{name}", out)
                self.state[counter] += 1
            return out
        wrapper.__name__, wrapper.__doc__ = original.__name__, original.__doc__
        return wrapper

    def sdpa_wrapper(self, original):
        def scaled_dot_product_attention(q, k, v, *args, **kwargs):
            out = original(q, k, v, *args, **kwargs)
            p = self.state["attn"]
            if p is not None:
                self.state["sdpa"] = True
                for name, t in (("sdpa_q", q), ("sdpa_k", k), ("sdpa_v", v), ("sdpa_out", out)):
                    self.record(f"{p}.{name}", t)
                mask = kwargs.get("attn_mask")
                self.cache.attention_calls[p] = {k_: v_ for k_, v_ in kwargs.items() if k_ != "attn_mask"} | {
                    "attn_mask": None if mask is None else tuple(mask.shape)}
            return out
        return scaled_dot_product_attention

    def cross_entropy_wrapper(self, original):
        def cross_entropy(logits, target, *args, **kwargs):
            shape = self.state["idx_shape"]
            if shape is not None and logits.ndim == 2 and logits.size(0) == math.prod(shape):
                self.record("logits", logits.view(*shape, logits.size(-1)))
            return original(logits, target, *args, **kwargs)
        return cross_entropy

    # ---- the functions the forward calls ---------------------------------------------------------

    def namespaces(self):
        """Where the model's code looks its functions up: the globals of its classes' forward methods (the
        implementation's module, or a sibling module of its package that defines Block or the attention)."""
        modules = [self.model] + [m for b in self.blocks[:1] for m in (b, getattr(b, "attn", None), getattr(b, "mlp", None))]
        found = (_globals_of(type(m)) for m in modules if m is not None)
        return list({id(ns): ns for ns in found if ns is not None}.values())

    def patch(self, namespace, attr, make):
        original = namespace[attr]
        namespace[attr] = make(original)
        self.patches.append((namespace, attr, original))

    def wrap_functions(self):
        namespaces = self.namespaces()
        for ns in namespaces:
            if callable(ns.get("apply_rotary_emb")):
                self.patch(ns, "apply_rotary_emb",
                           lambda f: self.capture_in_attention(f, ("q", "k"), ("q_rope", "k_rope"), "rope"))
            if callable(ns.get("norm")):
                self.patch(ns, "norm",
                           lambda f: self.capture_in_attention(f, ("q_rope", "k_rope"), ("q_norm", "k_norm"), "norm"))
        # torch's functions, wherever the implementation looks them up (F.x, or x imported by name)
        for attr, make in (("scaled_dot_product_attention", self.sdpa_wrapper),
                           ("cross_entropy", self.cross_entropy_wrapper)):
            original = getattr(F, attr)
            for ns in [vars(F), *namespaces]:
                if ns.get(attr) is original:
                    self.patch(ns, attr, make)

    def install(self):
        self.hook_model()
        for i in range(len(self.blocks)):
            self.hook_block(i)
        self.hook_modern_components()
        self.wrap_functions()

    def remove(self):
        for handle in self.handles:
            handle.remove()
        for namespace, attr, original in reversed(self.patches):
            namespace[attr] = original
        self.cache.grads = {name: p.grad.detach() for name, p in self.model.named_parameters() if p.grad is not None}


@contextmanager
def trace(model):
    """Record the named intermediates of every forward (and the gradients of every backward) run
    inside the block. Hooks and wrappers are always removed on exit, even after an error."""
    tracer = _Tracer(model)
    try:
        tracer.install()
        yield tracer.cache
    finally:
        tracer.remove()
