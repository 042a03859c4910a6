"""
The blind rounds of the mutant catalog: mutants written by reviewers who had not read the suite, from
nanochat/gpt.py, the README's architecture and the bug classes of real GPT code alone (issue: "Catch
the bugs real GPT code ships"). What survived a round showed what to test; the suite was then
strengthened until the round's survivors were killed, and every round's mutants stay in the catalog
(nanochat/mutants.py adds them to MUTANTS) so that the suite keeps killing them.

Round 1: 71 mutants, 67 killed at first; the 4 survivors (a chunk longer than twice the KV cache's
capacity, a reset cache keeping the smear's last embedding, a mask and the rotary tables made without
device=) led to tests/test_kv_cache.py's oversized chunk, tests/test_smear.py's reset test and
tests/test_devices.py.

Round 2 (a fresh reviewer): 60 mutants, 52 killed at first; the 8 survivors led to tests of float64
logits, lower-case window patterns, estimate_flops with windows longer than the sequence, ids checked
against vocab_size (not the padded size) and in every row, loss_reduction='sum', and a growing KV cache
on the meta device. One is argued in its description: rng_cpu_generator_r2 only shows on a GPU.

Round 3 (a fresh reviewer): 60 mutants, 54 killed at first (one, a mask made without device=, is killed on
the meta device); the 5 survivors led to tests of the short window's rounding at sequence_len 513, the
flash-style cache's reset with smear, estimate_flops with value embeddings and lambdas on, seeds deciding
the weights, and seeds above bit 31.

Round 4 (a fresh reviewer): 66 mutants, 63 killed at first; the 3 survivors (targets of another shape with
as many elements, a grown KV cache that loses its dtype, an embedding drawn from a normal truncated at 3
sigma) led to the transposed and flat targets cases, growth in the cache dtype test, and a kurtosis check
of every normal or uniform init.

Round 5 (a fresh reviewer): 52 mutants, 50 killed at first; the 2 survivors (a flash-style cache that never
receives the smear's last embedding, and a bad loss_reduction accepted when no targets are given) led to
tests/test_flash_cache.py's smear decode test and the without-targets case of the loss_reduction check.
With at most 2 survivors, both then killed, round 5 ends the blind rounds.
"""

from nanochat.mutants import M


_SOFTCAP_OLD = ("        logits = logits.to(torch.promote_types(logits.dtype, torch.float32))  # at least float32 for the softmax\n"
                "        # soft cap (Gemma 2, Team et al. 2024): smooth, and |logit| < 15 whatever the activations\n"
                "        logits = LOGIT_SOFTCAP * torch.tanh(logits / LOGIT_SOFTCAP)\n")

ROUND_1 = (
    # ---- bfloat16 / precision -------------------------------------------------------------------
    M("softcap_before_f32_cast", "lm_head.untied_softcap",
      "softcap computed in the activation dtype (bf16 under autocast), then cast to float32",
      (_SOFTCAP_OLD,
       "        logits = LOGIT_SOFTCAP * torch.tanh(logits / LOGIT_SOFTCAP)\n"
       "        logits = logits.to(torch.promote_types(logits.dtype, torch.float32))\n")),
    M("logits_f32_only_for_loss", "lm_head.untied_softcap",
      "logits cast to float32 only when targets are given: inference logits stay bf16",
      ("logits = logits.to(torch.promote_types(logits.dtype, torch.float32))  # at least float32 for the softmax",
       "logits = logits if targets is None else logits.float()")),
    M("rmsnorm_bf16_eps", "rmsnorm", "RMSNorm uses bfloat16's eps (2**-7) whatever the dtype",
      ("return F.rms_norm(x, (x.size(-1),))", "return F.rms_norm(x, (x.size(-1),), eps=torch.finfo(torch.bfloat16).eps)")),
    M("rmsnorm_eps_1e5", "rmsnorm", "RMSNorm with LLaMA's eps=1e-5 instead of finfo(dtype).eps",
      ("return F.rms_norm(x, (x.size(-1),))", "return F.rms_norm(x, (x.size(-1),), eps=1e-5)")),
    M("rmsnorm_in_bf16", "rmsnorm", "RMSNorm computed in bfloat16 and cast back",
      ("return F.rms_norm(x, (x.size(-1),))", "return F.rms_norm(x.bfloat16(), (x.size(-1),)).to(x.dtype)")),
    M("rope_positions_bf16", "rope.rotary", "rotary positions rounded to bf16 (exact only up to 256)",
      ("t = torch.arange(seq_len, dtype=torch.float32, device=device)",
       "t = torch.arange(seq_len, dtype=torch.float32, device=device).bfloat16().float()")),
    M("rope_positions_fp16", "rope.rotary", "rotary positions rounded to fp16 (exact only up to 2048)",
      ("t = torch.arange(seq_len, dtype=torch.float32, device=device)",
       "t = torch.arange(seq_len, dtype=torch.float32, device=device).half().float()")),
    M("rope_inv_freq_bf16", "rope.rotary", "rotary inverse frequencies rounded to bf16",
      ("inv_freq = 1.0 / (base ** (channels / head_dim))",
       "inv_freq = (1.0 / (base ** (channels / head_dim))).bfloat16().float()")),
    M("rope_base_bf16_rounded", "rope.rotary", "RoPE base 10000 rounded to its bf16 value 9984",
      ("ROPE_BASE = 10000  #", "ROPE_BASE = 9984  #")),
    M("rope_compute_in_bf16", "rope.rotary", "rotation computed in the tables' bf16 even for float32 q, k",
      ("x1, x2 = x[..., :d], x[..., d:]", "x1, x2 = x[..., :d].to(cos.dtype), x[..., d:].to(cos.dtype)"),
      needs_bf16_tables=True),
    M("rope_direction_flipped", "rope.rotary", "pairs rotated by +t*theta instead of -t*theta",
      ("    y1 = x1 * cos + x2 * sin\n    y2 = x1 * (-sin) + x2 * cos\n",
       "    y1 = x1 * cos - x2 * sin\n    y2 = x1 * sin + x2 * cos\n")),
    M("rope_freq_head_dim_64", "rope.rotary", "frequencies use a hard-coded head_dim of 64",
      ("inv_freq = 1.0 / (base ** (channels / head_dim))", "inv_freq = 1.0 / (base ** (channels / 64))")),
    # ---- rotary tables, init, device ------------------------------------------------------------
    M("rotary_init_seq_len", "rope.rotary", "init_weights rebuilds the tables for sequence_len, not 10x",
      ("self.cos, self.sin = precompute_rotary(self.rotary_seq_len, self.config.head_dim,",
       "self.cos, self.sin = precompute_rotary(self.config.sequence_len, self.config.head_dim,")),
    M("rotary_not_rebuilt_in_init", "rope.rotary", "init_weights does not recompute the rotary tables (garbage after to_empty)",
      ("        self.cos, self.sin = precompute_rotary(self.rotary_seq_len, self.config.head_dim,\n"
       "                                               device=self.lm_head.weight.device)\n", "")),
    M("rotary_init_no_device", "rope.rotary", "init_weights rebuilds the tables on the default device (CPU)",
      ("self.cos, self.sin = precompute_rotary(self.rotary_seq_len, self.config.head_dim,\n"
       "                                               device=self.lm_head.weight.device)",
       "self.cos, self.sin = precompute_rotary(self.rotary_seq_len, self.config.head_dim)")),
    M("mask_no_device", "attention.causal_mask", "attention_mask builds its positions on the CPU",
      ("q_pos = torch.arange(Tk - Tq, Tk, device=device)[:, None]\n    k_pos = torch.arange(Tk, device=device)[None, :]",
       "q_pos = torch.arange(Tk - Tq, Tk)[:, None]\n    k_pos = torch.arange(Tk)[None, :]")),
    # ---- attention -------------------------------------------------------------------------------
    M("gqa_tile", "attention.gqa", "kv heads tiled (repeat): query head h reads kv head h % n_kv_head",
      ("gqa = self.n_kv_head != self.n_head\n",
       "gqa = False\n        if self.n_kv_head != self.n_head:\n"
       "            k, v = (t.repeat(1, self.n_head // self.n_kv_head, 1, 1) for t in (k, v))\n")),
    M("gqa_div_by_n_kv_head", "attention.gqa", "query head h reads kv head h // n_kv_head (right for 4:2 only)",
      ("gqa = self.n_kv_head != self.n_head\n",
       "gqa = False\n        if self.n_kv_head != self.n_head:\n"
       "            idx = torch.arange(self.n_head, device=k.device) // self.n_kv_head\n"
       "            k, v = k[:, idx], v[:, idx]\n")),
    M("chunk_topleft_causal", "inference.kv_cache", "a multi-token chunk after a prefix uses SDPA's top-left is_causal",
      ("if Tq == Tk and (self.window is None", "if Tq > 1 and (self.window is None")),
    M("window_mask_off_by_one", "sliding_window.keys", "a query sees only W-1 keys before it",
      ("mask = mask & (q_pos - k_pos <= window)", "mask = mask & (q_pos - k_pos < window)")),
    M("window_fastpath_off_by_one", "sliding_window.keys", "full-causal fast path taken when window == T-2",
      ("self.window >= Tk - 1)", "self.window >= Tk - 2)")),
    M("window_ignored_single_token", "sliding_window.decoding", "single-token decoding attends to the whole cache, ignoring the window",
      ("if Tq == Tk and (self.window is None", "if Tq == 1 or Tq == Tk and (self.window is None"),
      ("is_causal=True, enable_gqa=gqa)", "is_causal=Tq == Tk, enable_gqa=gqa)")),
    M("window_last_layer_not_long", "sliding_window.window_sizes", "the last layer follows the pattern instead of always L",
      ("        sizes[-1] = long\n", "")),
    M("window_short_no_tile", "sliding_window.window_sizes", "S = sequence_len // 4, not rounded up to a multiple of 128",
      ("-(-self.sequence_len // 4 // 128) * 128", "self.sequence_len // 4")),
    # ---- MLP ------------------------------------------------------------------------------------
    M("mlp_leaky_relu2", "mlp.relu2", "leaky_relu (slope 0.01) squared instead of relu squared",
      ("x = F.relu(x).square()", "x = F.leaky_relu(x).square()")),
    M("mlp_fc_bias", "mlp.fc", "c_fc has a bias (left at PyTorch's default init)",
      ("self.c_fc = nn.Linear(config.n_embd, 4 * config.n_embd, bias=False)",
       "self.c_fc = nn.Linear(config.n_embd, 4 * config.n_embd, bias=True)")),
    # ---- init ------------------------------------------------------------------------------------
    M("init_uniform_linear", "gradients.backward", "linear weights uniform with the right std instead of normal",
      ("nn.init.normal_(module.weight, mean=0.0, std=std)",
       "nn.init.uniform_(module.weight, -std * math.sqrt(3.0), std * math.sqrt(3.0))")),
    M("init_no_narrow_shrink", "gradients.backward", "linear std 1/sqrt(fan_in) without the min(1, sqrt(fan_out/fan_in)) factor",
      ("std = 1.0 / math.sqrt(fan_in) * min(1.0, math.sqrt(fan_out / fan_in))", "std = 1.0 / math.sqrt(fan_in)")),
    M("init_fan_swapped", "gradients.backward", "fan_in and fan_out read from the weight shape the wrong way round",
      ("fan_out, fan_in = module.weight.shape", "fan_in, fan_out = module.weight.shape")),
    M("init_mlp_c_proj_not_zero", "gradients.backward", "only attn.c_proj is zeroed; mlp.c_proj keeps its normal init",
      ("            nn.init.zeros_(block.mlp.c_proj.weight)\n", "")),
    M("init_reseeded_equal", "gradients.backward", "each linear weight re-seeded with seed 0: same-shape weights equal, global RNG reset",
      ("nn.init.normal_(module.weight, mean=0.0, std=std)",
       "torch.manual_seed(0)\n                nn.init.normal_(module.weight, mean=0.0, std=std)")),
    M("init_wte_uniform", "embedding.wte", "token embedding uniform(-sqrt3, sqrt3) (std 1) instead of normal",
      ("nn.init.normal_(module.weight, mean=0.0, std=1.0)", "nn.init.uniform_(module.weight, -math.sqrt(3.0), math.sqrt(3.0))")),
    M("ve_init_skipped", "value_embeddings.mixing", "value embeddings keep the N(0, 1) embedding init, not U with std 1/sqrt(n_embd)",
      ("        for ve in getattr(self, \"value_embeds\", {}).values():\n            nn.init.uniform_(ve.weight, -s, s)\n", "")),
    M("ve_gate_init_skipped", "value_embeddings.gate", "ve_gate keeps the normal linear init, not U(0, 0.02)",
      ("                nn.init.uniform_(block.attn.ve_gate.weight, 0.0, 0.02)\n", "                pass\n")),
    M("smear_lambda_not_reinit", "smear.mixing", "init_weights does not reset smear_lambda (garbage after to_empty)",
      ("            nn.init.zeros_(self.smear_lambda)  # smear starts off\n", "")),
    M("lambdas_schedule_over_n_layer", "lambdas.init", "lambda schedule frac = i / n_layer (never reaches the end values)",
      ("frac = i / max(c.n_layer - 1, 1)", "frac = i / c.n_layer")),
    M("x0_schedule_reversed", "lambdas.init", "x0 lambdas run 0.05 -> 0.20 instead of 0.20 -> 0.05",
      ("self.x0_lambdas[i] = 0.20 - 0.15 * frac", "self.x0_lambdas[i] = 0.05 + 0.15 * frac")),
    # ---- modern components -----------------------------------------------------------------------
    M("lambdas_after_block", "lambdas.application", "lambdas applied after each block instead of before",
      ("            if self.config.lambdas:\n                x = self.resid_lambdas[i] * x + self.x0_lambdas[i] * x0\n"
       "            ve = self.value_embeds[str(i)](idx) if self.config.has_ve(i) else None\n"
       "            x = block(x, cos_sin, kv_cache, ve)\n",
       "            ve = self.value_embeds[str(i)](idx) if self.config.has_ve(i) else None\n"
       "            x = block(x, cos_sin, kv_cache, ve)\n"
       "            if self.config.lambdas:\n                x = self.resid_lambdas[i] * x + self.x0_lambdas[i] * x0\n")),
    M("x0_before_smear", "lambdas.application", "x0 is the embedding before the smear, not after",
      ("x0, x_mid = x, None", "x0, x_mid = embedded, None")),
    M("x0_detached", "lambdas.application", "x0 detached: no gradient reaches wte through the x0 path",
      ("x0, x_mid = x, None", "x0, x_mid = x.detach(), None")),
    M("smear_uses_next", "smear.causality", "smear mixes in the next position's embedding (not causal)",
      append=("\n\ndef _smear_next(self, x, last=None):\n"
              "    gate = self.smear_lambda * torch.sigmoid(self.smear_gate(x[:, :-1, :SMEAR_CHANNELS]))\n"
              "    return torch.cat([x[:, :-1] + gate * x[:, 1:], x[:, -1:]], dim=1)\n\n\n"
              "GPT._smear = _smear_next\n")),
    M("smear_gate_reads_prev", "smear.mixing", "the smear gate reads the previous position's channels, not the current one's",
      ("self.smear_gate(x[:, first:, :SMEAR_CHANNELS])", "self.smear_gate(prev[..., :SMEAR_CHANNELS])")),
    M("smear_cache_carries_smeared", "smear.mixing", "the KV cache carries the smeared embedding to the next chunk",
      ("        embedded = x\n        if self.config.smear:\n            x = self._smear(x, getattr(kv_cache, \"prev_embedding\", None))\n",
       "        if self.config.smear:\n            x = self._smear(x, getattr(kv_cache, \"prev_embedding\", None))\n        embedded = x\n")),
    M("kv_reset_keeps_prev_embedding", "smear.mixing", "KVCache.reset leaves prev_embedding, so a reused cache smears the old last token",
      append="\n\ndef _reset(self):\n    self.pos = 0\n\n\nKVCache.reset = _reset\n"),
    M("backout_sign", "backout.subtraction", "backout adds the mid-stack residual instead of subtracting it",
      ("x = x - self.backout_lambda * x_mid", "x = x + self.backout_lambda * x_mid")),
    M("backout_layer_off_by_one", "backout.subtraction", "x_mid taken after block n_layer//2 - 1",
      ("if i == self.config.n_layer // 2:", "if i == self.config.n_layer // 2 - 1:")),
    M("ve_gate_last_channels", "value_embeddings.gate", "the ve gate reads the last 12 channels",
      ("self.ve_gate(x[..., :VE_GATE_CHANNELS])", "self.ve_gate(x[..., -VE_GATE_CHANNELS:])")),
    M("ve_gate_scale_2_b1", "value_embeddings.gate", "gate = 2 * sigmoid(...) instead of 3 * sigmoid(...)",
      ("VE_GATE_CHANNELS, VE_GATE_SCALE = 12, 3.0", "VE_GATE_CHANNELS, VE_GATE_SCALE = 12, 2.0")),
    M("ve_layers_even", "value_embeddings.layers", "value embeddings on even layers; the last one may lack one",
      ("layer_idx % 2 == (self.n_layer - 1) % 2", "layer_idx % 2 == 0")),
    M("padded_logits_not_sliced_b1", "padded_vocab.logits", "logits keep the padded rows",
      ("logits = self.lm_head(x)[..., :self.config.vocab_size]", "logits = self.lm_head(x)")),
    M("padded_vocab_extra_block", "padded_vocab.parameters", "padding adds a whole block even when vocab_size is a multiple",
      ("return -(-self.vocab_size // self.pad_vocab_size_to) * self.pad_vocab_size_to",
       "return (self.vocab_size // self.pad_vocab_size_to + 1) * self.pad_vocab_size_to if self.pad_vocab_size_to > 1 else self.vocab_size")),
    # ---- loss ------------------------------------------------------------------------------------
    M("loss_mean_counts_ignored_b1", "loss.cross_entropy", "mean divides by every target, ignored ones included",
      ("return losses.sum() / (targets != -1).sum().clamp(min=1)", "return losses.sum() / targets.numel()")),
    M("loss_all_ignored_nan", "loss.cross_entropy", "mean is 0/0 = NaN when every target is ignored",
      ("(targets != -1).sum().clamp(min=1)", "(targets != -1).sum()")),
    # ---- sampling --------------------------------------------------------------------------------
    M("topk_keeps_k_plus_one", "inference.generate", "top-k keeps k+1 tokens",
      ("torch.topk(logits, min(top_k, logits.size(-1)))", "torch.topk(logits, min(top_k + 1, logits.size(-1)))")),
    M("topk_strict_keeps_fewer", "inference.generate", "top-k masks logits <= the k-th, keeping k-1",
      ("logits.masked_fill(logits < kth,", "logits.masked_fill(logits <= kth,")),
    M("temperature_twice", "inference.generate", "temperature divided in again inside the softmax",
      ("F.softmax(logits, dim=-1), num_samples=1", "F.softmax(logits / temperature, dim=-1), num_samples=1")),
    M("topk_over_vocab_crash", "inference.generate", "top_k > vocab_size crashes torch.topk",
      ("torch.topk(logits, min(top_k, logits.size(-1)))", "torch.topk(logits, top_k)")),
    M("sampling_global_rng", "inference.generate", "multinomial draws from torch's global RNG, not the seeded generator",
      ("num_samples=1, generator=rng)", "num_samples=1)")),
    M("default_seed_0", "inference.generate", "generate's default seed changed from 42 to 0",
      ("top_k=None, seed=42):", "top_k=None, seed=0):")),
    M("topk_zero_crash", "inference.generate", "top_k=0 treated as a filter of 0 tokens (crash)",
      ("if top_k:  #", "if top_k is not None:  #")),
    M("generate_fits_off_by_one", "contract.validation", "generate rejects prompt + max_tokens == rotary length",
      ("if len(tokens) + max_tokens > self.rotary_seq_len:", "if len(tokens) + max_tokens >= self.rotary_seq_len:")),
    # ---- validation and defaults ----------------------------------------------------------------
    M("check_rotary_off_by_one", "contract.validation", "forward rejects T0 + T == rotary length",
      ("if T == 0 or T0 + T > self.rotary_seq_len:", "if T == 0 or T0 + T >= self.rotary_seq_len:")),
    M("targets_allow_minus2", "contract.validation", "targets of -2 pass validation (then crash inside cross_entropy)",
      ("if lo < -1 or hi >= V:", "if lo < -2 or hi >= V:")),
    M("ids_allow_vocab_size", "contract.validation", "token id == vocab_size passes validation",
      ("if lo < 0 or hi >= V:", "if lo < 0 or hi > V:")),
    M("validate_n_embd_even", "contract.validation", "evenness checked on n_embd instead of head_dim",
      ("if self.head_dim % 2 != 0:", "if self.n_embd % 2 != 0:")),
    M("validate_gate_channels_boundary", "contract.validation", "n_embd == 12 (ve) / 24 (smear) rejected",
      ("if getattr(self, name) and self.n_embd < channels:", "if getattr(self, name) and self.n_embd <= channels:")),
    M("config_default_vocab_50257", "contract.validation", "GPTConfig default vocab_size is GPT-2's 50257",
      ("vocab_size: int = 50304", "vocab_size: int = 50257")),
    # ---- KV caches -------------------------------------------------------------------------------
    M("kv_grow_only_doubles", "inference.kv_cache", "KVCache._grow doubles without checking what is needed",
      append=("\n\ndef _grow(self, needed):\n"
              "    capacity = 2 * self.kv_cache.size(4)\n"
              "    grown = torch.empty(*self.kv_cache.shape[:4], capacity, self.head_dim,\n"
              "                        dtype=self.kv_cache.dtype, device=self.kv_cache.device)\n"
              "    grown[..., :self.kv_cache.size(4), :] = self.kv_cache\n"
              "    self.kv_cache = grown\n\n\nKVCache._grow = _grow\n")),
    M("kv_storage_bf16", "inference.kv_cache", "KVCache stores keys and values rounded to bf16",
      append=("\n\n_orig_insert_kv = KVCache.insert_kv\n\n\n"
              "def _insert_kv(self, layer_idx, k, v):\n"
              "    return _orig_insert_kv(self, layer_idx, k.bfloat16().to(k.dtype), v.bfloat16().to(v.dtype))\n\n\n"
              "KVCache.insert_kv = _insert_kv\n")),
    M("flash_advance_absolute", "flash_cache.layout", "FlashKVCache advanced by the end position, not the chunk length",
      ("kv_cache.advance(t1 - t0)", "kv_cache.advance(t1)")),
    M("flops_count_embedding", "scaling.parameter_count", "estimate_flops counts every parameter, the embedding included",
      ("n_matmul = sum(m.weight.numel() for m in self.modules() if isinstance(m, nn.Linear))",
       "n_matmul = sum(p.numel() for p in self.parameters())")),
)

