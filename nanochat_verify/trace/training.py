"""
The tracer's run: real AdamW iterations of a model on the built-in text, each forward and backward traced
(hooks.py), the last one summarised component by component (sections.py). The result is plain data: what
`--json` writes and what render.py shows.
"""

import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from nanochat_verify.trace import text
from nanochat_verify.trace.hooks import trace
from nanochat_verify.trace.sections import TraceError, scaling_section, summarise


@dataclass
class TraceResult:
    implementation: str
    settings: dict
    config: dict
    sample: str  # the first training sequence, decoded
    iterations: list  # one dict per iteration: loss, grad_norm, nonzero_grads, seconds
    activations: dict  # cached name -> TensorStats fields (+ derived flag), last iteration
    gradients: dict  # parameter name -> TensorStats fields + norm, last iteration
    sections: dict  # component key (nanochat_verify.components) -> what that section shows
    plot: dict = field(default_factory=dict)  # attention pattern and RMS per layer, for --plot only

    @property
    def losses(self):
        return [it["loss"] for it in self.iterations]

    def to_json(self):
        out = asdict(self)
        del out["plot"]  # a (H, T, T) pattern is for the picture, not the record
        out["losses"] = self.losses
        return out


BASELINE = 0.5e9  # bytes: the interpreter, torch and the tracer themselves


def trace_bytes(parameter_bytes, config, batch_size):
    """An estimate, on the high side, of run_trace's peak memory in bytes, from the model's parameter bytes and its
    config (measured peaks: depth 4, batch 8 x 64, 2.1 GB, estimated 2.7 GB; the 561M model at batch 1 x 64,
    11.6 GB, estimated 12.2 GB; depth 8 at batch 16 x 512, killed at 22 GB, estimated 30 GB):
    - five copies of the weights: themselves, their gradients, AdamW's two moments, the optimizer's temporaries;
    - per token, about 48 floats per channel and layer (the tracer's cache of every activation, and those autograd
      keeps for the backward) and 10 per vocabulary entry (logits raw, capped, their softmax, their gradients);
    - per layer, three copies of the attention weights (B, H, T, T)."""
    L, C, H, T = config.n_layer, config.n_embd, config.n_head, config.sequence_len
    V = getattr(config, "padded_vocab_size", config.vocab_size)
    floats = batch_size * T * (48 * L * C + 10 * V) + 3 * L * batch_size * H * T * T
    return 5 * parameter_bytes + 4 * floats + BASELINE


