"""
The mutant catalog of `python -m nanochat.mutation`: small, deliberate, realistic bugs in a contract
implementation, one per entry (see nanochat/mutation.py for how they are run and how to add one).

A mutant is applied to the *source text* of an implementation, in one or both of two ways:

- `edits`: exact-text substitutions `(old, new)`, applied in order. Each `old` must occur exactly
  once in the text at that point, else the mutant does not apply (`NotApplicable`): a catalog bug
  for the project's own nanochat/gpt.py, "not applicable" for another implementation.
- `append`: source appended to the copy. It rebinds contract names (`norm`, `apply_rotary_emb`,
  `GPT.forward`, `GPT.__init__`) to broken wrappers of the originals, so it works on any
  implementation whose code looks those names up at call time.

An `equivalent` mutant changes the text but not the behaviour: no test of the contract can tell it
apart from the original. It is listed (with the argument in its description) so the claim stays
visible, and it is excluded from the score instead of being counted as a survivor.
"""

import re
import textwrap
from dataclasses import dataclass


class NotApplicable(Exception):
    """The mutant's target text is not in this implementation (or not exactly once)."""


@dataclass(frozen=True)
class Mutant:
    name: str  # short snake_case
    target: str  # component key or sub-component ID of nanochat/components.py that the bug breaks
    description: str  # one line: the bug as a reviewer would describe it (for equivalents: why)
    edits: tuple[tuple[str, str], ...] = ()
    append: str = ""
    equivalent: bool = False

    @property
    def component(self):
        return self.target.split(".", 1)[0]

    @property
    def mechanism(self):
        return " + ".join(m for m, used in (("edit", self.edits), ("override", self.append)) if used)

    def apply(self, source):
        """The mutated source; NotApplicable if an edit's target text is not found exactly once."""
        for i, (old, new) in enumerate(self.edits, 1):
            count = source.count(old)
            if count != 1:
                where = "not found" if count == 0 else f"found {count} times"
                raise NotApplicable(f"mutant {self.name}: edit {i} of {len(self.edits)}: target text {where}: "
                                    f"{_first_line(old)!r}")
            source = source.replace(old, new)
        if self.append:
            # a trailing block, headed by what it does, so a kept copy reads as documentation
            source = source.rstrip("\n") + f"\n\n\n# --- mutant {self.name}: {self.description}\n{self.append}"
        return source


def _first_line(text):
    line = text.strip().splitlines()[0] if text.strip() else text
    return line if len(line) <= 80 else line[:77] + "..."


def _code(text):
    """An appended override, written indented in the catalog for readability."""
    return textwrap.dedent(text).lstrip("\n")


def M(name, target, description, *edits, append="", equivalent=False):
    return Mutant(name, target, description, tuple(edits), _code(append) if append else "", equivalent)


# -- reusable overrides --------------------------------------------------------------------------
# Each keeps the original under a private name and rebinds the contract name; the functions of the
# implementation look the name up in their module's globals at call time, so they call the wrapper.

def _norm_override(body):
    return f"""
        import torch as _mutant_torch
        import torch.nn.functional as _mutant_F


        def norm(x):
            {body}
        """


def _forward_override(body):
    return f"""
        _mutant_forward = GPT.forward


        def _mutated_forward(self, idx, targets=None, kv_cache=None, loss_reduction="mean"):
            {body}


        GPT.forward = _mutated_forward
        """


def _init_override(body):
    return f"""
        _mutant_init = GPT.__init__


        def _mutated_init(self, config, *args, **kwargs):
            _mutant_init(self, config, *args, **kwargs)
            {body}


        GPT.__init__ = _mutated_init
        """


# the two calls of scaled dot-product attention in nanochat/gpt.py: full causal, and a chunk after a cached prefix
_SDPA_CAUSAL = "F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=gqa)"
_SDPA_MASKED = "F.scaled_dot_product_attention(q, k, v, attn_mask=mask, enable_gqa=gqa)"
_CHUNK_MASK = ".tril(diagonal=Tk - Tq)"
_ALWAYS_EXPLICIT_MASK = ("if Tq == Tk:", "if False:")  # send every call through the explicit-mask branch