ROUND_2 = (
    # ---------------- bfloat16 / precision ----------------
    M("softcap_before_fp32_cast_r2", "lm_head.untied_softcap",
      "softcap computed in the logits' own dtype (bf16) before the float32 cast",
      ("        logits = logits.to(torch.promote_types(logits.dtype, torch.float32))  # at least float32 for the softmax\n"
       "        # soft cap (Gemma 2, Team et al. 2024): smooth, and |logit| < 15 whatever the activations\n"
       "        logits = LOGIT_SOFTCAP * torch.tanh(logits / LOGIT_SOFTCAP)\n",
       "        logits = LOGIT_SOFTCAP * torch.tanh(logits / LOGIT_SOFTCAP)\n"
       "        logits = logits.to(torch.promote_types(logits.dtype, torch.float32))  # at least float32 for the softmax\n")),
    M("logits_cast_drops_fp64_r2", "lm_head.untied_softcap",
      "logits always cast to float32, so a float64 model loses its precision",
      ("logits = logits.to(torch.promote_types(logits.dtype, torch.float32))", "logits = logits.float()")),
    M("rmsnorm_eps_1e5_r2", "rmsnorm",
      "RMSNorm with llama's eps=1e-5 instead of the dtype's eps (small-norm inputs no longer unit RMS)",
      ("return F.rms_norm(x, (x.size(-1),))", "return F.rms_norm(x, (x.size(-1),), eps=1e-5)")),
    M("rmsnorm_bf16_eps_always_r2", "rmsnorm",
      "RMSNorm always uses bfloat16's eps (0.0078), also for float32 inputs",
      ("return F.rms_norm(x, (x.size(-1),))",
       "return F.rms_norm(x, (x.size(-1),), eps=torch.finfo(torch.bfloat16).eps)")),
    M("rope_positions_bf16_r2", "rope.rotary",
      "rotary positions rounded to bf16 (positions > 256 collapse onto multiples of 2, 4, ...)",
      ("    t = torch.arange(seq_len, dtype=torch.float32, device=device)\n",
       "    t = torch.arange(seq_len, dtype=torch.float32, device=device).bfloat16().float()\n")),
    M("rope_inv_freq_bf16_r2", "rope.rotary",
      "inverse frequencies rounded to bf16 before the outer product",
      ("    inv_freq = 1.0 / (base ** (channels / head_dim))\n",
       "    inv_freq = (1.0 / (base ** (channels / head_dim))).bfloat16().float()\n")),
    M("rope_angles_bf16_r2", "rope.rotary",
      "angles rounded to bf16 before cos/sin (large positions get the wrong angle)",
      ("cos, sin = freqs.cos().bfloat16(), freqs.sin().bfloat16()",
       "cos, sin = freqs.bfloat16().cos(), freqs.bfloat16().sin()")),
    M("rope_base_bf16_r2", "rope.rotary",
      "the RoPE base rounded to bf16 (10000 -> 9984)",
      ("    inv_freq = 1.0 / (base ** (channels / head_dim))\n",
       "    inv_freq = 1.0 / (float(torch.tensor(base, dtype=torch.bfloat16)) ** (channels / head_dim))\n")),
    M("rope_head_dim_hardcoded_r2", "rope.rotary",
      "frequencies divide by the default head_dim 128 instead of the configured head_dim",
      ("    inv_freq = 1.0 / (base ** (channels / head_dim))\n",
       "    inv_freq = 1.0 / (base ** (channels / 128))\n")),
    M("rotary_reinit_short_table_r2", "rope.rotary",
      "init_weights rebuilds the rotary tables for sequence_len positions only (not 10x)",
      ("        self.cos, self.sin = precompute_rotary(self.rotary_seq_len, self.config.head_dim,",
       "        self.cos, self.sin = precompute_rotary(self.config.sequence_len, self.config.head_dim,")),
    # ---------------- device placement (GPU-only) ----------------
    M("rotary_reinit_no_device_r2", "rope.rotary",
      "init_weights rebuilds the rotary tables on the CPU whatever the model's device",
      ("        self.cos, self.sin = precompute_rotary(self.rotary_seq_len, self.config.head_dim,\n"
       "                                               device=self.lm_head.weight.device)\n",
       "        self.cos, self.sin = precompute_rotary(self.rotary_seq_len, self.config.head_dim)\n")),
    M("mask_no_device_r2", "attention.causal_mask",
      "attention_mask builds its query positions on the CPU",
      ("q_pos = torch.arange(Tk - Tq, Tk, device=device)[:, None]", "q_pos = torch.arange(Tk - Tq, Tk)[:, None]")),
    M("rng_cpu_generator_r2", "inference.generate",
      "the sampling generator is created on the CPU whatever the model's device (only a CUDA device shows it: "
      "torch.multinomial refuses a CPU generator for CUDA probabilities; generate reads values, so no meta run)",
      ("rng = torch.Generator(device=device).manual_seed(seed)", "rng = torch.Generator().manual_seed(seed)"),
      needs_cuda=True),
    M("kv_grow_no_device_r2", "inference.kv_cache",
      "KVCache._grow allocates the grown buffer on the default device",
      append=(
          "def _grow_r2(self, needed):\n"
          "    capacity = max(needed, 2 * self.kv_cache.size(4))\n"
          "    grown = torch.empty(*self.kv_cache.shape[:4], capacity, self.head_dim, dtype=self.kv_cache.dtype)\n"
          "    grown[..., :self.kv_cache.size(4), :] = self.kv_cache\n"
          "    self.kv_cache = grown\n\n\n"
          "KVCache._grow = _grow_r2\n")),
    # ---------------- GQA ----------------
    M("gqa_group_vs_kv_confusion_r2", "attention.gqa",
      "kv head chosen as h // n_kv_head (right for 4:2 only; silently wrong for 6:3, 12:4)",
      ("        gqa = self.n_kv_head != self.n_head\n",
       "        gqa = False\n"
       "        if self.n_kv_head != self.n_head:\n"
       "            kv_idx = torch.arange(self.n_head, device=q.device) // self.n_kv_head\n"
       "            k, v = k.index_select(1, kv_idx), v.index_select(1, kv_idx)\n")),
    # ---------------- sliding window ----------------
    M("window_cond_off_by_one_r2", "sliding_window.keys",
      "fast causal path also taken when T == window + 2 (query W+1 then sees key 0)",
      ("(self.window is None or self.window >= Tk - 1)", "(self.window is None or self.window >= Tk - 2)")),
    M("window_mask_strict_r2", "sliding_window.keys",
      "a query sees only W-1 keys before it",
      ("mask = mask & (q_pos - k_pos <= window)", "mask = mask & (q_pos - k_pos < window)")),
    M("window_last_layer_not_forced_r2", "sliding_window.window_sizes",
      "the last layer is no longer forced long (wrong when n_layer % len(pattern) != 0)",
      ("        sizes[-1] = long\n", "")),
    M("window_pattern_lowercase_ok_r2", "contract.validation",
      "lowercase window patterns accepted (and then 's' silently means long)",
      ("set(self.window_pattern) - set(\"SL\")", "set(self.window_pattern.upper()) - set(\"SL\")")),
    M("flops_window_unclamped_r2", "scaling.parameter_count",
      "estimate_flops counts a short window larger than sequence_len in full",
      ("seen = [c.sequence_len if w is None else min(w, c.sequence_len) for w in c.window_sizes()]",
       "seen = [c.sequence_len if w is None else w for w in c.window_sizes()]")),
    M("mask_as_additive_float_r2", "attention.causal_mask",
      "the boolean mask passed as a float (0/1 added to the scores instead of masking)",
      ("y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, enable_gqa=gqa)",
       "y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask.to(q.dtype), enable_gqa=gqa)")),
    M("chunk_mask_noncausal_r2", "inference.kv_cache",
      "chunk queries all placed at the last position: a chunk over a cached prefix sees its own future",
      ("q_pos = torch.arange(Tk - Tq, Tk, device=device)[:, None]",
       "q_pos = torch.full((Tq, 1), Tk - 1, device=device)")),
    # ---------------- KV caches ----------------
    M("kv_first_alloc_ignores_needed_r2", "inference.kv_cache",
      "the first allocation takes the declared capacity and skips the growth check: a longer prompt fails",
      append=(
          "def _insert_r2(self, layer_idx, k, v):\n"
          "    t0, t1 = self.pos, self.pos + k.size(2)\n"
          "    if self.kv_cache is None:\n"
          "        shape = (self.num_layers, 2, self.batch_size, self.num_heads, self.seq_len, self.head_dim)\n"
          "        self.kv_cache = torch.empty(shape, dtype=k.dtype, device=k.device)\n"
          "    elif t1 > self.kv_cache.size(4):\n"
          "        self._grow(t1)\n"
          "    self.kv_cache[layer_idx, 0, :, :, t0:t1] = k\n"
          "    self.kv_cache[layer_idx, 1, :, :, t0:t1] = v\n"
          "    if layer_idx == self.num_layers - 1:\n"
          "        self.pos = t1\n"
          "    return self.kv_cache[layer_idx, 0, :, :, :t1], self.kv_cache[layer_idx, 1, :, :, :t1]\n\n\n"
          "KVCache.insert_kv = _insert_r2\n")),
    M("kv_grow_only_doubles_r2", "inference.kv_cache",
      "_grow doubles without checking the need: a chunk longer than 2x capacity fails",
      append=(
          "def _grow_r2(self, needed):\n"
          "    capacity = 2 * self.kv_cache.size(4)\n"
          "    grown = torch.empty(*self.kv_cache.shape[:4], capacity, self.head_dim,\n"
          "                        dtype=self.kv_cache.dtype, device=self.kv_cache.device)\n"
          "    grown[..., :self.kv_cache.size(4), :] = self.kv_cache\n"
          "    self.kv_cache = grown\n\n\n"
          "KVCache._grow = _grow_r2\n")),
    M("kv_cache_dtype_fixed_fp32_r2", "inference.kv_cache",
      "the KV cache is always float32 (bf16/float64 models get mismatched K/V dtypes)",
      append=(
          "_orig_insert_r2 = KVCache.insert_kv\n\n\n"
          "def _insert_r2(self, layer_idx, k, v):\n"
          "    if self.kv_cache is None:\n"
          "        shape = (self.num_layers, 2, self.batch_size, self.num_heads, max(self.seq_len, self.pos + k.size(2)), self.head_dim)\n"
          "        self.kv_cache = torch.empty(shape, dtype=torch.float32, device=k.device)\n"
          "    return _orig_insert_r2(self, layer_idx, k, v)\n\n\n"
          "KVCache.insert_kv = _insert_r2\n")),
    M("kv_reset_keeps_prev_embedding_r2", "smear.mixing",
      "KVCache.reset forgets to clear the smear's prev_embedding",
      append=(
          "def _reset_r2(self):\n"
          "    self.pos = 0\n\n\n"
          "KVCache.reset = _reset_r2\n")),
    M("flash_advance_first_row_only_r2", "flash_cache.layout",
      "FlashKVCache.advance only advances cache_seqlens of batch row 0",
      append=(
          "def _advance_r2(self, num_tokens):\n"
          "    self.cache_seqlens[0] += num_tokens\n\n\n"
          "FlashKVCache.advance = _advance_r2\n")),
    # ---------------- smear ----------------
    M("smear_cache_stores_smeared_r2", "smear.mixing",
      "the cache carries the smeared embedding (not the raw one) into the next chunk",
      ("        embedded = x\n"
       "        if self.config.smear:\n"
       "            x = self._smear(x, getattr(kv_cache, \"prev_embedding\", None))\n",
       "        if self.config.smear:\n"
       "            x = self._smear(x, getattr(kv_cache, \"prev_embedding\", None))\n"
       "        embedded = x\n")),
    M("smear_gate_reads_prev_r2", "smear.mixing",
      "the smear gate reads the previous position's channels instead of the current one's",
      ("gate = self.smear_lambda * torch.sigmoid(self.smear_gate(x[:, first:, :SMEAR_CHANNELS]))",
       "gate = self.smear_lambda * torch.sigmoid(self.smear_gate(prev[..., :SMEAR_CHANNELS]))")),
    M("smear_chunk_drops_prefix_r2", "smear.mixing",
      "the cached previous embedding is only used for one-token decoding, not for chunks",
      ("prev = x[:, :-1] if last is None else torch.cat([last, x[:, :-1]], dim=1)",
       "prev = x[:, :-1] if last is None or x.size(1) > 1 else last")),
    M("smear_lambda_not_reinit_r2", "smear.mixing",
      "init_weights forgets smear_lambda (garbage after to_empty())",
      ("            nn.init.zeros_(self.smear_lambda)  # smear starts off\n", "")),
    M("smear_gate_fan_init_r2", "smear.mixing",
      "smear_gate keeps the generic normal fan init instead of U(0, 0.02)",
      ("            nn.init.uniform_(self.smear_gate.weight, 0.0, 0.02)\n", "            pass\n")),
    M("smear_channels_check_inclusive_r2", "contract.validation",
      "validation rejects n_embd equal to the gate's channel count",
      ("if getattr(self, name) and self.n_embd < channels:", "if getattr(self, name) and self.n_embd <= channels:")),
    M("x0_before_smear_r2", "lambdas.application",
      "x0 for the lambdas taken before the smear instead of after",
      ("        x0, x_mid = x, None\n", "        x0, x_mid = embedded, None\n")),
    # ---------------- value embeddings ----------------
    M("ve_layers_parity_fixed_r2", "value_embeddings.layers",
      "value embeddings on odd layers (right only for even n_layer)",
      ("return self.value_embeds and layer_idx % 2 == (self.n_layer - 1) % 2",
       "return self.value_embeds and layer_idx % 2 == 1")),
    M("ve_gate_last_channels_r2", "value_embeddings.gate",
      "the value-embedding gate reads the last 12 channels instead of the first",
      ("self.ve_gate(x[..., :VE_GATE_CHANNELS])", "self.ve_gate(x[..., -VE_GATE_CHANNELS:])")),
    M("ve_init_kv_dim_r2", "value_embeddings.layers",
      "value-embedding init scaled by 1/sqrt(kv_dim) instead of 1/sqrt(n_embd) (differs under GQA)",
      ("        for ve in getattr(self, \"value_embeds\", {}).values():\n",
       "        for ve in getattr(self, \"value_embeds\", {}).values():\n"
       "            s = math.sqrt(3.0 / ve.weight.size(1))\n")),
    M("ve_gate_input_detached_r2", "gradients.backward",
      "the ve gate's input detached: no gradient flows into x through the gate",
      ("self.ve_gate(x[..., :VE_GATE_CHANNELS])", "self.ve_gate(x[..., :VE_GATE_CHANNELS].detach())")),
    # ---------------- lambdas / backout ----------------
    M("lambdas_frac_off_by_one_r2", "lambdas.init",
      "lambda schedule divides by n_layer: the last layer ends short of 1.05 / 0.05",
      ("frac = i / max(c.n_layer - 1, 1)", "frac = i / c.n_layer")),
    M("x0_detached_r2", "gradients.backward",
      "x0 detached: the x0 path sends no gradient to the embedding",
      ("        x0, x_mid = x, None\n", "        x0, x_mid = x.detach(), None\n")),
    M("backout_layer_ceil_r2", "backout.subtraction",
      "backout taps block ceil(n_layer/2) (wrong for odd n_layer; breaks n_layer=1)",
      ("if i == self.config.n_layer // 2:", "if i == -(-self.config.n_layer // 2):")),
    M("backout_mid_detached_r2", "gradients.backward",
      "x_mid detached: the backout term sends no gradient into the first half",
      ("                x_mid = x\n", "                x_mid = x.detach()\n")),
    M("backout_lambda_frozen_r2", "gradients.backward",
      "backout_lambda created with requires_grad=False",
      ("self.backout_lambda = nn.Parameter(torch.zeros(1))",
       "self.backout_lambda = nn.Parameter(torch.zeros(1), requires_grad=False)")),
    # ---------------- padded vocab ----------------
    M("check_ids_padded_vocab_r2", "padded_vocab.logits",
      "input validation accepts token ids in the padding rows",
      ("    def _check_inputs(self, idx, targets, T0, loss_reduction):\n        V = self.config.vocab_size\n",
       "    def _check_inputs(self, idx, targets, T0, loss_reduction):\n        V = self.config.padded_vocab_size\n")),
    M("pad_vocab_extra_block_r2", "padded_vocab.parameters",
      "padding adds a whole extra block when vocab_size is already a multiple",
      ("return -(-self.vocab_size // self.pad_vocab_size_to) * self.pad_vocab_size_to",
       "return (self.vocab_size // self.pad_vocab_size_to + (self.pad_vocab_size_to > 1)) * self.pad_vocab_size_to")),
    # ---------------- loss ----------------
    M("loss_mean_per_row_r2", "loss.cross_entropy",
      "mean taken per row then over rows (wrong when rows have different ignore counts)",
      ("        return losses.sum() / (targets != -1).sum().clamp(min=1)\n",
       "        B = idx.size(0)\n"
       "        return (losses.view(B, -1).sum(1) / (targets.view(B, -1) != -1).sum(1).clamp(min=1)).mean()\n")),
    M("loss_sum_is_mean_r2", "loss.cross_entropy",
      "loss_reduction='sum' returns the mean over all positions",
      ("            return losses.sum()\n", "            return losses.mean()\n")),
    M("loss_on_uncapped_logits_r2", "loss.cross_entropy",
      "the loss is computed from the logits before the softcap",
      ("        logits = LOGIT_SOFTCAP * torch.tanh(logits / LOGIT_SOFTCAP)\n        if targets is None:\n            return logits\n",
       "        raw = logits\n        logits = LOGIT_SOFTCAP * torch.tanh(logits / LOGIT_SOFTCAP)\n        if targets is None:\n            return logits\n        logits = raw\n")),
    # ---------------- sampling ----------------
    M("temperature_twice_r2", "inference.generate",
      "temperature divided in twice (softmax(logits / t**2))",
      ("F.softmax(logits, dim=-1), num_samples=1", "F.softmax(logits / temperature, dim=-1), num_samples=1")),
    M("topk_no_clamp_r2", "inference.generate",
      "top_k larger than the vocabulary passed to topk unclamped",
      ("torch.topk(logits, min(top_k, logits.size(-1)))", "torch.topk(logits, top_k)")),
    M("topk_zero_filters_r2", "inference.generate",
      "top_k=0 is treated as a filter instead of 'no filtering'",
      ("                if top_k:  # None", "                if top_k is not None:  # None")),
    M("topk_strict_drops_kth_r2", "inference.generate",
      "top-k keeps only k-1 tokens (the kth and its ties are dropped)",
      ("logits.masked_fill(logits < kth, -float(\"inf\"))", "logits.masked_fill(logits <= kth, -float(\"inf\"))")),
    M("sample_global_rng_r2", "inference.generate",
      "multinomial drawn from torch's global RNG instead of the seeded generator",
      ("num_samples=1, generator=rng)", "num_samples=1)")),
    M("default_seed_changed_r2", "inference.generate",
      "generate's default seed changed from 42 to 0",
      ("top_k=None, seed=42):", "top_k=None, seed=0):")),
    M("generate_len_check_off_by_one_r2", "contract.validation",
      "generate rejects a prompt + max_tokens that exactly fills the rotary table",
      ("if len(tokens) + max_tokens > self.rotary_seq_len:", "if len(tokens) + max_tokens >= self.rotary_seq_len:")),
    # ---------------- init ----------------
    M("init_reseeds_each_linear_r2", "gradients.backward",
      "init re-seeds torch before each linear: equal same-shaped weights, init independent of the user's seed",
      ("                nn.init.normal_(module.weight, mean=0.0, std=std)\n",
       "                torch.manual_seed(0)\n                nn.init.normal_(module.weight, mean=0.0, std=std)\n")),
    M("init_last_block_cproj_nonzero_r2", "block.attention_path",
      "init zeroes the c_proj of every block but the last",
      ("        for block in self.transformer.h:\n            nn.init.zeros_(block.attn.c_proj.weight)\n",
       "        for block in self.transformer.h[:-1]:\n            nn.init.zeros_(block.attn.c_proj.weight)\n")),
    M("lambdas_init_inplace_scale_r2", "lambdas.init",
      "resid_lambdas scaled in place: right on a fresh model, wrong after a second init_weights or to_empty()",
      ("                self.resid_lambdas[i] = 1.15 - 0.10 * frac\n",
       "                self.resid_lambdas[i] *= 1.15 - 0.10 * frac\n")),
    M("generate_cache_n_head_r2", "inference.generate",
      "generate sizes its KVCache with n_head instead of n_kv_head (fails for every GQA/MQA model)",
      ("cache = KVCache(1, c.n_kv_head, len(tokens) + max_tokens, c.head_dim, c.n_layer)",
       "cache = KVCache(1, c.n_head, len(tokens) + max_tokens, c.head_dim, c.n_layer)")),
    M("check_ids_first_row_only_r2", "contract.validation",
      "token-id range checked on the first row only (batch > 1 gets IndexError, not ValueError)",
      ("lo, hi = (int(v) for v in torch.aminmax(idx))", "lo, hi = (int(v) for v in torch.aminmax(idx[0]))")),
)

