"""
The contract's interface, checked once: the GPTConfig fields, the forward signature and return values, the KV
cache constructor and the module names the suite reads. Where an implementation's interface differs at one
point, the difference is one finding (a test of tests/test_interface.py fails naming it), and every other test
that needs that point raises InterfaceDiffers, which the suite reports as not observable in this
implementation, never as a failure of a component (nanochat_verify/plugin/observability.py).
"""

import inspect

CONFIG_FIELDS = ("sequence_len", "vocab_size", "n_layer", "n_head", "n_kv_head", "n_embd")
FORWARD_ARGUMENTS = ("idx", "targets", "kv_cache", "loss_reduction")
CACHE_ARGUMENTS = ("batch_size", "num_heads", "seq_len", "head_dim", "num_layers")
MODULES = ("transformer.wte", "transformer.h", "lm_head")
BLOCK_MODULES = ("attn", "attn.c_q", "attn.c_k", "attn.c_v", "attn.c_proj", "mlp", "mlp.c_fc", "mlp.c_proj")


class InterfaceDiffers(LookupError):
    """The implementation's interface differs from the contract's at the point the message names."""

    def __str__(self):
        return f"not observable in this implementation: {self.args[0]}"


def signature_of(callable_):
    try:
        return inspect.signature(callable_)
    except (TypeError, ValueError):
        return None


def config_difference(config_class, kwargs):
    """Why `config_class(**kwargs)` cannot be called as the contract calls it (a field it does not take), or None."""
    sig = signature_of(config_class)
    if sig is None:
        return None
    try:
        sig.bind(**kwargs)
    except TypeError as e:
        fields = ", ".join(p for p in sig.parameters if p != "self")
        missing = [k for k in kwargs if k not in sig.parameters]
        what = f"takes no {', '.join(missing)}" if missing else f"cannot be called with {sorted(kwargs)} ({e})"
        return f"GPTConfig {what}: its fields are ({fields})"
    return None


def forward_parameters(model):
    """The names of the model's forward arguments after self, and whether it takes **kwargs."""
    sig = signature_of(type(model).forward)
    if sig is None:
        return list(FORWARD_ARGUMENTS), True
    params = list(sig.parameters.values())[1:]
    return [p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)], \
        any(p.kind == p.VAR_KEYWORD for p in params)


def forward_difference(model):
    """How the model's forward differs from forward(idx, targets=None, kv_cache=None, loss_reduction='mean'): the
    contract's arguments it lacks, or those it takes at other positions; None when it matches."""
    names, any_keyword = forward_parameters(model)
    lacking = [n for n in FORWARD_ARGUMENTS if n not in names and not any_keyword]
    if lacking:
        return f"forward takes no {', '.join(lacking)}: its arguments are ({', '.join(names)})"
    if names[:len(FORWARD_ARGUMENTS)] != list(FORWARD_ARGUMENTS):
        return (f"forward takes ({', '.join(names)}): the contract's (idx, targets, kv_cache, loss_reduction) by "
                f"keyword, not at those positions")
    return None


def as_contract_call(model):
    """A forward pre-hook that turns the contract's positional call model(idx, targets, kv_cache, loss_reduction)
    into keywords, for an implementation whose forward takes them by name at other positions (a fork that adds
    arguments after idx). An argument the forward does not take raises InterfaceDiffers."""
    names, any_keyword = forward_parameters(model)

    def hook(module, args, kwargs):
        named = dict(zip(FORWARD_ARGUMENTS, args))
        for key in list(named) + list(kwargs):
            if key not in names and not any_keyword and (named.get(key) is not None or kwargs.get(key) is not None):
                raise InterfaceDiffers(f"forward takes no {key}: its arguments are ({', '.join(names)})")
        call = {k: v for k, v in {**named, **kwargs}.items() if k in names or any_keyword}
        return (), call
    return hook


def cache_difference(cache_class):
    """Why the KV cache class cannot be built as the contract builds it, or None."""
    sig = signature_of(cache_class)
    if sig is None:
        return None
    extra = {k: None for k in ("device", "dtype") if k in sig.parameters}  # passed by keyword where taken
    try:
        sig.bind(*range(len(CACHE_ARGUMENTS)), **extra)
    except TypeError as e:
        return (f"KVCache{sig} cannot be built as KVCache(batch_size, num_heads, seq_len, head_dim, num_layers): "
                f"{e}")
    return None


def missing_modules(model, card=None):
    """The module names of the contract the model lacks ("transformer.h.0.attn.c_q"), in order; with a card, also
    the parameter groups of the components it declares always on ("resid_lambdas", "value_embeds.{i}")."""
    def get(obj, path):
        for part in path.split("."):
            obj = getattr(obj, part, None)
            if obj is None:
                return None
        return obj
    missing = [m for m in MODULES if get(model, m) is None]
    blocks = get(model, "transformer.h")
    if blocks is not None and len(blocks):
        missing += [f"transformer.h.0.{m}" for m in BLOCK_MODULES if get(blocks[0], m) is None]
    for buffer in ("cos", "sin"):
        if not hasattr(model, buffer):
            missing.append(buffer)
    if card is not None:
        from nanochat_verify.components import ALL
        names = [name for name, _ in model.named_parameters()]
        for component in ALL:
            if component.feature and card.always(component.feature) and card.active(component.feature, getattr(model, "config", None)):
                missing += [g.module or g.name for g in component.parameters if not any(map(g.matches, names))]
    return missing


def require_modules(model, card=None):
    """InterfaceDiffers naming what the model lacks of the contract's modules and the card's always-on components
    (tests/test_interface.py fails once for it); nothing when it has them all."""
    missing = missing_modules(model, card)
    if missing:
        raise InterfaceDiffers(f"the model has no {', '.join(missing[:4])}{', ...' if len(missing) > 4 else ''}")


def returned_logits(output, expected_shape):
    """How what forward returned differs from (B, T, vocab_size) logits: InterfaceDiffers for a tuple or dict that
    carries the logits (another return convention), an AssertionError message for anything else; None if right."""
    import torch
    if torch.is_tensor(output) and tuple(output.shape) == expected_shape:
        return None
    first = output[0] if isinstance(output, (tuple, list)) and output else None
    if torch.is_tensor(first) and tuple(first.shape) == expected_shape:
        raise InterfaceDiffers(f"forward returns a {type(output).__name__} of {len(output)} with the logits first; "
                               f"the contract's forward returns the logits alone")
    got = tuple(output.shape) if torch.is_tensor(output) else type(output).__name__
    return f"forward must return (B, T, vocab_size) logits: expected {expected_shape}, got {got}"
