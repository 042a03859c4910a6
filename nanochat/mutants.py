"""
The mutant catalog of `python -m nanochat.mutation`: small, deliberate, realistic bugs in a contract
implementation, one per entry (see nanochat/mutation.py for how they are run and how to add one).

A mutant is applied to the *source text* of an implementation, in one or both of two ways:

- `edits`: exact-text substitutions `(old, new)`, applied in order. Each `old` must occur exactly
  once in the text at that point, else the mutant does not apply (`NotApplicable`): a catalog bug
  for the project's own nanochat/gpt.py, "not applicable" for another implementation. An edit text
  may be a function of the architecture card (nanochat/architecture.py), so that a mutant such as
  "the softcap doubled" follows the card when the architecture changes on purpose.
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
    own_only: bool = False  # breaks a project extra (generate, ValueErrors) or our engine: not for other implementations
    needs_cuda: bool = False  # only observable on a CUDA device (e.g. a tensor made on the CPU): not run without one
    needs_bf16_tables: bool = False  # only a bug where the card keeps the rotary tables in bfloat16

    def missing_names(self, source):
        """Top-level names the `append` override uses that neither it nor `source` defines (an override of
        this project's KVCache means nothing to an implementation without one)."""
        if not self.append:
            return []
        import ast
        import builtins

        def defined(tree):
            names = set()
            for node in tree.body:
                if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                    names.add(node.name)
                elif isinstance(node, (ast.Import, ast.ImportFrom)):
                    names |= {(a.asname or a.name).split(".")[0] for a in node.names}
                elif isinstance(node, (ast.Assign, ast.AnnAssign, ast.AugAssign)):
                    # `x = ...` defines x; `KVCache.reset = ...` defines nothing, it needs KVCache
                    targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                    names |= {n.id for t in targets for n in ast.walk(t)
                              if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)}
            return names

        tree, override = ast.parse(source), ast.parse(self.append)
        available = defined(tree) | defined(override) | set(dir(builtins))
        used = {n.id for stmt in override.body if not isinstance(stmt, (ast.FunctionDef, ast.ClassDef))
                for n in ast.walk(stmt) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)}
        # `GPT._smear = ...` replaces a method: in an implementation whose GPT has no _smear it changes nothing
        classes = {node.name: {n.name for n in node.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))}
                   for node in tree.body if isinstance(node, ast.ClassDef)}
        rebound = {f"{t.value.id}.{t.attr}" for stmt in override.body if isinstance(stmt, ast.Assign)
                   for t in stmt.targets if isinstance(t, ast.Attribute) and isinstance(t.value, ast.Name)
                   and t.value.id in classes and t.attr not in classes[t.value.id]}
        return sorted((used - available) | rebound)

    @property
    def component(self):
        return self.target.split(".", 1)[0]

    @property
    def mechanism(self):
        return " + ".join(m for m, used in (("edit", self.edits), ("override", self.append)) if used)

    def apply(self, source, card=None):
        """The mutated source; NotApplicable if an edit's target text is not found exactly once.
        `card`: the architecture the texts are written for (default: the project's card)."""
        for i, (old, new) in enumerate(self.edits, 1):
            if callable(old) or callable(new):
                if card is None:
                    from nanochat.architecture import load_card
                    card = load_card()
                old, new = (t(card) if callable(t) else t for t in (old, new))
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


def M(name, target, description, *edits, append="", equivalent=False, own_only=False, needs_cuda=False,
      needs_bf16_tables=False):
    return Mutant(name, target, description, tuple(edits), _code(append) if append else "", equivalent, own_only,
                  needs_cuda, needs_bf16_tables)


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


# the two calls of scaled dot-product attention in nanochat/gpt.py: full causal, and an explicit mask
# (a chunk after a cached prefix, or a sliding window)
_SDPA_CAUSAL = "F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=gqa)"
_SDPA_MASKED = "F.scaled_dot_product_attention(q, k, v, attn_mask=mask, enable_gqa=gqa)"
_CAUSAL_MASK = "mask = k_pos <= q_pos"
# send every call through the explicit-mask branch
_ALWAYS_EXPLICIT_MASK = ("if Tq == Tk and (self.window is None or self.window >= Tk - 1):", "if False:")
_ATTN_CALL = "x = x + self.attn(norm(x), cos_sin, kv_cache, ve)"
_BLOCK_LOOP = "for i, block in enumerate(self.transformer.h):"
_WTE = "wte=nn.Embedding(V, config.n_embd)"