ROUND_3 = (
    # ---------------------------------------------------------------- sliding window
    M("window_short_floor_then_ceil_r3", "sliding_window.window_sizes",
      "S = ceil(floor(seq/4)/128)*128: wrong (too short) for sequence_len = 512k+1..3, e.g. 513 -> 128 not 256",
      ("long, short = self.sequence_len, -(-self.sequence_len // 4 // 128) * 128",
       "long, short = self.sequence_len, -(-(self.sequence_len // 4) // 128) * 128")),
    M("window_fastpath_off_by_one_r3", "sliding_window.keys",
      "causal fast path also taken when window == T-2: the last query then sees one key too many",
      ("if Tq == Tk and (self.window is None or self.window >= Tk - 1):",
       "if Tq == Tk and (self.window is None or self.window >= Tk - 2):")),
    M("window_pattern_not_tiled_r3", "sliding_window.window_sizes",
      "the pattern is not tiled: layers past len(pattern) reuse its last letter (only n_layer > 4 differs)",
      ("sizes = [short if self.window_pattern[i % len(self.window_pattern)] == \"S\" else long",
       "sizes = [short if self.window_pattern[min(i, len(self.window_pattern) - 1)] == \"S\" else long")),
    M("window_last_layer_not_forced_r3", "sliding_window.window_sizes",
      "the last layer keeps its pattern letter instead of always being long",
      ("        sizes[-1] = long\n", "")),
    M("window_mask_strict_r3", "sliding_window.keys",
      "windowed mask drops the W-th key back (sees W-1 keys before itself) on the masked path",
      ("mask = mask & (q_pos - k_pos <= window)", "mask = mask & (q_pos - k_pos < window)")),
    M("flops_window_plus_one_r3", "scaling.parameter_count",
      "estimate_flops counts W+1 keys for a windowed layer instead of W",
      ("seen = [c.sequence_len if w is None else min(w, c.sequence_len) for w in c.window_sizes()]",
       "seen = [c.sequence_len if w is None else min(w + 1, c.sequence_len) for w in c.window_sizes()]")),
    # ---------------------------------------------------------------- attention / GQA / chunks
    M("chunk_mask_query_shift_r3", "inference.kv_cache",
      "mask path places query i at Tk-Tq+i+1: a chunk over a cached prefix sees one future key (T=1 decode unaffected w/o window)",
      ("q_pos = torch.arange(Tk - Tq, Tk, device=device)[:, None]",
       "q_pos = torch.arange(Tk - Tq + 1, Tk + 1, device=device)[:, None]")),
    M("gqa_tile_on_mask_path_r3", "attention.gqa",
      "on the masked (cached/windowed) path kv heads are tiled (h % n_kv) instead of grouped (h // group)",
      ("            y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, enable_gqa=gqa)",
       "            if gqa:\n"
       "                k = k.repeat(1, self.n_head // self.n_kv_head, 1, 1)\n"
       "                v = v.repeat(1, self.n_head // self.n_kv_head, 1, 1)\n"
       "            y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)")),
    M("mask_path_scale_kv_heads_r3", "attention.sdpa",
      "masked path scales by 1/sqrt(n_embd // n_kv_head): right only when n_kv_head == n_head",
      ("y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, enable_gqa=gqa)",
       "y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, enable_gqa=gqa,\n"
       "                                               scale=1.0 / math.sqrt(self.n_embd // self.n_kv_head))")),
    M("key_input_detached_r3", "gradients.backward",
      "keys computed from a detached input: no gradient reaches the residual stream through K",
      ("k = self.c_k(x).view(B, T, self.n_kv_head, self.head_dim)",
       "k = self.c_k(x.detach()).view(B, T, self.n_kv_head, self.head_dim)")),
    M("attention_mask_no_device_r3", "attention.causal_mask",
      "attention_mask builds its positions on the CPU: masked path fails on an accelerator",
      ("q_pos = torch.arange(Tk - Tq, Tk, device=device)[:, None]\n    k_pos = torch.arange(Tk, device=device)[None, :]",
       "q_pos = torch.arange(Tk - Tq, Tk)[:, None]\n    k_pos = torch.arange(Tk)[None, :]")),
    # ---------------------------------------------------------------- KV caches (engine monkeypatches)
    M("kvcache_grow_drops_last_pos_r3", "inference.kv_cache",
      "when the KVCache grows, the last stored position is not copied into the new buffer",
      append="def _grow_r3(self, needed):\n"
             "    capacity = max(needed, 2 * self.kv_cache.size(4))\n"
             "    n = self.kv_cache.size(4)\n"
             "    grown = torch.zeros(*self.kv_cache.shape[:4], capacity, self.head_dim,\n"
             "                        dtype=self.kv_cache.dtype, device=self.kv_cache.device)\n"
             "    grown[..., :n - 1, :] = self.kv_cache[..., :n - 1, :]\n"
             "    self.kv_cache = grown\n\n\n"
             "KVCache._grow = _grow_r3\n"),
    M("kvcache_first_alloc_no_max_r3", "inference.kv_cache",
      "first insert allocates seq_len positions even when the prefill is longer (no growth on first insert)",
      append="_orig_insert_r3 = KVCache.insert_kv\n\n\n"
             "def _insert_r3(self, layer_idx, k, v):\n"
             "    if self.kv_cache is None and self.pos + k.size(2) > self.seq_len:\n"
             "        self.kv_cache = torch.empty((self.num_layers, 2, self.batch_size, self.num_heads, self.seq_len,\n"
             "                                     self.head_dim), dtype=k.dtype, device=k.device)\n"
             "        t0, t1 = self.pos, self.pos + k.size(2)\n"
             "        self.kv_cache[layer_idx, 0, :, :, t0:t1] = k\n"
             "    return _orig_insert_r3(self, layer_idx, k, v)\n\n\n"
             "KVCache.insert_kv = _insert_r3\n"),
    M("kvcache_bf16_storage_r3", "inference.kv_cache",
      "KVCache stores keys/values in bfloat16 whatever the model dtype (float32 decoding drifts from the full forward)",
      append="_orig_insert_r3 = KVCache.insert_kv\n\n\n"
             "def _insert_r3(self, layer_idx, k, v):\n"
             "    k_all, v_all = _orig_insert_r3(self, layer_idx, k.bfloat16(), v.bfloat16())\n"
             "    return k_all.to(k.dtype), v_all.to(v.dtype)\n\n\n"
             "KVCache.insert_kv = _insert_r3\n"),
    M("kvcache_reset_keeps_smear_r3", "smear.causality",
      "KVCache.reset rewinds the position but keeps the smear's previous embedding: a reused cache leaks the old prompt",
      append="def _reset_r3(self):\n"
             "    self.pos = 0\n\n\n"
             "KVCache.reset = _reset_r3\n"),
    M("flash_reset_keeps_smear_r3", "flash_cache.layout",
      "FlashKVCache.reset keeps the smear's previous embedding",
      append="def _freset_r3(self):\n"
             "    self.cache_seqlens.zero_()\n\n\n"
             "FlashKVCache.reset = _freset_r3\n"),
    # ---------------------------------------------------------------- smear
    M("smear_cache_stores_smeared_r3", "smear.mixing",
      "the cache carries the smeared x0 of the last position, not its raw embedding",
      ("kv_cache.prev_embedding = embedded[:, -1:]", "kv_cache.prev_embedding = x0[:, -1:]")),
    M("smear_gate_reads_prev_r3", "smear.mixing",
      "the smear gate reads the previous position's channels instead of the current one's",
      ("gate = self.smear_lambda * torch.sigmoid(self.smear_gate(x[:, first:, :SMEAR_CHANNELS]))",
       "gate = self.smear_lambda * torch.sigmoid(self.smear_gate(prev[..., :SMEAR_CHANNELS]))")),
    M("smear_cache_only_multi_token_r3", "smear.causality",
      "prev_embedding only updated by chunks of T > 1: single-token decoding smears a stale embedding",
      ("if self.config.smear and kv_cache is not None:",
       "if self.config.smear and kv_cache is not None and idx.size(1) > 1:")),
    M("smear_lambda_frozen_r3", "gradients.backward",
      "smear_lambda created with requires_grad=False: the smear can never switch on",
      ("self.smear_lambda = nn.Parameter(torch.zeros(1))",
       "self.smear_lambda = nn.Parameter(torch.zeros(1), requires_grad=False)")),
    M("smear_lambda_not_reinit_r3", "smear.mixing",
      "init_weights leaves smear_lambda as it is: a second init_weights (or to_empty) keeps a trained/garbage value",
      ("            nn.init.zeros_(self.smear_lambda)  # smear starts off\n", "")),
    # ---------------------------------------------------------------- value embeddings
    M("has_ve_fixed_parity_r3", "value_embeddings.layers",
      "value embeddings on odd layers, not counted back from the last: wrong for odd n_layer",
      ("return self.value_embeds and layer_idx % 2 == (self.n_layer - 1) % 2",
       "return self.value_embeds and layer_idx % 2 == 1")),
    M("ve_init_kv_dim_r3", "value_embeddings.mixing",
      "value embeddings init U(-s, s) with s from kv_dim instead of n_embd: wrong only with GQA",
      ("            nn.init.uniform_(ve.weight, -s, s)",
       "            s_kv = math.sqrt(3.0 / ve.weight.size(1))\n            nn.init.uniform_(ve.weight, -s_kv, s_kv)")),
    M("ve_gate_input_detached_r3", "gradients.backward",
      "the value-embedding gate reads a detached x: no gradient to the stream through the gate",
      ("torch.sigmoid(self.ve_gate(x[..., :VE_GATE_CHANNELS]))",
       "torch.sigmoid(self.ve_gate(x[..., :VE_GATE_CHANNELS].detach()))")),
    M("ve_gate_last_channels_r3", "value_embeddings.gate",
      "the value-embedding gate reads the last 12 channels instead of the first 12",
      ("torch.sigmoid(self.ve_gate(x[..., :VE_GATE_CHANNELS]))",
       "torch.sigmoid(self.ve_gate(x[..., -VE_GATE_CHANNELS:]))")),
    M("ve_view_head_major_r3", "value_embeddings.mixing",
      "the value embedding is split (D, Hkv) instead of (Hkv, D): wrong whenever n_kv_head > 1",
      ("ve.view(B, T, self.n_kv_head, self.head_dim)",
       "ve.view(B, T, self.head_dim, self.n_kv_head).transpose(2, 3)")),
    # ---------------------------------------------------------------- lambdas
    M("lambda_frac_over_n_layer_r3", "lambdas.init",
      "schedule fraction i / n_layer: the last layer gets 1.15-0.1*(L-1)/L, not 1.05",
      ("frac = i / max(c.n_layer - 1, 1)", "frac = i / c.n_layer")),
    M("lambda_init_bf16_rounded_r3", "lambdas.init",
      "the lambda schedule values are rounded through bfloat16 (1.15 -> 1.1484375)",
      ("self.resid_lambdas[i] = 1.15 - 0.10 * frac",
       "self.resid_lambdas[i] = torch.tensor(1.15 - 0.10 * frac, dtype=torch.bfloat16)")),
    M("lambdas_skip_first_layer_r3", "lambdas.application",
      "the lambdas are not applied before block 0",
      ("            if self.config.lambdas:\n                x = self.resid_lambdas[i] * x",
       "            if self.config.lambdas and i > 0:\n                x = self.resid_lambdas[i] * x")),
    M("x0_detached_r3", "gradients.backward",
      "x0 detached where the x0 lambdas mix it back in: the embedding loses those gradient paths",
      ("x = self.resid_lambdas[i] * x + self.x0_lambdas[i] * x0",
       "x = self.resid_lambdas[i] * x + self.x0_lambdas[i] * x0.detach()")),
    # ---------------------------------------------------------------- backout
    M("backout_mid_layer_lower_r3", "backout.subtraction",
      "x_mid taken after block (n_layer-1)//2: wrong for even n_layer",
      ("if i == self.config.n_layer // 2:", "if i == (self.config.n_layer - 1) // 2:")),
    M("backout_mid_detached_r3", "gradients.backward",
      "x_mid detached: the backout subtraction passes no gradient to the first half",
      ("                x_mid = x\n", "                x_mid = x.detach()\n")),
    M("backout_lambda_init_once_r3", "backout.subtraction",
      "backout_lambda set to 0.2 only at construction: init_weights (after to_empty, or a second call) skips it",
      ("self.backout_lambda = nn.Parameter(torch.zeros(1))", "self.backout_lambda = nn.Parameter(torch.full((1,), 0.2))"),
      ("            nn.init.constant_(self.backout_lambda, 0.2)\n", "            pass\n")),
    # ---------------------------------------------------------------- padded vocabulary
    M("check_inputs_padded_vocab_r3", "padded_vocab.logits",
      "token ids are validated against the padded vocabulary: ids in [vocab, padded) pass",
      ("    def _check_inputs(self, idx, targets, T0, loss_reduction):\n        V = self.config.vocab_size",
       "    def _check_inputs(self, idx, targets, T0, loss_reduction):\n        V = self.config.padded_vocab_size")),
    M("lm_head_unpadded_r3", "padded_vocab.parameters",
      "lm_head is not padded (only wte is)",
      ("self.lm_head = nn.Linear(config.n_embd, V, bias=False)",
       "self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)")),
    M("pad_extra_multiple_r3", "padded_vocab.parameters",
      "padding adds a whole extra multiple when vocab_size is already a multiple",
      ("return -(-self.vocab_size // self.pad_vocab_size_to) * self.pad_vocab_size_to",
       "m = self.pad_vocab_size_to\n        return self.vocab_size if m == 1 else (self.vocab_size // m + 1) * m")),
    # ---------------------------------------------------------------- scaling / flops
    M("flops_attn_kv_heads_r3", "scaling.parameter_count",
      "attention FLOPs counted with n_kv_head instead of n_head (only GQA differs)",
      ("sum(12 * c.n_head * c.head_dim * t for t in seen)", "sum(12 * c.n_kv_head * c.head_dim * t for t in seen)")),
    M("flops_counts_embeddings_r3", "scaling.parameter_count",
      "estimate_flops counts every non-wte parameter (value embeddings, lambdas) as matmul weights",
      ("n_matmul = sum(m.weight.numel() for m in self.modules() if isinstance(m, nn.Linear))",
       "n_matmul = sum(p.numel() for p in self.parameters()) - self.transformer.wte.weight.numel()")),
    # ---------------------------------------------------------------- loss
    M("loss_mean_per_row_r3", "loss.cross_entropy",
      "mean = mean over rows of per-row means: wrong for batch > 1 with unequal numbers of ignored targets",
      ("return losses.sum() / (targets != -1).sum().clamp(min=1)",
       "B_, T_ = idx.shape\n"
       "        return (losses.view(B_, T_).sum(1) / (targets.view(B_, T_) != -1).sum(1).clamp(min=1)).mean()")),
    M("logits_float32_always_r3", "lm_head.untied_softcap",
      "logits cast to float32 always: a float64 model loses precision (should be at least float32)",
      ("logits = logits.to(torch.promote_types(logits.dtype, torch.float32))", "logits = logits.float()")),
    M("softcap_before_cast_r3", "lm_head.untied_softcap",
      "softcap computed in the model dtype (bf16) before the float32 cast",
      ("        logits = logits.to(torch.promote_types(logits.dtype, torch.float32))  # at least float32 for the softmax\n"
       "        # soft cap (Gemma 2, Team et al. 2024): smooth, and |logit| < 15 whatever the activations\n"
       "        logits = LOGIT_SOFTCAP * torch.tanh(logits / LOGIT_SOFTCAP)\n",
       "        logits = LOGIT_SOFTCAP * torch.tanh(logits / LOGIT_SOFTCAP)\n"
       "        logits = logits.to(torch.promote_types(logits.dtype, torch.float32))\n")),
    # ---------------------------------------------------------------- rope / norm / dtypes
    M("rope_positions_bf16_r3", "rope.rotary",
      "positions t built in bfloat16: exact up to 256, rounded beyond (positions 257, 258 share angles)",
      ("t = torch.arange(seq_len, dtype=torch.float32, device=device)",
       "t = torch.arange(seq_len, dtype=torch.float32, device=device).bfloat16().float()")),
    M("rope_angles_rounded_bf16_r3", "rope.rotary",
      "angles rounded to bf16 before cos/sin instead of after (large error at far positions)",
      ("cos, sin = freqs.cos().bfloat16(), freqs.sin().bfloat16()",
       "cos, sin = freqs.bfloat16().cos(), freqs.bfloat16().sin()")),
    M("rope_computed_in_bf16_r3", "rope.rotary",
      "the rotation computed in the table dtype (bf16) then cast back: float32/float64 q, k lose precision",
      ("x1, x2 = x[..., :d], x[..., d:]", "x1, x2 = x[..., :d].to(cos.dtype), x[..., d:].to(cos.dtype)"),
      needs_bf16_tables=True),
    M("rotary_not_recomputed_r3", "rope.rotary",
      "init_weights no longer recomputes the rotary tables: to_empty() + init_weights() leaves garbage cos/sin",
      ("        self.cos, self.sin = precompute_rotary(self.rotary_seq_len, self.config.head_dim,\n"
       "                                               device=self.lm_head.weight.device)\n", "")),
    M("norm_eps_1e5_r3", "rmsnorm",
      "RMSNorm eps fixed at 1e-5 instead of the dtype's eps: small-RMS inputs are shrunk",
      ("return F.rms_norm(x, (x.size(-1),))", "return F.rms_norm(x, (x.size(-1),), eps=1e-5)")),
    M("norm_float32_roundtrip_r3", "rmsnorm",
      "RMSNorm computed in float32 and cast back: float64 models are normalised at float32 precision",
      ("return F.rms_norm(x, (x.size(-1),))", "return F.rms_norm(x.float(), (x.size(-1),)).to(x.dtype)")),
    # ---------------------------------------------------------------- init
    M("init_fan_missing_sqrt_r3", "attention.gqa",
      "init shrink factor fan_out/fan_in without sqrt: only narrowing layers (GQA c_k/c_v) get a wrong std",
      ("std = 1.0 / math.sqrt(fan_in) * min(1.0, math.sqrt(fan_out / fan_in))",
       "std = 1.0 / math.sqrt(fan_in) * min(1.0, fan_out / fan_in)")),
    M("init_reseeds_global_rng_r3", "gradients.backward",
      "init_weights re-seeds torch's global RNG: every model is identical whatever the caller's seed",
      ("        for module in self.modules():\n            if isinstance(module, nn.Linear):",
       "        torch.manual_seed(1337)\n        for module in self.modules():\n            if isinstance(module, nn.Linear):")),
    # ---------------------------------------------------------------- generate
    M("seed_truncated_31bit_r3", "inference.generate",
      "seed masked to 31 bits (a C int): seeds 7 and 2**31 + 7 give the same stream",
      ("rng = torch.Generator(device=device).manual_seed(seed)",
       "rng = torch.Generator(device=device).manual_seed(seed & 0x7FFFFFFF)")),
    M("default_seed_zero_r3", "inference.generate",
      "generate's default seed is 0 instead of 42",
      ("def generate(self, tokens, max_tokens, temperature=1.0, top_k=None, seed=42):",
       "def generate(self, tokens, max_tokens, temperature=1.0, top_k=None, seed=0):")),
    M("topk_full_vocab_drops_one_r3", "inference.generate",
      "top_k >= vocab clamps to vocab-1: the least likely token can never be drawn",
      ("kth = torch.topk(logits, min(top_k, logits.size(-1))).values[:, -1:]",
       "kth = torch.topk(logits, min(top_k, logits.size(-1) - 1)).values[:, -1:]")),
    M("generate_rotary_boundary_r3", "contract.validation",
      "generate rejects a prompt + max_tokens that exactly fills the rotary table",
      ("if len(tokens) + max_tokens > self.rotary_seq_len:", "if len(tokens) + max_tokens >= self.rotary_seq_len:")),
    M("seed_bound_signed_only_r3", "contract.validation",
      "seeds in [2**63, 2**64) rejected although torch.Generator.manual_seed accepts them",
      ("-2 ** 63 <= seed < 2 ** 64)", "-2 ** 63 <= seed < 2 ** 63)")),
    M("top_k_zero_rejected_r3", "contract.validation",
      "top_k=0 (documented: no filtering) raises ValueError",
      ("if top_k is not None and not (_is_int(top_k) and top_k >= 0):",
       "if top_k is not None and not (_is_int(top_k) and top_k > 0):")),
    M("temperature_inf_accepted_r3", "contract.validation",
      "an infinite temperature passes validation (samples uniformly instead of raising)",
      ("and math.isfinite(temperature) and temperature >= 0):", "and not math.isnan(temperature) and temperature >= 0):")),
    # ---------------------------------------------------------------- config validation
    M("config_bool_accepted_r3", "contract.validation",
      "GPTConfig accepts bools as sizes (n_layer=True builds a 1-layer model)",
      ("if isinstance(value, bool) or not isinstance(value, int) or value <= 0:\n                raise ValueError(f\"GPTConfig",
       "if not isinstance(value, int) or value <= 0:\n                raise ValueError(f\"GPTConfig")),
    M("gate_channels_boundary_r3", "contract.validation",
      "n_embd equal to the gate's channel count (12 / 24) is rejected",
      ("if getattr(self, name) and self.n_embd < channels:", "if getattr(self, name) and self.n_embd <= channels:")),
    M("window_pattern_lowercase_r3", "contract.validation",
      "lowercase patterns ('sssl') pass validation and are silently all-long",
      ("set(self.window_pattern) - set(\"SL\"):", "set(self.window_pattern.upper()) - set(\"SL\"):")),
    M("rotary_len_boundary_r3", "contract.validation",
      "forward rejects a sequence that exactly fills the rotary table",
      ("if T == 0 or T0 + T > self.rotary_seq_len:", "if T == 0 or T0 + T >= self.rotary_seq_len:")),
)