def run_trace(impl, settings, on_iteration=None):
    """Train impl.GPT for settings.num_iterations AdamW steps on the built-in text, tracing each
    forward and backward, and summarise the last traced iteration as a TraceResult.
    `on_iteration(record)` is called after each iteration (the progress bar)."""
    torch.manual_seed(settings.seed)
    card = settings.card
    config = impl.GPTConfig(**settings.config)
    try:
        model = impl.GPT(config)
    except ValueError as e:  # the implementation's own refusal, e.g. a model too large for this machine
        raise TraceError(f"the implementation refuses to build the model: {e}") from None
    model.init_weights()  # the contract does not promise that the constructor initialises
    model.train()
    # foreach=False: no temporary copies of every state at once, which matters at 561M parameters
    optimizer = torch.optim.AdamW(model.parameters(), lr=settings.lr, betas=(0.9, 0.95), eps=1e-8,
                                  weight_decay=0.0, foreach=False)
    tokens = text.tokens()
    batches = torch.Generator().manual_seed(settings.seed)
    T = settings.config["sequence_len"]
    iterations, summary, sample = [], None, ""

    for number in range(1, settings.num_iterations + 1):
        idx, targets = text.random_batch(tokens, settings.batch_size, T, batches)
        if number == 1:
            sample = text.decode(idx[0].tolist())
        start = time.perf_counter()
        with trace(model) as cache:
            loss = model(idx, targets)
            _check_shapes(cache, config, idx.shape, loss)
            loss.backward()
        record = _iteration_record(number, model, loss)
        summarising = time.perf_counter()
        if number == settings.num_iterations:
            # summarise before the step, while every tensor still belongs to this iteration
            summary = summarise(impl, model, cache, settings, card)
        start += time.perf_counter() - summarising  # a step's time is the training, not the summary
        del cache  # it holds every gradient; at 561M parameters two sets would not fit well
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        record["seconds"] = time.perf_counter() - start
        iterations.append(record)
        if on_iteration is not None:
            on_iteration(record)

    summary["sections"]["loss"]["per_iteration"] = [it["loss"] for it in iterations]
    summary["sections"]["gradients"]["per_iteration"] = [
        {k: it[k] for k in ("iteration", "grad_norm", "nonzero_grads", "nonzero_grad_names")} for it in iterations]
    summary["sections"]["scaling"] = scaling_section(impl, model, card)
    return TraceResult(
        implementation=f"{settings.gpt_impl} ({Path(impl.__file__).resolve()})",
        settings={k: v for k, v in asdict(settings).items() if k not in ("config", "card")}
        | {"optimizer": "AdamW", "card": card.name},
        config=settings.config | {"head_dim": config.n_embd // config.n_head},
        sample=sample, iterations=iterations, **summary)


def _iteration_record(number, model, loss):
    names = [name for name, p in model.named_parameters() if p.grad is not None and bool(p.grad.any())]
    sq = sum(torch.linalg.vector_norm(p.grad.float()).item() ** 2 for p in model.parameters() if p.grad is not None)
    n_params = sum(1 for _ in model.parameters())
    return {"iteration": number, "loss": loss.item(), "grad_norm": math.sqrt(sq),
            "nonzero_grads": len(names), "parameters": n_params,
            # the names only while few are nonzero: at init, the zeroed lm_head blocks all the others
            "nonzero_grad_names": names if len(names) <= 3 else None}


def _expected_shapes(cache, config, idx_shape):
    """{cached name: (shape the contract gives it, what it is)} for the tensors the summary compares."""
    B, T = idx_shape
    C, H, Hkv, V = config.n_embd, config.n_head, config.n_kv_head, config.vocab_size
    D = C // H
    # lm_head.output is not here: a padded vocabulary gives it more columns, sliced off before the logits
    want = {"logits": ((B, T, V), "forward must return (B, T, vocab_size) logits"),
            "lm_head.input": ((B, T, C), "the final norm keeps (B, T, n_embd)")}
    for i in range(config.n_layer):
        p = f"transformer.h.{i}"
        for name in ("input", "output", "attn.output", "mlp.output"):
            want[f"{p}.{name}"] = ((B, T, C), "a block and its branches keep (B, T, n_embd)")
        for name, heads in (("q", H), ("q_rope", H), ("k", Hkv), ("k_rope", Hkv), ("v", Hkv)):
            want[f"{p}.attn.{name}"] = ((B, T, heads, D), "attention heads are (B, T, heads, head_dim)")
    fc = cache.get("transformer.h.0.mlp.fc")
    if fc is not None:  # the hidden width is the card's; ReLU² keeps it
        for i in range(config.n_layer):
            want[f"transformer.h.{i}.mlp.act"] = ((B, T, fc.shape[-1]), "ReLU² keeps the shape of c_fc's output")
    return want


def _check_shapes(cache, config, idx_shape, loss):
    """Stop with the name and shape of the first traced tensor that is not what the contract says,
    before the summary compares tensors that cannot be compared."""
    if loss.dim() != 0:
        raise TraceError(f"forward(idx, targets) must return a scalar loss, got shape {tuple(loss.shape)}")
    for name, (shape, what) in _expected_shapes(cache, config, idx_shape).items():
        if name in cache and tuple(cache[name].shape) != shape:
            raise TraceError(f"{name} has shape {tuple(cache[name].shape)}, expected {shape}: {what}")