MUTANTS = (
    # ---- 1 token embedding ---------------------------------------------------------------------
    M("wte_padding_idx_0", "embedding.wte",
      "nn.Embedding(..., padding_idx=0) copied from a padded-batch recipe: token 0's row never gets a gradient",
      ("wte=nn.Embedding(config.vocab_size, config.n_embd)",
       "wte=nn.Embedding(config.vocab_size, config.n_embd, padding_idx=0)")),
    M("wte_init_std_002", "embedding.wte",
      "embedding initialised with GPT-2's std 0.02 instead of 1.0",
      ("nn.init.normal_(module.weight, mean=0.0, std=1.0)", "nn.init.normal_(module.weight, mean=0.0, std=0.02)")),

    # ---- 2 RoPE --------------------------------------------------------------------------------
    M("rope_sin_sign_flipped", "rope.rotary",
      "sin negated: every pair turns by +t*theta instead of -t*theta (the transposed rotation)",
      append="""
        _mutant_apply_rotary_emb = apply_rotary_emb


        def apply_rotary_emb(x, cos, sin):
            return _mutant_apply_rotary_emb(x, cos, -sin)
        """),
    M("rope_interleaved_pairs", "rope.rotary",
      "rotates neighbouring pairs (2i, 2i+1), GPT-J style, instead of the halves (i, i + D/2)",
      append="""
        import torch as _mutant_torch

        _mutant_apply_rotary_emb = apply_rotary_emb


        def apply_rotary_emb(x, cos, sin):
            # gather the pairs (0, 1), (2, 3), ... into the half-split layout, rotate, scatter back
            d = x.size(-1)
            to_halves = _mutant_torch.cat([_mutant_torch.arange(0, d, 2), _mutant_torch.arange(1, d, 2)]).to(x.device)
            return _mutant_apply_rotary_emb(x[..., to_halves], cos, sin)[..., _mutant_torch.argsort(to_halves)]
        """),
    M("rope_base_500k", "rope.rotary",
      "rotary base 500000 (Llama 3's) instead of 10000: every frequency but the first is off",
      ("ROPE_BASE = 10000", "ROPE_BASE = 500000")),
    M("rope_freq_exponent_halved", "rope.rotary",
      "theta_i = base^(-i/D) instead of base^(-2i/D): arange(D/2) used where arange(0, D, 2) was meant",
      ("torch.arange(0, head_dim, 2, dtype=torch.float32, device=device)",
       "torch.arange(0, head_dim // 2, dtype=torch.float32, device=device)")),
    M("rope_positions_from_one", "rope.rotary",
      "rotary tables start at position 1: position 0 is rotated (relative offsets are unchanged)",
      ("t = torch.arange(seq_len, dtype=torch.float32, device=device)",
       "t = torch.arange(1, seq_len + 1, dtype=torch.float32, device=device)")),
    M("rope_tables_float32", "rope.rotary",
      "cos/sin buffers kept in float32 instead of bfloat16",
      ("cos, sin = freqs.cos().bfloat16(), freqs.sin().bfloat16()", "cos, sin = freqs.cos(), freqs.sin()")),
    M("rope_tables_in_state_dict", "rope.rotary",
      "cos/sin registered as persistent buffers: saved in (and required by) the state dict",
      ('self.register_buffer("cos", cos, persistent=False)', 'self.register_buffer("cos", cos)'),
      ('self.register_buffer("sin", sin, persistent=False)', 'self.register_buffer("sin", sin)')),
    M("rope_tables_sequence_len_only", "rope.rotary",
      "rotary tables precomputed for sequence_len positions instead of 10 * sequence_len",
      ("self.rotary_seq_len = 10 * config.sequence_len", "self.rotary_seq_len = config.sequence_len")),
    M("rope_not_recomputed_by_init_weights", "rope.rotary",
      "init_weights() does not recompute cos/sin: a model built on the meta device keeps garbage tables",
      ("self.cos, self.sin = precompute_rotary(self.rotary_seq_len, self.config.head_dim,",
       "cos, sin = precompute_rotary(self.rotary_seq_len, self.config.head_dim,")),

    # ---- 3 block stack -------------------------------------------------------------------------
    M("stack_last_block_skipped", "block_stack.layers",
      "forward loops over transformer.h[:-1]: the last block is built but never applied",
      ("for block in self.transformer.h:\n            x = block(x, cos_sin, kv_cache)",
       "for block in self.transformer.h[:-1]:\n            x = block(x, cos_sin, kv_cache)")),
    M("stack_reversed", "block_stack.layers",
      "blocks applied from the last to the first",
      ("for block in self.transformer.h:\n            x = block(x, cos_sin, kv_cache)",
       "for block in reversed(self.transformer.h):\n            x = block(x, cos_sin, kv_cache)")),
    M("stack_one_block_repeated", "block_stack.layers",
      "[Block(config, 0)] * n_layer: one block object repeated, so every layer shares the same weights",
      ("nn.ModuleList([Block(config, layer_idx) for layer_idx in range(config.n_layer)])",
       "nn.ModuleList([Block(config, 0)] * config.n_layer)")),

    # ---- 4 block architecture ------------------------------------------------------------------
    M("block_post_norm", "block",
      "post-norm block (original Transformer): x = norm(x + f(x)) instead of x = x + f(norm(x))",
      ("x = x + self.attn(norm(x), cos_sin, kv_cache)", "x = norm(x + self.attn(x, cos_sin, kv_cache))"),
      ("x = x + self.mlp(norm(x))", "x = norm(x + self.mlp(x))")),
    M("block_no_attention_residual", "block.attention_path",
      "attention path without its residual: x = attn(norm(x))",
      ("x = x + self.attn(norm(x), cos_sin, kv_cache)", "x = self.attn(norm(x), cos_sin, kv_cache)")),
    M("block_no_mlp_residual", "block.mlp_path",
      "MLP path without its residual: x = mlp(norm(x))",
      ("x = x + self.mlp(norm(x))", "x = self.mlp(norm(x))")),
    M("block_residual_from_normalized", "block.attention_path",
      "x = norm(x) rebinds the stream, so the residual adds attention to the normalized x",
      ("x = x + self.attn(norm(x), cos_sin, kv_cache)",
       "x = norm(x)\n        x = x + self.attn(x, cos_sin, kv_cache)")),
    M("block_parallel", "block.mlp_path",
      "parallel block (GPT-J): the MLP reads norm(x) of the block input, not of x + attn",
      ("x = x + self.attn(norm(x), cos_sin, kv_cache)\n        x = x + self.mlp(norm(x))",
       "x = x + self.attn(norm(x), cos_sin, kv_cache) + self.mlp(norm(x))")),

    # ---- 5 causal self-attention ---------------------------------------------------------------
    M("attn_v_from_c_k", "attention.projections",
      "copy-paste bug: values computed with c_k instead of c_v",
      ("v = self.c_v(x)", "v = self.c_k(x)")),
    M("attn_c_v_bias", "attention.projections",
      "c_v built with bias=True",
      ("self.c_v = nn.Linear(self.n_embd, self.n_kv_head * self.head_dim, bias=False)",
       "self.c_v = nn.Linear(self.n_embd, self.n_kv_head * self.head_dim, bias=True)")),
    M("attn_rope_on_v", "attention.rope",
      "RoPE applied to V as well as Q and K",
      ("q, k = apply_rotary_emb(q, cos, sin), apply_rotary_emb(k, cos, sin)",
       "q, k, v = apply_rotary_emb(q, cos, sin), apply_rotary_emb(k, cos, sin), apply_rotary_emb(v, cos, sin)")),
    M("attn_rope_on_q_only", "attention.rope",
      "RoPE applied to Q but not K: scores depend on the query's absolute position",
      ("q, k = apply_rotary_emb(q, cos, sin), apply_rotary_emb(k, cos, sin)", "q = apply_rotary_emb(q, cos, sin)")),
    M("attn_no_qk_norm", "attention.qk_norm",
      "QK norm missing: raw rotated q, k go into the dot product",
      ("q, k = norm(q), norm(k)", "pass")),
    M("attn_qk_norm_before_rope", "attention.qk_norm",
      "QK norm before RoPE instead of after (differs by the bfloat16 tables' cos^2 + sin^2 != 1)",
      ("q, k = norm(q), norm(k)", "pass"),
      ("q, k = apply_rotary_emb(q, cos, sin), apply_rotary_emb(k, cos, sin)",
       "q, k = apply_rotary_emb(norm(q), cos, sin), apply_rotary_emb(norm(k), cos, sin)")),
    M("attn_gqa_tiled", "attention.gqa",
      "kv heads tiled (repeat) instead of grouped (repeat_interleave): query head h reads kv head h % n_kv_head",
      ("gqa = self.n_kv_head != self.n_head",
       "gqa = self.n_kv_head != self.n_head\n"
       "        if gqa:\n"
       "            k = k.repeat(1, self.n_head // self.n_kv_head, 1, 1)\n"
       "            v = v.repeat(1, self.n_head // self.n_kv_head, 1, 1)\n"
       "            gqa = False")),
    M("attn_n_kv_head_ignored", "attention.gqa",
      "n_kv_head ignored: K and V get n_head heads, no grouped-query attention",
      ("self.n_kv_head = config.n_kv_head", "self.n_kv_head = config.n_head")),
    M("attn_scale_one", "attention.sdpa",
      "scores not scaled: softmax(q k^T) instead of softmax(q k^T / sqrt(head_dim))",
      (_SDPA_CAUSAL, _SDPA_CAUSAL[:-1] + ", scale=1.0)"), (_SDPA_MASKED, _SDPA_MASKED[:-1] + ", scale=1.0)")),
    M("attn_scale_one_over_head_dim", "attention.sdpa",
      "scores scaled by 1/head_dim (muP style) instead of 1/sqrt(head_dim)",
      (_SDPA_CAUSAL, _SDPA_CAUSAL[:-1] + ", scale=1.0 / self.head_dim)"),
      (_SDPA_MASKED, _SDPA_MASKED[:-1] + ", scale=1.0 / self.head_dim)")),
    M("attn_unmasked", "attention.causal_mask",
      "is_causal=False: every position attends to the future",
      ("is_causal=True", "is_causal=False")),
    M("attn_mask_sees_next_token", "attention.causal_mask",
      "causal mask shifted by one: position t also sees t + 1 (tril(diagonal=1))",
      _ALWAYS_EXPLICIT_MASK, (_CHUNK_MASK, ".tril(diagonal=Tk - Tq + 1)")),
    M("attn_mask_excludes_self", "attention.causal_mask",
      "causal mask shifted by one the other way: position t sees only t' < t, not itself",
      _ALWAYS_EXPLICIT_MASK, (_CHUNK_MASK, ".tril(diagonal=Tk - Tq - 1)")),
    M("attn_softmax_over_queries", "attention.softmax",
      "attention weights normalised over the queries (dim=-2) instead of the keys",
      _ALWAYS_EXPLICIT_MASK, (_SDPA_MASKED, "_mutant_attention(q, k, v, mask)"),
      append="""
        def _mutant_attention(q, k, v, mask):
            if k.size(1) != q.size(1):  # grouped-query: query head h reads kv head h // group
                k = k.repeat_interleave(q.size(1) // k.size(1), dim=1)
                v = v.repeat_interleave(q.size(1) // v.size(1), dim=1)
            scores = (q @ k.transpose(-2, -1)) / math.sqrt(q.size(-1))
            scores = scores.masked_fill(~mask, float("-inf"))
            return torch.softmax(scores, dim=-2) @ v
        """),
    M("attn_heads_concat_without_transpose", "attention.head_concat",
      "(B, H, T, D) viewed as (B, T, H*D) without transposing back: heads and positions scrambled",
      ("y = y.transpose(1, 2).contiguous().view(B, T, -1)", "y = y.contiguous().view(B, T, -1)")),
    M("attn_no_output_projection", "attention.output_projection",
      "c_proj skipped: the concatenated heads are returned as they are",
      ("return self.c_proj(y)", "return y")),

    # ---- 6 RMSNorm -----------------------------------------------------------------------------
    M("rmsnorm_identity", "rmsnorm",
      "norm() returns its input unchanged",
      append=_norm_override("return x")),
    M("rmsnorm_is_layernorm", "rmsnorm",
      "LayerNorm instead of RMSNorm: the mean is subtracted before scaling",
      append=_norm_override("return _mutant_F.layer_norm(x, (x.size(-1),))")),
    M("rmsnorm_large_eps", "rmsnorm",
      "eps=1e-2 inside the square root: small vectors are no longer scaled to unit RMS",
      append=_norm_override("return _mutant_F.rms_norm(x, (x.size(-1),), eps=1e-2)")),
    M("rmsnorm_without_sqrt", "rmsnorm",
      "divides by the mean square instead of its square root",
      append=_norm_override("return x / (x.float().pow(2).mean(-1, keepdim=True) + 1e-6).to(x.dtype)")),
    M("rmsnorm_over_whole_tensor", "rmsnorm",
      "mean() without dim: one RMS over the whole tensor instead of one per vector",
      append=_norm_override("return x * _mutant_torch.rsqrt(x.float().pow(2).mean() + 1e-6).to(x.dtype)")),
    M("norm_missing_after_embedding", "rmsnorm.after_embedding",
      "no RMSNorm after the token embedding",
      ("x = norm(x)\n        for block in self.transformer.h:", "for block in self.transformer.h:")),
    M("norm_missing_before_attention", "rmsnorm.pre_attention",
      "attention reads the raw residual stream: x + attn(x)",
      ("x = x + self.attn(norm(x), cos_sin, kv_cache)", "x = x + self.attn(x, cos_sin, kv_cache)")),
    M("norm_missing_before_mlp", "rmsnorm.pre_mlp",
      "the MLP reads the raw residual stream: x + mlp(x)",
      ("x = x + self.mlp(norm(x))", "x = x + self.mlp(x)")),

    # ---- 7 MLP ---------------------------------------------------------------------------------
    M("mlp_relu", "mlp.relu2",
      "plain ReLU instead of ReLU squared",
      ("x = F.relu(x).square()", "x = F.relu(x)")),
    M("mlp_gelu", "mlp.relu2",
      "GELU (GPT-2's activation) instead of ReLU squared",
      ("x = F.relu(x).square()", "x = F.gelu(x)")),
    M("mlp_square_then_relu", "mlp.relu2",
      "relu(x**2) = x**2 instead of relu(x)**2: negative pre-activations pass",
      ("x = F.relu(x).square()", "x = F.relu(x.square())")),
    M("mlp_3x_expansion", "mlp.fc",
      "hidden width 3 * n_embd instead of 4 * n_embd",
      ("nn.Linear(config.n_embd, 4 * config.n_embd, bias=False)",
       "nn.Linear(config.n_embd, 3 * config.n_embd, bias=False)"),
      ("nn.Linear(4 * config.n_embd, config.n_embd, bias=False)",
       "nn.Linear(3 * config.n_embd, config.n_embd, bias=False)")),
    M("mlp_c_fc_bias", "mlp.fc",
      "c_fc built with bias=True",
      ("nn.Linear(config.n_embd, 4 * config.n_embd, bias=False)",
       "nn.Linear(config.n_embd, 4 * config.n_embd, bias=True)")),

    # ---- 8 LM head -----------------------------------------------------------------------------
    M("lm_head_tied", "lm_head.untied_softcap",
      "lm_head.weight tied to wte.weight (GPT-2 style) instead of untied",
      append=_init_override("self.lm_head.weight = self.transformer.wte.weight")),
    M("softcap_30", "lm_head.untied_softcap",
      "logit softcap 30 (Gemma 2's final cap) instead of 15",
      ("LOGIT_SOFTCAP = 15.0", "LOGIT_SOFTCAP = 30.0")),
    M("softcap_missing", "lm_head.untied_softcap",
      "no logit softcap: raw lm_head logits",
      ("        logits = LOGIT_SOFTCAP * torch.tanh(logits / LOGIT_SOFTCAP)\n", "")),
    M("softcap_clamped", "lm_head.untied_softcap",
      "logits hard-clamped to [-15, 15] instead of 15 * tanh(logits / 15)",
      ("logits = LOGIT_SOFTCAP * torch.tanh(logits / LOGIT_SOFTCAP)",
       "logits = logits.clamp(-LOGIT_SOFTCAP, LOGIT_SOFTCAP)")),
    M("logits_not_float32", "lm_head.untied_softcap",
      "logits left in the model's dtype (bfloat16 in a bfloat16 model) instead of float32",
      ("        logits = logits.to(torch.promote_types(logits.dtype, torch.float32))", "        pass")),

    # ---- 9 final norm --------------------------------------------------------------------------
    M("final_norm_missing", "final_norm.before_lm_head",
      "no RMSNorm between the last block and lm_head",
      ("x = block(x, cos_sin, kv_cache)\n        x = norm(x)", "x = block(x, cos_sin, kv_cache)")),

    # ---- 10 model scaling ----------------------------------------------------------------------
    M("wte_rows_padded_to_64", "scaling.parameter_count",
      "embedding rows padded to a multiple of 64: extra parameters for a vocab that is not a multiple of 64",
      ("wte=nn.Embedding(config.vocab_size, config.n_embd)",
       "wte=nn.Embedding((config.vocab_size + 63) // 64 * 64, config.n_embd)")),
    M("flops_count_the_embedding", "scaling.parameter_count",
      "estimate_flops counts the embedding lookup as a matmul: 6 * N instead of 6 * (N - N_wte)",
      ("6 * (n_params - n_embedding)", "6 * n_params")),

    # ---- 11 loss -------------------------------------------------------------------------------
    M("loss_ignore_index_dropped", "loss.cross_entropy",
      "cross_entropy without ignore_index=-1: targets of -1 are not ignored",
      ("ignore_index=-1, ", "")),
    M("loss_mean_counts_ignored", "loss.cross_entropy",
      "mean loss divides by every position, ignored (-1) targets included",
      append=_forward_override("""
            if targets is None or loss_reduction != "mean":
                return _mutant_forward(self, idx, targets, kv_cache, loss_reduction)
            return _mutant_forward(self, idx, targets, kv_cache, loss_reduction="none").mean()
        """.strip())),
    M("loss_reduction_ignored", "loss.cross_entropy",
      "loss_reduction accepted but not passed on: always the mean",
      append=_forward_override("return _mutant_forward(self, idx, targets, kv_cache)")),
    M("loss_label_smoothing", "loss.cross_entropy",
      "label_smoothing=0.1 left in from a fine-tuning recipe",
      ("ignore_index=-1, reduction=loss_reduction", "ignore_index=-1, reduction=loss_reduction, label_smoothing=0.1")),
    M("loss_on_uncapped_logits", "loss.cross_entropy",
      "the loss is computed from the logits before the softcap, not the returned ones",
      ("logits = LOGIT_SOFTCAP * torch.tanh(logits / LOGIT_SOFTCAP)",
       "capped = LOGIT_SOFTCAP * torch.tanh(logits / LOGIT_SOFTCAP)"),
      ("if targets is None:\n            return logits", "if targets is None:\n            return capped")),

    # ---- 12 gradient flow / initialisation ------------------------------------------------------
    M("init_lm_head_not_zeroed", "gradients.backward",
      "lm_head keeps its random init instead of zeros: the loss at init is no longer ln(vocab_size)",
      ("        nn.init.zeros_(self.lm_head.weight)\n", "")),
    M("init_attn_c_proj_not_zeroed", "gradients.backward",
      "attention c_proj keeps its random init instead of zeros",
      ("            nn.init.zeros_(block.attn.c_proj.weight)\n", "")),
    M("init_mlp_c_proj_not_zeroed", "gradients.backward",
      "MLP c_proj keeps its random init instead of zeros",
      ("            nn.init.zeros_(block.mlp.c_proj.weight)\n", "")),
    M("init_std_002", "gradients.backward",
      "every Linear initialised with GPT-2's std 0.02 instead of 1/sqrt(fan_in) * min(1, sqrt(fan_out/fan_in))",
      ("std = 1.0 / math.sqrt(fan_in) * min(1.0, math.sqrt(fan_out / fan_in))", "std = 0.02")),
    M("init_std_without_aspect_factor", "gradients.backward",
      "Linear std 1/sqrt(fan_in) without the min(1, sqrt(fan_out/fan_in)) factor (visible on GQA's c_k, c_v)",
      ("std = 1.0 / math.sqrt(fan_in) * min(1.0, math.sqrt(fan_out / fan_in))", "std = 1.0 / math.sqrt(fan_in)")),
    M("wte_frozen", "gradients.backward",
      "wte.weight.requires_grad_(False) left in from a fine-tuning script: the embedding never trains",
      append=_init_override("self.transformer.wte.weight.requires_grad_(False)")),

    # ---- inference (beyond the table) ----------------------------------------------------------
    M("kv_rope_without_cache_offset", "inference.kv_cache",
      "RoPE restarts at position 0 for every decoded chunk instead of at the cache position",
      ("self.cos[:, T0:T0 + T], self.sin[:, T0:T0 + T]", "self.cos[:, :T], self.sin[:, :T]")),
    M("kv_cache_not_read", "inference.kv_cache",
      "keys and values are written to the cache but attention only sees the current chunk",
      ("k, v = kv_cache.insert_kv(self.layer_idx, k, v)", "kv_cache.insert_kv(self.layer_idx, k, v)")),
    M("kv_every_layer_in_slot_0", "inference.kv_cache",
      "every layer inserts as layer 0: layers overwrite each other and the cache position never advances",
      ("kv_cache.insert_kv(self.layer_idx, k, v)", "kv_cache.insert_kv(0, k, v)")),
    M("kv_chunk_unmasked", "inference.kv_cache",
      "a chunk after a cached prefix is not causally masked inside itself",
      (_CHUNK_MASK, "")),
    M("generate_top_k_keeps_k_minus_1", "inference.generate",
      "top-k filter with <= instead of <: the k-th largest logit is dropped too",
      ("logits < kth", "logits <= kth")),
    M("generate_ignores_temperature", "inference.generate",
      "temperature accepted but logits never divided by it",
      ("                logits = logits / temperature\n", "")),

    # ---- equivalent mutants: no test of the contract can detect these ---------------------------
    M("eq_head_concat_reshape", "attention.head_concat",
      "equivalent: reshape() instead of contiguous().view(): reshape copies a non-contiguous tensor "
      "exactly like contiguous() does, same values, same autograd",
      ("y = y.transpose(1, 2).contiguous().view(B, T, -1)", "y = y.transpose(1, 2).reshape(B, T, -1)"),
      equivalent=True),
    M("eq_relu_times_relu", "mlp.relu2",
      "equivalent: relu(x) * relu(x) instead of relu(x).square(): square is the same IEEE product, "
      "bit for bit, and so are the gradients",
      ("x = F.relu(x).square()", "x = F.relu(x) * F.relu(x)"),
      equivalent=True),
    M("eq_rope_subtraction", "rope.rotary",
      "equivalent: y2 = x2*cos - x1*sin instead of x1*(-sin) + x2*cos: IEEE negation is exact and "
      "a + (-b) == a - b, so every value and gradient is bit-identical",
      ("y2 = x1 * (-sin) + x2 * cos", "y2 = x2 * cos - x1 * sin"),
      equivalent=True),
)

BY_NAME = {m.name: m for m in MUTANTS}
NAME_PATTERN = re.compile(r"^[a-z][a-z0-9]*(_[a-z0-9]+)*$")