_INSERT_NO_GROW = '''

def _insert_kv_r4(self, layer_idx, k, v):
    expected = (self.batch_size, self.num_heads, k.size(2) if k.ndim == 4 else -1, self.head_dim)
    if k.ndim != 4 or tuple(k.shape) != expected or v.shape != k.shape:
        raise ValueError("insert_kv: bad shapes")
    if not 0 <= layer_idx < self.num_layers:
        raise ValueError(f"layer_idx must lie in [0, {self.num_layers}), got {layer_idx}")
    t0, t1 = self.pos, self.pos + k.size(2)
    if self.kv_cache is None:
        shape = (self.num_layers, 2, self.batch_size, self.num_heads, self.seq_len, self.head_dim)
        self.kv_cache = torch.empty(shape, dtype=k.dtype, device=k.device)
    elif t1 > self.kv_cache.size(4):
        self._grow(t1)
    self.kv_cache[layer_idx, 0, :, :, t0:t1] = k
    self.kv_cache[layer_idx, 1, :, :, t0:t1] = v
    if layer_idx == self.num_layers - 1:
        self.pos = t1
    return self.kv_cache[layer_idx, 0, :, :, :t1], self.kv_cache[layer_idx, 1, :, :, :t1]


KVCache.insert_kv = _insert_kv_r4
'''