MUTANTS = (
    # ---- 1 token embedding ---------------------------------------------------------------------
    M("wte_padding_idx_0", "embedding.wte",
      "nn.Embedding(..., padding_idx=0) copied from a padded-batch recipe: token 0's row never gets a gradient",
      (_WTE, "wte=nn.Embedding(V, config.n_embd, padding_idx=0)")),
    M("wte_init_std_002", "embedding.wte",
      "embedding initialised with GPT-2's std 0.02 instead of 1.0",
      ("nn.init.normal_(module.weight, mean=0.0, std=1.0)", "nn.init.normal_(module.weight, mean=0.0, std=0.02)")),

    # ---- 2 RoPE --------------------------------------------------------------------------------
    M("rope_sin_sign_flipped", "rope.rotary",
      "sin negated: every pair turns by +t*theta instead of -t*theta (the transposed rotation) (real bug 4: nanochat PR 489, commit 3616a02)",
      append="""
        _mutant_apply_rotary_emb = apply_rotary_emb


        def apply_rotary_emb(x, cos, sin):
            return _mutant_apply_rotary_emb(x, cos, -sin)
        """),
    M("rope_interleaved_pairs", "rope.rotary",
      "rotates neighbouring pairs (2i, 2i+1), GPT-J style, instead of the halves (i, i + D/2) (real bug 1: llama.cpp PR 13260)",
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
      "rotary base 500000 (Llama 3's) instead of the card's: every frequency but the first is off",
      (lambda card: f"ROPE_BASE = {card.rope_base:g}", "ROPE_BASE = 500000")),
    M("rope_freq_exponent_halved", "rope.rotary",
      "theta_i = base^(-i/D) instead of base^(-2i/D): arange(D/2) used where arange(0, D, 2) was meant (real bug 7: TransformerLens PR 910, unsloth PR 6197)",
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
      "init_weights() does not recompute cos/sin: a model built on the meta device keeps garbage tables (real bug 34: nanochat PR 686)",
      ("self.cos, self.sin = precompute_rotary(self.rotary_seq_len, self.config.head_dim,",
       "cos, sin = precompute_rotary(self.rotary_seq_len, self.config.head_dim,")),

    # ---- 3 block stack -------------------------------------------------------------------------
    M("stack_last_block_skipped", "block_stack.layers",
      "forward loops over transformer.h[:-1]: the last block is built but never applied",
      (_BLOCK_LOOP, "for i, block in enumerate(self.transformer.h[:-1]):")),
    M("stack_reversed", "block_stack.layers",
      "blocks applied from the last to the first",
      (_BLOCK_LOOP, "for i, block in reversed(list(enumerate(self.transformer.h))):")),
    M("stack_one_block_repeated", "block_stack.layers",
      "[Block(config, 0)] * n_layer: one block object repeated, so every layer shares the same weights",
      ("nn.ModuleList([Block(config, layer_idx) for layer_idx in range(config.n_layer)])",
       "nn.ModuleList([Block(config, 0)] * config.n_layer)")),

    # ---- 4 block architecture ------------------------------------------------------------------
    M("block_post_norm", "block",
      "post-norm block (original Transformer): x = norm(x + f(x)) instead of x = x + f(norm(x))",
      (_ATTN_CALL, "x = norm(x + self.attn(x, cos_sin, kv_cache, ve))"),
      ("x = x + self.mlp(norm(x))", "x = norm(x + self.mlp(x))")),
    M("block_no_attention_residual", "block.attention_path",
      "attention path without its residual: x = attn(norm(x))",
      (_ATTN_CALL, "x = self.attn(norm(x), cos_sin, kv_cache, ve)")),
    M("block_no_mlp_residual", "block.mlp_path",
      "MLP path without its residual: x = mlp(norm(x))",
      ("x = x + self.mlp(norm(x))", "x = self.mlp(norm(x))")),
    M("block_residual_from_normalized", "block.attention_path",
      "x = norm(x) rebinds the stream, so the residual adds attention to the normalized x",
      (_ATTN_CALL, "x = norm(x)\n        x = x + self.attn(x, cos_sin, kv_cache, ve)")),
    M("block_parallel", "block.mlp_path",
      "parallel block (GPT-J): the MLP reads norm(x) of the block input, not of x + attn",
      (_ATTN_CALL + "\n        x = x + self.mlp(norm(x))",
       "x = x + self.attn(norm(x), cos_sin, kv_cache, ve) + self.mlp(norm(x))")),

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
      "kv heads tiled (repeat) instead of grouped (repeat_interleave): query head h reads kv head h % n_kv_head (real bug 10: onnx PR 7274, jax-js PR 180, axlearn PR 842)",
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
      "scores not scaled: softmax(q k^T) instead of softmax(q k^T / sqrt(head_dim)) (real bug 31: transformers issue 31891)",
      (_SDPA_CAUSAL, _SDPA_CAUSAL[:-1] + ", scale=1.0)"), (_SDPA_MASKED, _SDPA_MASKED[:-1] + ", scale=1.0)")),
    M("attn_scale_one_over_head_dim", "attention.sdpa",
      "scores scaled by 1/head_dim (muP style) instead of 1/sqrt(head_dim) (real bug 31: llama.cpp PR 8444)",
      (_SDPA_CAUSAL, _SDPA_CAUSAL[:-1] + ", scale=1.0 / self.head_dim)"),
      (_SDPA_MASKED, _SDPA_MASKED[:-1] + ", scale=1.0 / self.head_dim)")),
    M("attn_unmasked", "attention.causal_mask",
      "is_causal=False: every position attends to the future (real bug 14: xformers issue 103)",
      ("is_causal=True", "is_causal=False")),
    M("attn_mask_sees_next_token", "attention.causal_mask",
      "causal mask shifted by one: position t also sees t + 1 (tril(diagonal=1))",
      _ALWAYS_EXPLICIT_MASK, (_CAUSAL_MASK, "mask = k_pos <= q_pos + 1")),
    M("attn_mask_excludes_self", "attention.causal_mask",
      "causal mask shifted by one the other way: position t sees only t' < t, not itself",
      _ALWAYS_EXPLICIT_MASK, (_CAUSAL_MASK, "mask = k_pos < q_pos")),
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
      "eps=1e-2 inside the square root: small vectors are no longer scaled to unit RMS (real bug 25: meta-llama issue 771)",
      append=_norm_override("return _mutant_F.rms_norm(x, (x.size(-1),), eps=1e-2)")),
    M("rmsnorm_without_sqrt", "rmsnorm",
      "divides by the mean square instead of its square root",
      append=_norm_override("return x / (x.float().pow(2).mean(-1, keepdim=True) + 1e-6).to(x.dtype)")),
    M("rmsnorm_over_whole_tensor", "rmsnorm",
      "mean() without dim: one RMS over the whole tensor instead of one per vector",
      append=_norm_override("return x * _mutant_torch.rsqrt(x.float().pow(2).mean() + 1e-6).to(x.dtype)")),
    M("norm_missing_after_embedding", "rmsnorm.after_embedding",
      "no RMSNorm after the token embedding",
      ("x = self.transformer.wte(idx)  # (B, T, C)\n        x = norm(x)\n", "x = self.transformer.wte(idx)\n")),
    M("norm_missing_before_attention", "rmsnorm.pre_attention",
      "attention reads the raw residual stream: x + attn(x)",
      (_ATTN_CALL, "x = x + self.attn(x, cos_sin, kv_cache, ve)")),
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
      "lm_head.weight tied to wte.weight (GPT-2 style) instead of untied (real bug 32: transformers PR 42612)",
      append=_init_override("self.lm_head.weight = self.transformer.wte.weight")),
    M("softcap_doubled", "lm_head.untied_softcap",
      "logit softcap twice the card's (30 for 15: Gemma 2's final cap)",
      (lambda card: f"LOGIT_SOFTCAP = {card.softcap!r}", lambda card: f"LOGIT_SOFTCAP = {2 * card.softcap!r}")),
    M("softcap_missing", "lm_head.untied_softcap",
      "no logit softcap: raw lm_head logits",
      ("        logits = LOGIT_SOFTCAP * torch.tanh(logits / LOGIT_SOFTCAP)\n", "")),
    M("softcap_clamped", "lm_head.untied_softcap",
      "logits hard-clamped to [-cap, cap] instead of cap * tanh(logits / cap)",
      ("logits = LOGIT_SOFTCAP * torch.tanh(logits / LOGIT_SOFTCAP)",
       "logits = logits.clamp(-LOGIT_SOFTCAP, LOGIT_SOFTCAP)")),
    M("logits_not_float32", "lm_head.untied_softcap",
      "logits left in the model's dtype (bfloat16 in a bfloat16 model) instead of float32",
      ("        logits = logits.to(torch.promote_types(logits.dtype, torch.float32))", "        pass")),

    # ---- 9 final norm --------------------------------------------------------------------------
    M("final_norm_missing", "final_norm.before_lm_head",
      "no RMSNorm between the last block and lm_head",
      ("        x = norm(x)\n\n        logits = self.lm_head(x)", "\n        logits = self.lm_head(x)")),

    # ---- 10 model scaling ----------------------------------------------------------------------
    M("wte_rows_padded_to_64", "scaling.parameter_count",
      "embedding rows padded to a multiple of 64: extra parameters for a vocab that is not a multiple of 64",
      (_WTE, "wte=nn.Embedding((V + 63) // 64 * 64, config.n_embd)")),
    M("flops_count_the_embedding", "scaling.parameter_count",
      "estimate_flops counts the embedding lookup as a matmul: 6 * N instead of 6 * (N - N_wte)",
      ("n_matmul = sum(m.weight.numel() for m in self.modules() if isinstance(m, nn.Linear))",
       "n_matmul = sum(p.numel() for p in self.parameters())"), own_only=True),

    # ---- 11 loss -------------------------------------------------------------------------------
    M("loss_ignore_index_dropped", "loss.cross_entropy",
      "cross_entropy without ignore_index=-1: targets of -1 are not ignored",
      ("ignore_index=-1, reduction=\"none\")", "reduction=\"none\")")),
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
      ('ignore_index=-1, reduction="none")', 'ignore_index=-1, reduction="none", label_smoothing=0.1)')),
    M("loss_on_uncapped_logits", "loss.cross_entropy",
      "the loss is computed from the logits before the softcap, not the returned ones (real bug 30: ml-cross-entropy issue 48, keras-hub PR 1712)",
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
      "RoPE restarts at position 0 for every decoded chunk instead of at the cache position (real bug 8: executorch PR 2010, tiny-llm PR 46)",
      ("self.cos[:, T0:T0 + T], self.sin[:, T0:T0 + T]", "self.cos[:, :T], self.sin[:, :T]")),
    M("kv_cache_not_read", "inference.kv_cache",
      "keys and values are written to the cache but attention only sees the current chunk",
      ("k, v = self._cached(kv_cache, k, v)", "self._cached(kv_cache, k, v)")),
    M("kv_every_layer_in_slot_0", "inference.kv_cache",
      "every layer inserts as layer 0: layers overwrite each other and the cache position never advances",
      ("kv_cache.insert_kv(self.layer_idx, k, v)", "kv_cache.insert_kv(0, k, v)")),
    M("kv_chunk_unmasked", "inference.kv_cache",
      "a chunk after a cached prefix is not causally masked inside itself (real bug 14: transformers PR 30652)",
      (_CAUSAL_MASK, "mask = k_pos < Tk")),
    M("generate_top_k_keeps_k_minus_1", "inference.generate",
      "top-k filter with <= instead of <: the k-th largest logit is dropped too",
      ("logits < kth", "logits <= kth"), own_only=True),
    M("generate_ignores_temperature", "inference.generate",
      "temperature accepted but logits never divided by it",
      ("                logits = logits / temperature\n", ""), own_only=True),

    # ---- real bugs that public GPT code shipped (../shared/real-bugs.md), beyond those cited above ---------
    M("rope_table_for_adjacent_pairs", "rope.rotary",
      "cos/sin laid out for adjacent pairs (theta repeated twice) while the rotation splits halves: dims get the "
      "wrong frequency (real bug 2: how-to-train-your-gpt issue 6)",
      ("freqs = torch.outer(t, inv_freq)  # (T, D/2)",
       "freqs = torch.outer(t, inv_freq.repeat_interleave(2)[: head_dim // 2])  # (T, D/2)")),
    M("rope_k_split_by_n_head", "attention.gqa",
      "K's channels regrouped with the n_head layout when n_kv_head < n_head, as a RoPE permute did "
      "(real bug 3: llama.cpp PR 3364, TinyLlama issue 24)",
      ("k = self.c_k(x).view(B, T, self.n_kv_head, self.head_dim)",
       "k = self.c_k(x).view(B, T, self.n_kv_head, self.head_dim)\n"
       "        if self.n_kv_head < self.n_head:\n"
       "            k = k.reshape(B, T, -1, self.n_kv_head).transpose(2, 3).reshape(B, T, self.n_kv_head, self.head_dim)")),
    M("rope_positions_in_bfloat16", "rope.rotary",
      "rotary positions built in bfloat16: position 1857 becomes 1856 and cos is off by up to 2 far out "
      "(real bug 5: transformers PR 29285, modded-nanogpt issue 39)",
      ("t = torch.arange(seq_len, dtype=torch.float32, device=device)",
       "t = torch.arange(seq_len, dtype=torch.float32, device=device).bfloat16().float()")),
    M("rope_inv_freq_in_bfloat16", "rope.rotary",
      "inverse frequencies computed in bfloat16 before the outer product (real bug 5: gpt-neox issue 1003)",
      ("inv_freq = 1.0 / (base ** (channels / head_dim))", "inv_freq = (1.0 / (base ** (channels / head_dim))).bfloat16().float()")),
    M("rope_limit_ignores_cache_offset", "contract.validation",
      "the rotary length check ignores the KV cache position: a shape error past the table instead of a ValueError "
      "(real bug 9: nanochat issue 514, PR 520)",
      ("if T == 0 or T0 + T > self.rotary_seq_len:", "if T == 0 or T > self.rotary_seq_len:"), own_only=True),
    M("gqa_group_size_hard_coded_2", "attention.gqa",
      "kv heads expanded with a group size of 2 hard-coded: right for 4:2 and 6:3, wrong for 6:2, 8:2, 12:4 and MQA "
      "(real bug 11: TransformerLens PR 520, vLLM issue 13686)",
      ("gqa = self.n_kv_head != self.n_head",
       "gqa = self.n_kv_head != self.n_head\n"
       "        if gqa:\n"
       "            heads = torch.arange(self.n_head, device=k.device).div(2, rounding_mode='floor').clamp(max=k.size(1) - 1)\n"
       "            k, v, gqa = k[:, heads], v[:, heads], False")),
    M("sdpa_is_causal_for_a_chunk", "inference.kv_cache",
      "a chunk after a cached prefix attends with is_causal=True, which aligns top-left: query 0 of the chunk sees key 0 "
      "only (real bug 12: pytorch issue 108108, nanochat PR 456)",
      ("            mask = attention_mask(Tq, Tk, self.window, q.device)\n"
       "            y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, enable_gqa=gqa)",
       "            y = F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=gqa)")),
    M("chunk_mask_hides_the_prefix", "inference.kv_cache",
      "the chunk's T x T causal mask laid over the cached prefix's scores: the prefix is masked out "
      "(real bug 13: meta-llama/llama issue 899, PR 900)",
      ("    mask = k_pos <= q_pos\n", "    mask = (k_pos <= q_pos) & (k_pos >= Tk - Tq)\n")),
    M("window_polarity_flipped", "sliding_window.keys",
      "the window merged with the causal mask with the wrong polarity: keys within W ahead become visible "
      "(real bug 15: transformers issue 31673, PR 31674)",
      ("mask = mask & (q_pos - k_pos <= window)", "mask = mask | (k_pos - q_pos <= window)")),
    M("window_excludes_its_edge", "sliding_window.keys",
      "(W, 0) read as W keys in all instead of W + 1: the oldest key of the window is dropped "
      "(real bug 16: transformers issue 39408, mlx-lm PR 390)",
      ("mask = mask & (q_pos - k_pos <= window)", "mask = mask & (q_pos - k_pos < window)")),
    M("window_on_the_training_path_only", "sliding_window.decoding",
      "decoding with a KV cache attends to the whole cache, the window only applies without one "
      "(real bug 17: nanochat issue 452, PR 456)",
      ("mask = attention_mask(Tq, Tk, self.window, q.device)", "mask = attention_mask(Tq, Tk, self.window if Tq == Tk else None, q.device)")),
    M("kv_cache_grown_with_resize", "inference.kv_cache",
      "the KV cache grows with resize_, which reinterprets memory: layers > 0 are scrambled (real bug 19: nanochat "
      "issue 187, PR 186)",
      append="""
        def _mutant_grow(self, needed):
            shape = list(self.kv_cache.shape)
            shape[4] = max(needed, 2 * shape[4])
            self.kv_cache.resize_(shape)


        KVCache._grow = _mutant_grow
        """, own_only=True),
    M("flash_cache_advanced_per_layer", "flash_cache.layout",
      "the flash-style cache position advanced by every layer instead of once after the last "
      "(real bug 20: torchchat PR 1462, llama.cpp issue 3825)",
      ("if self.layer_idx == kv_cache.n_layers - 1:\n            kv_cache.advance(t1 - t0)",
       "kv_cache.advance(t1 - t0)")),
    M("kv_ragged_rows_at_row_0", "contract.validation",
      "a flash-style cache with rows at different positions is decoded at row 0's position for every row "
      "(real bug 21: nanochat PR 485)",
      ("        if torch.is_tensor(rows) and rows.device.type != \"meta\" and not bool((rows == rows[0]).all()):\n",
       "        if False:\n")),
    M("kv_cache_dtype_float32", "inference.kv_cache",
      "keys and values stored in float32 whatever the model computes in (real bug 22: nanochat PR 795)",
      ("return kv_cache.insert_kv(self.layer_idx, k, v)", "return kv_cache.insert_kv(self.layer_idx, k.float(), v.float())")),
    M("rmsnorm_divides_by_rsqrt", "rmsnorm",
      "divides by rsqrt(mean(x**2)) instead of multiplying (real bug 23: llm-foundry issue 371, PR 372)",
      append=_norm_override("return x / _mutant_torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6)")),
    M("rmsnorm_centred", "rmsnorm",
      "divides by the standard deviation (mean-centred variance) instead of the root mean square "
      "(real bug 24: timm issue 2380, keras PR 22393)",
      append=_norm_override("return x / _mutant_torch.sqrt(x.var(-1, keepdim=True, unbiased=False) + 1e-6)")),
    M("rmsnorm_eps_outside_the_root", "rmsnorm",
      "x / (sqrt(mean(x**2)) + 1e-6): the eps added outside the square root (real bug 25: gpt-neox PR 1345)",
      append=_norm_override("return x / (x.pow(2).mean(-1, keepdim=True).sqrt() + 1e-6)")),
    M("rmsnorm_eps_of_the_input_dtype", "rmsnorm",
      "eps taken from the input's dtype: 2^-7 for bfloat16 turns tiny rows to 0.01 RMS "
      "(real bug 26: pytorch issue 140092, PR 142848)",
      append=_norm_override("return _mutant_F.rms_norm(x, (x.size(-1),), eps=_mutant_torch.finfo(x.dtype).eps)")),
    M("attention_scale_rounded_to_bfloat16", "attention.sdpa",
      "the attention scale 1/sqrt(head_dim) rounded to bfloat16 before use (real bug 27: transformers PR 29402)",
      (_SDPA_CAUSAL, _SDPA_CAUSAL[:-1] + ", scale=float(torch.tensor(self.head_dim ** -0.5).bfloat16()))"),
      (_SDPA_MASKED, _SDPA_MASKED[:-1] + ", scale=float(torch.tensor(self.head_dim ** -0.5).bfloat16()))")),
    M("softcap_before_float32_cast", "lm_head.untied_softcap",
      "the softcap's tanh runs in the model's dtype and the logits are cast to float32 after it "
      "(real bug 28: nanochat PR 326, commit 16788ee)",
      ("        logits = logits.to(torch.promote_types(logits.dtype, torch.float32))  # at least float32 for the softmax\n"
       "        # soft cap (Gemma 2, Team et al. 2024): smooth, and |logit| < 15 whatever the activations\n"
       "        logits = LOGIT_SOFTCAP * torch.tanh(logits / LOGIT_SOFTCAP)\n",
       "        logits = LOGIT_SOFTCAP * torch.tanh(logits / LOGIT_SOFTCAP)\n"
       "        logits = logits.to(torch.promote_types(logits.dtype, torch.float32))\n")),
    M("softcap_x_tanh_x", "lm_head.untied_softcap",
      "x * tanh(x / cap) instead of cap * tanh(x / cap): no cap at all (real bug 29: unsloth-zoo PR 593)",
      ("logits = LOGIT_SOFTCAP * torch.tanh(logits / LOGIT_SOFTCAP)", "logits = logits * torch.tanh(logits / LOGIT_SOFTCAP)")),
    M("init_weights_ties_the_head", "lm_head.untied_softcap",
      "init_weights (the meta-device materialisation path) ties lm_head to wte (real bug 33: LLMs-from-scratch "
      "PR 826, NeMo Automodel PR 2511)",
      append="""
        _mutant_init_weights = GPT.init_weights


        def _tying_init_weights(self):
            _mutant_init_weights(self)
            self.lm_head.weight = self.transformer.wte.weight


        GPT.init_weights = _tying_init_weights
        """),
    M("load_ties_the_head_to_the_embedding", "lm_head.untied_softcap",
      "loading a state dict overwrites lm_head with the embedding (real bug 32: transformers PR 43429)",
      append=_init_override("""self.register_load_state_dict_post_hook(
                lambda module, keys: module.lm_head.weight.data.copy_(module.transformer.wte.weight.data))""")),
    M("load_re_zeroes_the_head", "lm_head.untied_softcap",
      "init_weights runs again after a load and re-zeroes the head (real bug 35: transformers PR 45079)",
      append=_init_override("""self.register_load_state_dict_post_hook(lambda module, keys: module.init_weights())""")),
    M("init_skips_the_embedding", "embedding.wte",
      "init_weights leaves wte as it was: after to_empty() it keeps whatever the memory held "
      "(real bug 34: nanochat PR 686, commits 94b73ad, 9822cc7)",
      ("            elif isinstance(module, nn.Embedding):\n                nn.init.normal_(module.weight, mean=0.0, std=1.0)\n", "")),
    M("wte_cast_to_bfloat16_on_cpu", "embedding.wte",
      "init_weights casts wte to bfloat16 on every device, the CPU included: a float32 model computes in bfloat16 "
      "(real bug 36: nanochat commit 306bc38, PRs 224, 244)",
      ("        self._init_modern_components()\n", "        self._init_modern_components()\n        self.transformer.wte.to(dtype=torch.bfloat16)\n")),
    M("loss_nan_when_every_target_is_ignored", "loss.cross_entropy",
      "the mean loss divides by the number of valid targets unguarded: 0/0 = NaN when all are -1 "
      "(real bug 37: nanochat issues 590, 618)",
      ("return losses.sum() / (targets != -1).sum().clamp(min=1)", "return losses.sum() / (targets != -1).sum()"), own_only=True),
    M("generate_top_k_0_crashes", "inference.generate",
      "top_k=0 passed to topk: an empty selection and an IndexError (real bug 38: nanochat issue 466, PR 467)",
      ("if top_k:  # None and 0 filter nothing", "if top_k is not None:  # None and 0 filter nothing"), own_only=True),
    M("generate_top_k_not_clamped", "inference.generate",
      "top_k larger than the vocabulary passed to topk unclamped: 'selected index k out of range' "
      "(real bug 39: TransformerLens PR 1347)",
      ("kth = torch.topk(logits, min(top_k, logits.size(-1))).values[:, -1:]", "kth = torch.topk(logits, top_k).values[:, -1:]"), own_only=True),
    M("generate_temperature_0_divides", "inference.generate",
      "temperature 0 divides the logits by zero instead of taking the argmax (real bug 40: nanoGPT issue 738)",
      ("            if temperature == 0:", "            if False:"), own_only=True),
    M("attention_dropout_always_on", "attention.sdpa",
      "dropout_p=0.1 passed to scaled dot-product attention unconditionally, in eval too (real bug 41: nanoGPT PR 240)",
      (_SDPA_CAUSAL, _SDPA_CAUSAL[:-1] + ", dropout_p=0.1)"), (_SDPA_MASKED, _SDPA_MASKED[:-1] + ", dropout_p=0.1)")),

    # ---- the modern components (92d63d4), as config options of nanochat/gpt.py ---------------------------
    M("window_short_is_a_third", "sliding_window.window_sizes",
      "the short window is a third of the context instead of a quarter (still rounded up to 128)",
      ("long, short = self.sequence_len, -(-self.sequence_len // 4 // 128) * 128",
       "long, short = self.sequence_len, -(-self.sequence_len // 3 // 128) * 128")),
    M("window_last_layer_short", "sliding_window.window_sizes",
      "the last layer follows the pattern instead of being forced long",
      ("        sizes[-1] = long\n        return sizes", "        return sizes")),
    M("window_pattern_not_tiled", "sliding_window.window_sizes",
      "the pattern is not tiled: layers past its length fall back to long windows",
      ('sizes = [short if self.window_pattern[i % len(self.window_pattern)] == "S" else long',
       'sizes = [short if i < len(self.window_pattern) and self.window_pattern[i] == "S" else long')),
    M("ve_on_even_layers", "value_embeddings.layers",
      "value embeddings on even layers (0, 2, ...) instead of counting back from the last one",
      ("return self.value_embeds and layer_idx % 2 == (self.n_layer - 1) % 2", "return self.value_embeds and layer_idx % 2 == 0")),
    M("ve_gate_scale_2", "value_embeddings.gate",
      "value-embedding gate 2 * sigmoid instead of 3 * sigmoid", ("VE_GATE_CHANNELS, VE_GATE_SCALE = 12, 3.0", "VE_GATE_CHANNELS, VE_GATE_SCALE = 12, 2.0")),
    M("ve_gate_reads_the_last_channels", "value_embeddings.gate",
      "the gate reads the last 12 channels of x instead of the first",
      ("gate = VE_GATE_SCALE * torch.sigmoid(self.ve_gate(x[..., :VE_GATE_CHANNELS]))",
       "gate = VE_GATE_SCALE * torch.sigmoid(self.ve_gate(x[..., -VE_GATE_CHANNELS:]))")),
    M("ve_added_to_k", "value_embeddings.mixing",
      "the value embedding is added to K as well as V",
      ("            v = v + gate.unsqueeze(-1) * ve.view(B, T, self.n_kv_head, self.head_dim)",
       "            v = v + gate.unsqueeze(-1) * ve.view(B, T, self.n_kv_head, self.head_dim)\n"
       "            k = k + gate.unsqueeze(-1) * ve.view(B, T, self.n_kv_head, self.head_dim)")),
    M("ve_of_the_previous_token", "value_embeddings.mixing",
      "the value embedding of the previous token instead of the current one",
      ("ve = self.value_embeds[str(i)](idx) if self.config.has_ve(i) else None",
       "ve = self.value_embeds[str(i)](idx.roll(1, dims=1)) if self.config.has_ve(i) else None")),
    M("lambdas_x0_from_the_raw_embedding", "lambdas.application",
      "x0 taken before the norm: the x0 lambda mixes the raw embedding back in",
      ("        embedded = x\n", "        embedded = x\n        raw_embedding = self.transformer.wte(idx)\n"),
      ("x = self.resid_lambdas[i] * x + self.x0_lambdas[i] * x0", "x = self.resid_lambdas[i] * x + self.x0_lambdas[i] * raw_embedding")),
    M("lambdas_applied_after_the_block", "lambdas.application",
      "the lambdas scale the block's output instead of its input",
      ("            if self.config.lambdas:\n                x = self.resid_lambdas[i] * x + self.x0_lambdas[i] * x0\n", ""),
      ("            x = block(x, cos_sin, kv_cache, ve)\n",
       "            x = block(x, cos_sin, kv_cache, ve)\n            if self.config.lambdas:\n"
       "                x = self.resid_lambdas[i] * x + self.x0_lambdas[i] * x0\n")),
    M("lambdas_init_not_decaying", "lambdas.init",
      "resid_lambdas start at 1.15 in every layer instead of decaying to 1.05",
      ("self.resid_lambdas[i] = 1.15 - 0.10 * frac", "self.resid_lambdas[i] = 1.15")),
    M("smear_reads_the_next_token", "smear.causality",
      "smear mixes in the next position's embedding instead of the previous one",
      ("        prev = x[:, :-1] if last is None else torch.cat([last, x[:, :-1]], dim=1)\n"
       "        first = x.size(1) - prev.size(1)  # 1 when position 0 of this chunk has no predecessor\n"
       "        gate = self.smear_lambda * torch.sigmoid(self.smear_gate(x[:, first:, :SMEAR_CHANNELS]))\n"
       "        return torch.cat([x[:, :first], x[:, first:] + gate * prev], dim=1)",
       "        gate = self.smear_lambda * torch.sigmoid(self.smear_gate(x[:, :-1, :SMEAR_CHANNELS]))\n"
       "        return torch.cat([x[:, :-1] + gate * x[:, 1:], x[:, -1:]], dim=1)")),
    M("smear_gate_ungated", "smear.mixing",
      "the smear adds smear_lambda * x_{t-1} without the sigmoid gate",
      ("gate = self.smear_lambda * torch.sigmoid(self.smear_gate(x[:, first:, :SMEAR_CHANNELS]))",
       "gate = self.smear_lambda * torch.ones_like(self.smear_gate(x[:, first:, :SMEAR_CHANNELS]))")),
    M("smear_cache_forgets_the_last_embedding", "smear.causality",
      "decoding with a cache, the smear never reads the previous chunk's last embedding",
      ('x = self._smear(x, getattr(kv_cache, "prev_embedding", None))', "x = self._smear(x, None)")),
    M("backout_from_the_first_block", "backout.subtraction",
      "backout subtracts the output of block 0 instead of block n_layer // 2",
      ("            if i == self.config.n_layer // 2:", "            if i == 0:")),
    M("backout_added", "backout.subtraction",
      "backout adds the mid-stack residual instead of subtracting it",
      ("x = x - self.backout_lambda * x_mid", "x = x + self.backout_lambda * x_mid")),
    M("padded_logits_not_sliced", "padded_vocab.logits",
      "the logits keep the padding columns: the softmax runs over the padded vocabulary",
      ("logits = self.lm_head(x)[..., :self.config.vocab_size]", "logits = self.lm_head(x)")),
    M("padding_rounds_down", "padded_vocab.parameters",
      "the vocabulary padded by one extra multiple even when it is already a multiple",
      ("return -(-self.vocab_size // self.pad_vocab_size_to) * self.pad_vocab_size_to",
       "return (self.vocab_size // self.pad_vocab_size_to + 1) * self.pad_vocab_size_to")),
    M("flash_cache_forgets_the_prefix", "flash_cache.layout",
      "the flash-style cache hands attention this chunk's keys and values only, not the cached prefix",
      ("return k_cache[:, :t1].transpose(1, 2), v_cache[:, :t1].transpose(1, 2)",
       "return k_cache[:, t0:t1].transpose(1, 2), v_cache[:, t0:t1].transpose(1, 2)")),

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

from nanochat.mutants_blind import ROUND_1, ROUND_2, ROUND_3, ROUND_4, ROUND_5  # noqa: E402 - the blind rounds build on M

MUTANTS = MUTANTS + ROUND_1 + ROUND_2 + ROUND_3 + ROUND_4 + ROUND_5
BY_NAME = {m.name: m for m in MUTANTS}
NAME_PATTERN = re.compile(r"^[a-z][a-z0-9]*(_[a-z0-9]+)*$")