_GROW_DOUBLE_ONLY = '''

def _grow_r4(self, needed):
    capacity = 2 * self.kv_cache.size(4)  # doubling, forgetting a chunk may need more than that
    grown = torch.empty(*self.kv_cache.shape[:4], capacity, self.head_dim,
                        dtype=self.kv_cache.dtype, device=self.kv_cache.device)
    grown[..., :self.kv_cache.size(4), :] = self.kv_cache
    self.kv_cache = grown


KVCache._grow = _grow_r4
'''

_GROW_DEFAULT_DTYPE = '''

def _grow_r4(self, needed):
    capacity = max(needed, 2 * self.kv_cache.size(4))
    grown = torch.empty(*self.kv_cache.shape[:4], capacity, self.head_dim, device=self.kv_cache.device)
    grown[..., :self.kv_cache.size(4), :] = self.kv_cache
    self.kv_cache = grown


KVCache._grow = _grow_r4
'''

_RESET_KEEPS_PREV = '''

def _reset_r4(self):
    self.pos = 0  # forgets the smear's carried embedding


KVCache.reset = _reset_r4
'''

_FLASH_RESET_KEEPS_PREV = '''

def _flash_reset_r4(self):
    self.cache_seqlens.zero_()


FlashKVCache.reset = _flash_reset_r4
'''


ROUND_4 = (
    # ---------------- RoPE ----------------
    M("rope_positions_bf16_r4", "rope.rotary", "rotary positions t held in bfloat16: rounded past 256",
      ("t = torch.arange(seq_len, dtype=torch.float32, device=device)",
       "t = torch.arange(seq_len, dtype=torch.bfloat16, device=device)")),
    M("rope_table_float16_r4", "rope.rotary", "cos/sin tables stored in float16 instead of bfloat16",
      ("cos, sin = freqs.cos().bfloat16(), freqs.sin().bfloat16()",
       "cos, sin = freqs.cos().half(), freqs.sin().half()")),
    M("rope_rotate_in_bf16_r4", "rope.rotary", "the rotation is computed in bfloat16 whatever x's dtype",
      ("x1, x2 = x[..., :d], x[..., d:]", "x1, x2 = x[..., :d].bfloat16(), x[..., d:].bfloat16()")),
    M("rope_opposite_direction_r4", "rope.rotary", "pairs turned by +t*theta instead of -t*theta",
      ("y1 = x1 * cos + x2 * sin\n    y2 = x1 * (-sin) + x2 * cos",
       "y1 = x1 * cos - x2 * sin\n    y2 = x1 * sin + x2 * cos")),
    M("init_rotary_short_table_r4", "rope.rotary",
      "init_weights rebuilds the rotary tables for sequence_len positions, not 10x",
      ("self.cos, self.sin = precompute_rotary(self.rotary_seq_len, self.config.head_dim,",
       "self.cos, self.sin = precompute_rotary(self.config.sequence_len, self.config.head_dim,")),
    M("rotary_buffers_persistent_r4", "rope.rotary", "cos/sin buffers saved in the state dict",
      ('self.register_buffer("cos", cos, persistent=False)', 'self.register_buffer("cos", cos, persistent=True)'),
      ('self.register_buffer("sin", sin, persistent=False)', 'self.register_buffer("sin", sin, persistent=True)')),
    # ---------------- attention ----------------
    M("qk_norm_before_rope_r4", "attention.qk_norm",
      "QK norm applied before RoPE (bf16 tables: q, k no longer exactly unit-RMS)",
      ("        q, k = apply_rotary_emb(q, cos, sin), apply_rotary_emb(k, cos, sin)  # position lives in Q, K only\n"
       "        q, k = norm(q), norm(k)",
       "        q, k = norm(q), norm(k)\n"
       "        q, k = apply_rotary_emb(q, cos, sin), apply_rotary_emb(k, cos, sin)")),
    M("gqa_repeat_tiled_r4", "attention.gqa",
      "GQA expands kv heads with repeat (h % n_kv) instead of repeat_interleave (h // group)",
      ("        gqa = self.n_kv_head != self.n_head\n",
       "        gqa = False\n"
       "        if self.n_kv_head != self.n_head:\n"
       "            rep = self.n_head // self.n_kv_head\n"
       "            k, v = k.repeat(1, rep, 1, 1), v.repeat(1, rep, 1, 1)\n")),
    M("mask_float_additive_r4", "attention.causal_mask",
      "the boolean mask is turned into a float one: SDPA adds 1/0 instead of masking",
      ("        mask = mask & (q_pos - k_pos <= window)\n    return mask",
       "        mask = mask & (q_pos - k_pos <= window)\n    return mask.float()")),
    M("mask_path_scale_kv_heads_r4", "attention.sdpa",
      "the masked SDPA path scales by 1/sqrt(n_embd // n_kv_head) (wrong under GQA)",
      ("y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, enable_gqa=gqa)",
       "y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, enable_gqa=gqa,\n"
       "                                               scale=1.0 / math.sqrt(self.n_embd // self.n_kv_head))")),
    M("sdpa_scale_hardcoded_64_r4", "attention.sdpa", "attention scale hard-coded to 1/sqrt(64)",
      ("y = F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=gqa)",
       "y = F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=gqa, scale=0.125)"),
      ("y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, enable_gqa=gqa)",
       "y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, enable_gqa=gqa, scale=0.125)")),
    M("parallel_block_r4", "block.mlp_path", "the MLP reads norm of the block input (parallel block)",
      ("        x = x + self.attn(norm(x), cos_sin, kv_cache, ve)\n        x = x + self.mlp(norm(x))",
       "        h = norm(x)\n        x = x + self.attn(h, cos_sin, kv_cache, ve) + self.mlp(h)")),
    # ---------------- sliding window ----------------
    M("window_fastpath_off_by_one_r4", "sliding_window.keys",
      "is_causal fast path taken when Tk = W + 2 (the first key is seen one position too far)",
      ("self.window >= Tk - 1", "self.window >= Tk - 2")),
    M("window_short_floor_quarter_r4", "sliding_window.window_sizes",
      "S = floor(sequence_len / 4) rounded up to 128 (ceil of the quarter lost: 513 -> 128, not 256)",
      ("-(-self.sequence_len // 4 // 128) * 128", "-(-(self.sequence_len // 4) // 128) * 128")),
    M("window_last_layer_not_forced_r4", "sliding_window.window_sizes",
      "the last layer takes its window from the pattern instead of always L",
      ("        sizes[-1] = long\n", "")),
    M("window_pattern_not_tiled_r4", "sliding_window.window_sizes",
      "the pattern's last letter is repeated past its length instead of tiling it",
      ("self.window_pattern[i % len(self.window_pattern)]",
       "self.window_pattern[min(i, len(self.window_pattern) - 1)]")),
    M("window_mask_strict_r4", "sliding_window.keys", "window mask keeps W-1 keys back, not W",
      ("mask = mask & (q_pos - k_pos <= window)", "mask = mask & (q_pos - k_pos < window)")),
    M("decode_fastpath_ignores_window_r4", "sliding_window.decoding",
      "single-token decoding attends to every cached key, forgetting the window",
      ("        if Tq == Tk and (self.window is None",
       "        if Tq == 1:\n"
       "            y = F.scaled_dot_product_attention(q, k, v, enable_gqa=gqa)  # one query sees the whole cache\n"
       "        elif Tq == Tk and (self.window is None")),
    # ---------------- scaling ----------------
    M("flops_kv_heads_r4", "scaling.parameter_count", "attention FLOPs counted with n_kv_head",
      ("sum(12 * c.n_head * c.head_dim * t for t in seen)", "sum(12 * c.n_kv_head * c.head_dim * t for t in seen)")),
    M("flops_window_plus_one_r4", "scaling.parameter_count", "short windows counted as W + 1 keys",
      ("min(w, c.sequence_len) for w in", "min(w + 1, c.sequence_len) for w in")),
    # ---------------- LM head / loss ----------------
    M("logits_float64_downcast_r4", "lm_head.untied_softcap", "logits always cast to float32 (float64 models lose precision)",
      ("logits = logits.to(torch.promote_types(logits.dtype, torch.float32))", "logits = logits.float()")),
    M("softcap_before_cast_r4", "lm_head.untied_softcap", "softcap computed in the model dtype, then cast",
      ("        logits = logits.to(torch.promote_types(logits.dtype, torch.float32))  # at least float32 for the softmax\n"
       "        # soft cap (Gemma 2, Team et al. 2024): smooth, and |logit| < 15 whatever the activations\n"
       "        logits = LOGIT_SOFTCAP * torch.tanh(logits / LOGIT_SOFTCAP)\n",
       "        logits = LOGIT_SOFTCAP * torch.tanh(logits / LOGIT_SOFTCAP)\n"
       "        logits = logits.to(torch.promote_types(logits.dtype, torch.float32))\n")),
    M("loss_uses_uncapped_logits_r4", "loss.cross_entropy", "cross-entropy computed on the logits before the softcap",
      ("        logits = LOGIT_SOFTCAP * torch.tanh(logits / LOGIT_SOFTCAP)\n",
       "        raw, logits = logits, LOGIT_SOFTCAP * torch.tanh(logits / LOGIT_SOFTCAP)\n"),
      ("F.cross_entropy(logits.reshape(-1, logits.size(-1)), targets,",
       "F.cross_entropy(raw.reshape(-1, raw.size(-1)), targets,")),
    M("targets_view_noncontig_r4", "loss.cross_entropy", "targets flattened with view: non-contiguous targets crash",
      ("targets = targets.reshape(-1)", "targets = targets.view(-1)")),
    M("loss_none_drops_ignored_r4", "loss.cross_entropy", "reduction 'none' drops ignored positions instead of 0s",
      ('        if loss_reduction == "none":\n            return losses\n',
       '        if loss_reduction == "none":\n            return losses[targets != -1]\n')),
    # ---------------- padded vocab ----------------
    M("check_ids_padded_vocab_r4", "padded_vocab.logits", "id/target validation bounds use the padded vocab size",
      ("        V = self.config.vocab_size\n        if not (torch.is_tensor(idx)",
       "        V = self.config.padded_vocab_size\n        if not (torch.is_tensor(idx)")),
    M("pad_vocab_exact_multiple_r4", "padded_vocab.parameters",
      "padding adds a whole extra block when vocab_size is already a multiple",
      ("        return -(-self.vocab_size // self.pad_vocab_size_to) * self.pad_vocab_size_to",
       "        if self.pad_vocab_size_to == 1:\n            return self.vocab_size\n"
       "        return (self.vocab_size // self.pad_vocab_size_to + 1) * self.pad_vocab_size_to")),
    # ---------------- validation ----------------
    M("rotary_bound_off_by_one_r4", "contract.validation", "rejects T0 + T == rotary_seq_len (table exactly full)",
      ("T0 + T > self.rotary_seq_len:", "T0 + T >= self.rotary_seq_len:")),
    M("targets_shape_numel_only_r4", "contract.validation", "targets accepted when numel matches (e.g. transposed)",
      ("targets.shape == idx.shape", "targets.numel() == idx.numel()")),
    M("head_dim_odd_accepted_r4", "contract.validation", "evenness checked on n_embd instead of head_dim",
      ("        if self.head_dim % 2 != 0:\n", "        if self.n_embd % 2 != 0:\n")),
    M("ve_channels_boundary_r4", "contract.validation", "n_embd == gate channels rejected (<= instead of <)",
      ("if getattr(self, name) and self.n_embd < channels:", "if getattr(self, name) and self.n_embd <= channels:")),
    M("gpt_init_skips_validate_r4", "contract.validation", "GPT() no longer re-validates a config mutated after creation",
      ("        config.validate()\n        self.config = config", "        self.config = config")),
    M("check_ids_first_row_only_r4", "contract.validation", "token id range checked on the first sequence only",
      ("lo, hi = (int(v) for v in torch.aminmax(idx))", "lo, hi = (int(v) for v in torch.aminmax(idx[0]))")),
    # ---------------- generate ----------------
    M("seed_upper_bound_r4", "inference.generate", "seeds in [2**63, 2**64) rejected",
      ("-2 ** 63 <= seed < 2 ** 64", "-2 ** 63 <= seed < 2 ** 63")),
    M("temperature_int_rejected_r4", "inference.generate", "an int temperature (0, 1) is rejected",
      ("isinstance(temperature, (int, float))", "isinstance(temperature, float)")),
    M("generate_seeds_global_rng_r4", "inference.generate", "sampling seeds and uses torch's global RNG",
      ("rng = torch.Generator(device=device).manual_seed(seed)", "torch.manual_seed(seed)\n        rng = None")),
    M("generate_reseed_each_step_r4", "inference.generate", "a fresh generator seeded with seed for every token",
      ("num_samples=1, generator=rng)", "num_samples=1, generator=torch.Generator(device=device).manual_seed(seed))")),
    M("topk_no_clamp_to_vocab_r4", "inference.generate", "top_k > vocab_size crashes in topk",
      ("torch.topk(logits, min(top_k, logits.size(-1)))", "torch.topk(logits, top_k)")),
    M("generate_cache_n_head_r4", "inference.generate", "generate sizes its KV cache with n_head (breaks GQA)",
      ("cache = KVCache(1, c.n_kv_head,", "cache = KVCache(1, c.n_head,")),
    M("generate_cache_len_max_tokens_r4", "inference.generate",
      "cache capacity max_tokens (grows anyway), but max_tokens=0 now raises",
      ("KVCache(1, c.n_kv_head, len(tokens) + max_tokens,", "KVCache(1, c.n_kv_head, max_tokens,")),
    # ---------------- KV caches ----------------
    M("kvcache_reset_keeps_prev_emb_r4", "inference.kv_cache", "KVCache.reset keeps the smear's previous embedding",
      append=_RESET_KEEPS_PREV),
    M("flash_reset_keeps_prev_emb_r4", "flash_cache.layout", "FlashKVCache.reset keeps the smear's previous embedding",
      append=_FLASH_RESET_KEEPS_PREV),
    M("kvcache_grow_doubling_only_r4", "inference.kv_cache", "growth doubles only, even when a chunk needs more",
      append=_GROW_DOUBLE_ONLY),
    M("kvcache_first_insert_no_grow_r4", "inference.kv_cache", "first insert allocates seq_len even if the chunk is longer",
      append=_INSERT_NO_GROW),
    M("kvcache_grow_default_dtype_r4", "inference.kv_cache", "the grown cache is float32 whatever the model dtype",
      append=_GROW_DEFAULT_DTYPE),
    M("flash_last_layer_reads_past_r4", "flash_cache.layout",
      "the last layer reads the flash cache up to the advanced position + T",
      ("            kv_cache.advance(t1 - t0)  # every layer of this forward saw the same prefix\n",
       "            kv_cache.advance(t1 - t0)  # every layer of this forward saw the same prefix\n"
       "            t1 = min(kv_cache.get_pos() + k.size(2), k_cache.size(1))\n")),
    # ---------------- smear ----------------
    M("smear_gate_reads_prev_r4", "smear.mixing", "the smear gate reads the previous position's channels",
      ("self.smear_gate(x[:, first:, :SMEAR_CHANNELS])", "self.smear_gate(prev[..., :SMEAR_CHANNELS])")),
    M("smear_cache_stores_smeared_r4", "smear.causality", "the cache carries the smeared (not raw) last embedding",
      ("kv_cache.prev_embedding = embedded[:, -1:]", "kv_cache.prev_embedding = x0[:, -1:]")),
    # ---------------- backout ----------------
    M("backout_layer_index_r4", "backout.subtraction", "x_mid from block (n_layer - 1) // 2",
      ("if i == self.config.n_layer // 2:", "if i == (self.config.n_layer - 1) // 2:")),
    M("backout_mid_detached_r4", "backout.subtraction", "x_mid detached: no gradient through the backout branch",
      ("                x_mid = x\n", "                x_mid = x.detach()\n")),
    # ---------------- lambdas ----------------
    M("lambdas_schedule_frac_r4", "lambdas.init", "schedule fraction i / n_layer: the last layer misses 1.05/0.05",
      ("frac = i / max(c.n_layer - 1, 1)", "frac = i / c.n_layer")),
    M("lambdas_after_block_r4", "lambdas.application", "lambdas applied after each block instead of before",
      ("            if self.config.lambdas:\n"
       "                x = self.resid_lambdas[i] * x + self.x0_lambdas[i] * x0\n"
       "            ve = self.value_embeds[str(i)](idx) if self.config.has_ve(i) else None\n"
       "            x = block(x, cos_sin, kv_cache, ve)\n",
       "            ve = self.value_embeds[str(i)](idx) if self.config.has_ve(i) else None\n"
       "            x = block(x, cos_sin, kv_cache, ve)\n"
       "            if self.config.lambdas:\n"
       "                x = self.resid_lambdas[i] * x + self.x0_lambdas[i] * x0\n")),
    M("x0_before_smear_r4", "lambdas.application", "x0 is the embedding before the smear",
      ("x0, x_mid = x, None", "x0, x_mid = embedded, None")),
    M("x0_lambdas_frozen_r4", "gradients.backward", "x0_lambdas created with requires_grad=False",
      ("self.x0_lambdas = nn.Parameter(torch.zeros(L))", "self.x0_lambdas = nn.Parameter(torch.zeros(L), requires_grad=False)")),
    # ---------------- value embeddings ----------------
    M("ve_layers_parity_fixed_r4", "value_embeddings.layers", "ve on odd layers, not counted back from the last",
      ("layer_idx % 2 == (self.n_layer - 1) % 2", "layer_idx % 2 == 1")),
    M("ve_gate_last_channels_r4", "value_embeddings.gate", "the ve gate reads the last 12 channels",
      ("self.ve_gate(x[..., :VE_GATE_CHANNELS])", "self.ve_gate(x[..., -VE_GATE_CHANNELS:])")),
    M("ve_gate_init_normal_r4", "value_embeddings.gate", "ve_gate initialised N(0, 0.02) instead of U(0, 0.02)",
      ("nn.init.uniform_(block.attn.ve_gate.weight, 0.0, 0.02)", "nn.init.normal_(block.attn.ve_gate.weight, 0.0, 0.02)")),
    M("ve_init_kv_dim_r4", "value_embeddings.mixing", "value embeddings' std 1/sqrt(kv_dim) (differs under GQA)",
      ("nn.init.uniform_(ve.weight, -s, s)",
       "nn.init.uniform_(ve.weight, -math.sqrt(3.0 / ve.weight.size(1)), math.sqrt(3.0 / ve.weight.size(1)))")),
    M("ve_embeds_every_layer_r4", "value_embeddings.layers", "a value embedding built for every layer (unused ones)",
      ("for i in range(L) if config.has_ve(i)}", "for i in range(L)}")),
    M("ve_gate_input_detached_r4", "gradients.backward", "the ve gate's input is detached",
      ("self.ve_gate(x[..., :VE_GATE_CHANNELS])", "self.ve_gate(x[..., :VE_GATE_CHANNELS].detach())")),
    # ---------------- init ----------------
    M("init_no_narrow_shrink_r4", "attention.projections", "std 1/sqrt(fan_in) without the narrowing shrink (GQA c_k/c_v)",
      ("std = 1.0 / math.sqrt(fan_in) * min(1.0, math.sqrt(fan_out / fan_in))", "std = 1.0 / math.sqrt(fan_in)")),
    M("init_linear_uniform_r4", "attention.projections", "linear weights uniform with the right std, not normal",
      ("nn.init.normal_(module.weight, mean=0.0, std=std)",
       "nn.init.uniform_(module.weight, -std * math.sqrt(3.0), std * math.sqrt(3.0))")),
    M("wte_trunc_normal_3sigma_r4", "embedding.wte", "embeddings from a normal truncated at +-3",
      ("nn.init.normal_(module.weight, mean=0.0, std=1.0)",
       "nn.init.trunc_normal_(module.weight, mean=0.0, std=1.0, a=-3.0, b=3.0)")),
    M("init_reseeds_global_r4", "gradients.backward", "init_weights re-seeds torch's global RNG with 0",
      ('        """Initialise every weight and recompute the rotary tables (so `to_empty()` + `init_weights()` works)."""\n',
       '        """Initialise every weight and recompute the rotary tables (so `to_empty()` + `init_weights()` works)."""\n'
       '        torch.manual_seed(0)\n')),
    # ---------------- RMSNorm ----------------
    M("norm_eps_bf16_r4", "rmsnorm", "rms_norm eps of bfloat16 (0.0078) for every dtype",
      ("return F.rms_norm(x, (x.size(-1),))", "return F.rms_norm(x, (x.size(-1),), eps=torch.finfo(torch.bfloat16).eps)")),
    M("norm_float32_upcast_r4", "rmsnorm", "norm computed in float32 and cast back (float64 loses precision)",
      ("return F.rms_norm(x, (x.size(-1),))", "return F.rms_norm(x.float(), (x.size(-1),)).to(x.dtype)")),
)


# ---- Round 5 ------------------------------------------------------------------------------------

_FWD_LAMBDAS = ("            if self.config.lambdas:\n"
                "                x = self.resid_lambdas[i] * x + self.x0_lambdas[i] * x0\n"
                "            ve = self.value_embeds[str(i)](idx) if self.config.has_ve(i) else None\n"
                "            x = block(x, cos_sin, kv_cache, ve)\n")
_FWD_BLOCK_MID = ("            x = block(x, cos_sin, kv_cache, ve)\n"
                  "            if i == self.config.n_layer // 2:\n"
                  "                x_mid = x\n")
_RED_CHECK = ("        if loss_reduction not in (\"mean\", \"sum\", \"none\"):\n"
              "            raise ValueError(f\"loss_reduction must be 'mean', 'sum' or 'none', got {loss_reduction!r}\")\n")
_TGT_NONE = ("        if targets is None:\n"
             "            return\n")

ROUND_5 = (
    # ---- sliding window -------------------------------------------------------------------------
    M("window_fastpath_off_by_one_r5", "sliding_window.keys",
      "the is_causal shortcut is taken when T = W + 2, so the last query also sees key 0 (one too many)",
      ("self.window >= Tk - 1):", "self.window >= Tk - 2):")),
    M("window_short_floor_quarter_r5", "sliding_window.window_sizes",
      "S floors sequence_len/4 before rounding up to 128: sequence_len 513..515 (mod 512) gets a tile too few",
      ("-(-self.sequence_len // 4 // 128) * 128", "-(-(self.sequence_len // 4) // 128) * 128")),
    M("window_pattern_not_tiled_r5", "sliding_window.window_sizes",
      "the pattern is not tiled: layers past its length repeat its last character (SSSL -> SSSLLLL...)",
      ("self.window_pattern[i % len(self.window_pattern)] == \"S\"",
       "self.window_pattern[min(i, len(self.window_pattern) - 1)] == \"S\"")),
    # ---- value embeddings -----------------------------------------------------------------------
    M("has_ve_odd_layers_r5", "value_embeddings.layers",
      "value embeddings on odd layers counted from the front: for odd n_layer the last layer has none",
      ("return self.value_embeds and layer_idx % 2 == (self.n_layer - 1) % 2",
       "return self.value_embeds and layer_idx % 2 == 1")),
    M("ve_tables_shared_r5", "value_embeddings.mixing",
      "every value-embedding layer reads the first table (the others are dead parameters)",
      ("ve = self.value_embeds[str(i)](idx) if self.config.has_ve(i) else None",
       "ve = next(iter(self.value_embeds.values()))(idx) if self.config.has_ve(i) else None")),
    M("ve_init_uses_kv_dim_r5", "value_embeddings.mixing",
      "value embeddings init U(-s, s) with s from kv_dim instead of n_embd (differs under GQA)",
      ("c, s = self.config, math.sqrt(3.0 / self.config.n_embd)",
       "c, s = self.config, math.sqrt(3.0 / (self.config.n_kv_head * self.config.head_dim))")),
    M("ve_gate_init_last_only_r5", "value_embeddings.gate",
      "only the last layer's ve_gate gets U(0, 0.02); earlier gates keep the fan-in normal init",
      ("for block in self.transformer.h:\n            if block.attn.ve_gate is not None:",
       "for block in self.transformer.h[-1:]:\n            if block.attn.ve_gate is not None:")),
    M("ve_gate_input_detached_r5", "gradients.backward",
      "the value-embedding gate's input is detached: no gradient flows back through the gate",
      ("self.ve_gate(x[..., :VE_GATE_CHANNELS])", "self.ve_gate(x[..., :VE_GATE_CHANNELS].detach())")),
    M("ve_table_unpadded_r5", "padded_vocab.parameters",
      "value-embedding tables have vocab_size rows, not the padded vocabulary",
      ("{str(i): nn.Embedding(V, kv_dim)", "{str(i): nn.Embedding(config.vocab_size, kv_dim)")),
    # ---- lambdas --------------------------------------------------------------------------------
    M("lambdas_skip_first_block_r5", "lambdas.application",
      "the lambdas are not applied before block 0",
      ("if self.config.lambdas:\n                x = self.resid", "if self.config.lambdas and i > 0:\n                x = self.resid")),
    M("lambdas_after_block_r5", "lambdas.application",
      "the lambdas are applied after each block instead of before it",
      (_FWD_LAMBDAS,
       "            ve = self.value_embeds[str(i)](idx) if self.config.has_ve(i) else None\n"
       "            x = block(x, cos_sin, kv_cache, ve)\n"
       "            if self.config.lambdas:\n"
       "                x = self.resid_lambdas[i] * x + self.x0_lambdas[i] * x0\n")),
    M("lambdas_x0_pre_smear_r5", "lambdas.application",
      "x0 for the x0 lambdas is the embedding before the smear, not after it",
      ("x0, x_mid = x, None", "x0, x_mid = embedded, None")),
    M("x0_detached_in_lambdas_r5", "gradients.backward",
      "x0 is detached in the lambda mix: the embedding gets no gradient through the x0 path",
      ("self.x0_lambdas[i] * x0\n", "self.x0_lambdas[i] * x0.detach()\n")),
    M("resid_lambdas_detached_r5", "gradients.backward",
      "resid_lambdas are detached in forward: a frozen parameter",
      ("x = self.resid_lambdas[i] * x", "x = self.resid_lambdas[i].detach() * x")),
    # ---- smear ----------------------------------------------------------------------------------
    M("smear_state_only_kvcache_r5", "smear.mixing",
      "the smear's last embedding is saved only in a KVCache, never in a FlashKVCache",
      ("if self.config.smear and kv_cache is not None:", "if self.config.smear and isinstance(kv_cache, KVCache):")),
    M("smear_prev_detached_r5", "gradients.backward",
      "the smeared-in previous embedding is detached (no gradient through the bigram path, without a cache)",
      ("prev = x[:, :-1] if last is None", "prev = x[:, :-1].detach() if last is None")),
    M("smear_gate_input_detached_r5", "gradients.backward",
      "the smear gate's input is detached",
      ("self.smear_gate(x[:, first:, :SMEAR_CHANNELS])", "self.smear_gate(x[:, first:, :SMEAR_CHANNELS].detach())")),
    M("smear_lambda_not_reinit_r5", "smear.mixing",
      "init_weights does not reset smear_lambda (to_empty()+init_weights() or a re-init keeps stale values)",
      ("nn.init.zeros_(self.smear_lambda)  # smear starts off", "pass  # smear_lambda starts at zero (__init__)")),
    M("kvcache_reset_keeps_prev_emb_r5", "inference.kv_cache",
      "KVCache.reset rewinds the position but keeps the smear's previous embedding",
      append="def _kv_reset_r5(self):\n    self.pos = 0\n\n\nKVCache.reset = _kv_reset_r5\n"),
    M("flash_reset_keeps_prev_emb_r5", "flash_cache.layout",
      "FlashKVCache.reset zeroes cache_seqlens but keeps the smear's previous embedding",
      append="def _flash_reset_r5(self):\n    self.cache_seqlens.zero_()\n\n\nFlashKVCache.reset = _flash_reset_r5\n"),
    # ---- backout --------------------------------------------------------------------------------
    M("backout_mid_before_block_r5", "backout.subtraction",
      "x_mid is the input of block n_layer // 2, not its output",
      (_FWD_BLOCK_MID,
       "            if i == self.config.n_layer // 2:\n"
       "                x_mid = x\n"
       "            x = block(x, cos_sin, kv_cache, ve)\n")),
    M("backout_mid_detached_r5", "gradients.backward",
      "x_mid is detached in the backout subtraction",
      ("x = x - self.backout_lambda * x_mid", "x = x - self.backout_lambda * x_mid.detach()")),
    M("backout_lambda_init_in_ctor_r5", "backout.subtraction",
      "backout_lambda = 0.2 is set in __init__ only; init_weights leaves it as it is",
      ("self.backout_lambda = nn.Parameter(torch.zeros(1))", "self.backout_lambda = nn.Parameter(torch.full((1,), 0.2))"),
      ("nn.init.constant_(self.backout_lambda, 0.2)", "pass")),
    # ---- padded vocabulary / loss ---------------------------------------------------------------
    M("check_inputs_padded_vocab_r5", "contract.validation",
      "forward validates token ids and targets against the padded vocabulary, not vocab_size",
      ("    def _check_inputs(self, idx, targets, T0, loss_reduction):\n        V = self.config.vocab_size",
       "    def _check_inputs(self, idx, targets, T0, loss_reduction):\n        V = self.config.padded_vocab_size")),
    M("padded_vocab_overpads_r5", "padded_vocab.parameters",
      "a vocabulary already a multiple of the padding gets a whole extra block of rows",
      ("return -(-self.vocab_size // self.pad_vocab_size_to) * self.pad_vocab_size_to",
       "return self.vocab_size if self.pad_vocab_size_to == 1 else "
       "(self.vocab_size // self.pad_vocab_size_to + 1) * self.pad_vocab_size_to")),
    M("loss_over_padded_logits_r5", "padded_vocab.logits",
      "the returned logits are sliced, but the loss is computed over the padded logits",
      ("logits = self.lm_head(x)[..., :self.config.vocab_size]  # (B, T, V): padding rows sliced off",
       "logits = self.lm_head(x)  # (B, T, V_padded)"),
      ("        if targets is None:\n            return logits\n",
       "        if targets is None:\n            return logits[..., :self.config.vocab_size]\n")),
    M("loss_mean_per_row_r5", "loss.cross_entropy",
      "the mean is taken per row and then over rows (wrong when rows have different numbers of ignored targets)",
      ("return losses.sum() / (targets != -1).sum().clamp(min=1)",
       "valid = (targets != -1).view(B, -1)\n"
       "        return (losses.view(B, -1).sum(1) / valid.sum(1).clamp(min=1)).mean()")),
    M("logits_float64_downcast_r5", "lm_head.untied_softcap",
      "logits always cast to float32: a float64 model loses precision",
      ("logits = logits.to(torch.promote_types(logits.dtype, torch.float32))", "logits = logits.float()")),
    # ---- KV cache (engine monkeypatches) --------------------------------------------------------
    M("kv_grow_drops_dtype_r5", "inference.kv_cache",
      "KVCache._grow allocates the grown buffer in the default dtype (bf16 caches become float32)",
      append=("def _grow_r5(self, needed):\n"
              "    capacity = max(needed, 2 * self.kv_cache.size(4))\n"
              "    grown = torch.empty(*self.kv_cache.shape[:4], capacity, self.head_dim, device=self.kv_cache.device)\n"
              "    grown[..., :self.kv_cache.size(4), :] = self.kv_cache\n"
              "    self.kv_cache = grown\n\n\nKVCache._grow = _grow_r5\n")),
    M("kv_grow_only_doubles_r5", "inference.kv_cache",
      "KVCache._grow doubles without checking the need: a chunk longer than the capacity fails",
      append=("def _grow_r5(self, needed):\n"
              "    capacity = 2 * self.kv_cache.size(4)\n"
              "    grown = torch.empty(*self.kv_cache.shape[:4], capacity, self.head_dim,\n"
              "                        dtype=self.kv_cache.dtype, device=self.kv_cache.device)\n"
              "    grown[..., :self.kv_cache.size(4), :] = self.kv_cache\n"
              "    self.kv_cache = grown\n\n\nKVCache._grow = _grow_r5\n")),
    M("kv_first_alloc_no_room_r5", "inference.kv_cache",
      "KVCache's first allocation is seq_len, even when the prefill is longer (only later inserts grow)",
      append=("def _insert_kv_r5(self, layer_idx, k, v):\n"
              "    expected = (self.batch_size, self.num_heads, k.size(2) if k.ndim == 4 else -1, self.head_dim)\n"
              "    if k.ndim != 4 or tuple(k.shape) != expected or v.shape != k.shape:\n"
              "        raise ValueError(f'insert_kv expects k and v of shape (B, H_kv, T, D), got {tuple(k.shape)}')\n"
              "    if not 0 <= layer_idx < self.num_layers:\n"
              "        raise ValueError(f'layer_idx must lie in [0, {self.num_layers}), got {layer_idx}')\n"
              "    t0, t1 = self.pos, self.pos + k.size(2)\n"
              "    if self.kv_cache is None:\n"
              "        shape = (self.num_layers, 2, self.batch_size, self.num_heads, self.seq_len, self.head_dim)\n"
              "        self.kv_cache = torch.empty(shape, dtype=k.dtype, device=k.device)\n"
              "    elif t1 > self.kv_cache.size(4):\n"
              "        self._grow(t1)\n"
              "    self.kv_cache[layer_idx, 0, :, :, t0:t1] = k\n"
              "    self.kv_cache[layer_idx, 1, :, :, t0:t1] = v\n"
              "    k_all = self.kv_cache[layer_idx, 0, :, :, :t1]\n"
              "    v_all = self.kv_cache[layer_idx, 1, :, :, :t1]\n"
              "    if layer_idx == self.num_layers - 1:\n"
              "        self.pos = t1\n"
              "    return k_all, v_all\n\n\nKVCache.insert_kv = _insert_kv_r5\n")),
    M("flash_advance_row0_only_r5", "flash_cache.layout",
      "FlashKVCache.advance moves cache_seqlens of the first row only (rows 1.. stay at 0)",
      append="def _advance_r5(self, num_tokens):\n    self.cache_seqlens[0] += num_tokens\n\n\nFlashKVCache.advance = _advance_r5\n"),
    # ---- attention ------------------------------------------------------------------------------
    M("gqa_tiled_in_masked_path_r5", "attention.gqa",
      "in the masked (cached / windowed) path kv heads are tiled (h reads h % n_kv), not grouped",
      ("y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, enable_gqa=gqa)",
       "if gqa:\n"
       "                rep = self.n_head // self.n_kv_head\n"
       "                k, v = k.repeat(1, rep, 1, 1), v.repeat(1, rep, 1, 1)\n"
       "            y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)")),
    M("attn_mask_no_device_r5", "attention.causal_mask",
      "attention_mask builds its positions on the CPU (GPU only: a device mismatch in cached decoding)",
      ("q_pos = torch.arange(Tk - Tq, Tk, device=device)[:, None]\n    k_pos = torch.arange(Tk, device=device)[None, :]",
       "q_pos = torch.arange(Tk - Tq, Tk)[:, None]\n    k_pos = torch.arange(Tk)[None, :]")),
    M("rmsnorm_eps_1e5_r5", "rmsnorm",
      "RMSNorm with a fixed eps=1e-5 instead of the dtype's machine epsilon",
      ("return F.rms_norm(x, (x.size(-1),))", "return F.rms_norm(x, (x.size(-1),), eps=1e-5)")),
    # ---- rope -----------------------------------------------------------------------------------
    M("rope_angles_in_bf16_r5", "rope.rotary",
      "the angles are rounded to bfloat16 before cos/sin (instead of rounding cos/sin)",
      ("cos, sin = freqs.cos().bfloat16(), freqs.sin().bfloat16()",
       "cos, sin = freqs.bfloat16().cos(), freqs.bfloat16().sin()")),
    # ---- init -----------------------------------------------------------------------------------
    M("init_fan_ignores_narrowing_r5", "attention.projections",
      "linear std is 1/sqrt(fan_in) without the min(1, sqrt(fan_out/fan_in)) shrink (GQA c_k, c_v)",
      ("std = 1.0 / math.sqrt(fan_in) * min(1.0, math.sqrt(fan_out / fan_in))", "std = 1.0 / math.sqrt(fan_in)")),
    M("embedding_init_trunc_3sigma_r5", "embedding.wte",
      "embeddings drawn from a normal truncated at +-3 (std 0.986, no tails)",
      ("nn.init.normal_(module.weight, mean=0.0, std=1.0)",
       "nn.init.trunc_normal_(module.weight, mean=0.0, std=1.0, a=-3.0, b=3.0)")),
    # ---- estimate_flops -------------------------------------------------------------------------
    M("flops_window_no_clamp_r5", "scaling.parameter_count",
      "estimate_flops counts the short window even when it exceeds sequence_len",
      ("else min(w, c.sequence_len) for w in", "else w for w in")),
    M("flops_attn_uses_kv_heads_r5", "scaling.parameter_count",
      "estimate_flops's attention term uses n_kv_head instead of n_head",
      ("12 * c.n_head * c.head_dim * t", "12 * c.n_kv_head * c.head_dim * t")),
    # ---- validation -----------------------------------------------------------------------------
    M("rotary_check_ignores_cache_pos_r5", "contract.validation",
      "the rotary-length check ignores the cache position: decoding off the table's end is not a ValueError",
      ("if T == 0 or T0 + T > self.rotary_seq_len:", "if T == 0 or T > self.rotary_seq_len:")),
    M("reduction_checked_only_with_tgt_r5", "contract.validation",
      "a bad loss_reduction is accepted silently when no targets are given",
      (_RED_CHECK + _TGT_NONE, _TGT_NONE + _RED_CHECK)),
    M("targets_shape_numel_only_r5", "contract.validation",
      "targets are checked for element count only: flat or transposed targets are accepted",
      ("targets.shape == idx.shape)", "targets.numel() == idx.numel())")),
    M("value_check_on_meta_r5", "contract.validation",
      "token values are read on every non-CUDA device: a forward on the meta device raises",
      ("if idx.device.type == \"cpu\":", "if idx.device.type != \"cuda\":")),
    M("config_pad_not_validated_r5", "contract.validation",
      "pad_vocab_size_to is not validated (0 fails later with ZeroDivisionError, not ValueError)",
      ("\"n_embd\", \"pad_vocab_size_to\"):", "\"n_embd\"):")),
    M("gate_channels_boundary_r5", "contract.validation",
      "n_embd equal to the gate's channels (12 / 24) is rejected",
      ("if getattr(self, name) and self.n_embd < channels:", "if getattr(self, name) and self.n_embd <= channels:")),
    # ---- generate -------------------------------------------------------------------------------
    M("generate_cache_uses_n_head_r5", "inference.generate",
      "generate sizes its KVCache with n_head kv heads: GQA models cannot generate",
      ("cache = KVCache(1, c.n_kv_head,", "cache = KVCache(1, c.n_head,")),
    M("topk_clamp_off_by_one_r5", "inference.generate",
      "top_k >= vocab_size is clamped to vocab_size - 1: the least likely token is never sampled",
      ("min(top_k, logits.size(-1))", "min(top_k, logits.size(-1) - 1)")),
    M("seed_upper_bound_2_63_r5", "inference.generate",
      "seeds in [2**63, 2**64) are rejected",
      ("-2 ** 63 <= seed < 2 ** 64)", "-2 ** 63 <= seed < 2 ** 63)")),
    M("top_k_accepts_bool_r5", "inference.generate",
      "top_k=True is accepted (as 1)",
      ("if top_k is not None and not (_is_int(top_k) and top_k >= 0):",
       "if top_k is not None and not (isinstance(top_k, int) and top_k >= 0):")),
    M("generate_len_check_off_by_one_r5", "inference.generate",
      "a prompt plus max_tokens exactly filling the rotary table is rejected",
      ("if len(tokens) + max_tokens > self.rotary_seq_len:", "if len(tokens) + max_tokens >= self.rotary_seq_len:")),
    M("generate_limit_seq_len_r5", "inference.generate",
      "generate refuses to run past sequence_len (not the 10x rotary table)",
      ("if len(tokens) + max_tokens > self.rotary_seq_len:", "if len(tokens) + max_tokens > self.config.sequence_len:")),
)
