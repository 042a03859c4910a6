"""
The tracer (nanochat_verify/trace/hooks.py) and the command line built on it (python -m nanochat_verify.trace).

The tracer must show every sub-component of the component table on a real forward and backward
pass, of this project's model and of the naive reference implementation alike (it hooks, it never
re-implements); leave no hook or wrapper behind; and hand out detached tensors. The command line
must run end to end, write a JSON record with a section per component, refuse bad options with one
line and exit status 2 before any work, and honour NO_COLOR.
"""

import json
import math
import re
import sys

import pytest
import torch
import torch.nn.functional as F

from nanochat_verify.card import load_card
from nanochat_verify.components import COMPONENTS as ALL_COMPONENTS
from nanochat_verify.contract import load_implementation
from nanochat_verify.paths import SOURCE_ROOT, SUITE_DIR
from nanochat_verify.trace import cli as trace_cli
from nanochat_verify.trace import sections, training
from nanochat_verify.trace.hooks import trace
from nanochat_verify.trace.render import percent_of

# the seed table's 12 components, the ones the default (seed) architecture has and the trace shows
COMPONENTS = tuple(c for c in ALL_COMPONENTS if getattr(c, "feature", None) is None)
IMPLEMENTATIONS = {"own": str(SOURCE_ROOT), "reference": str(SUITE_DIR / "reference_gpt.py")}  # tooling: the checkout only

# 2 layers, grouped-query attention 4:2, head_dim 8: q and k differ in shape, so a swapped label shows
CFG = dict(sequence_len=8, vocab_size=32, n_layer=2, n_head=4, n_kv_head=2, n_embd=32)
B, T = 2, CFG["sequence_len"]
C, V, L, H, HKV = CFG["n_embd"], CFG["vocab_size"], CFG["n_layer"], CFG["n_head"], CFG["n_kv_head"]
D = C // H

# the smallest run of the command line: depth 1 (n_embd 64, one head), two iterations
TINY_CLI = ["--depth", "1", "--vocab-size", "256", "--seq-len", "16", "--batch-size", "2", "--num-iterations", "2"]
SGR = re.compile(r"\x1b\[[0-9;]*m")  # an ANSI colour/style sequence


RATIO = load_card().mlp_ratio  # the card's MLP width


def expected_shapes(B, T, C, V, L, H, HKV):
    """Sub-component ID -> {cached name: shape} that shows it, for a model of these sizes."""
    D = C // H
    btc, q_shape, kv_shape = (B, T, C), (B, T, H, D), (B, T, HKV, D)
    per_block = {
        "block_stack.layers": {"input": btc, "output": btc},
        "block.attention_path": {"attn.input": btc, "attn.output": btc},
        "block.mlp_path": {"mlp.input": btc, "mlp.output": btc},
        "attention.projections": {"attn.q": q_shape, "attn.k": kv_shape, "attn.v": kv_shape},
        "attention.rope": {"attn.q_rope": q_shape, "attn.k_rope": kv_shape},
        "attention.qk_norm": {"attn.q_norm": q_shape, "attn.k_norm": kv_shape},
        "attention.gqa": {"attn.k": kv_shape, "attn.sdpa_k": (B, HKV, T, D), "attn.sdpa_v": (B, HKV, T, D)},
        "attention.sdpa": {"attn.sdpa_q": (B, H, T, D), "attn.sdpa_k": (B, HKV, T, D),
                           "attn.sdpa_v": (B, HKV, T, D), "attn.sdpa_out": (B, H, T, D)},
        "attention.head_concat": {"attn.heads_concat": btc},
        "attention.output_projection": {"attn.output": btc},
        "rmsnorm.pre_attention": {"attn.input": btc},
        "rmsnorm.pre_mlp": {"mlp.input": btc},
        "mlp.fc": {"mlp.fc": (B, T, RATIO * C)},
        "mlp.relu2": {"mlp.act": (B, T, RATIO * C)},
        "mlp.projection": {"mlp.output": btc},
    }
    shapes = {sub: {f"transformer.h.{i}.{name}": shape for i in range(L) for name, shape in names.items()}
              for sub, names in per_block.items()}
    rope_sub = {f"transformer.h.{i}.attn.{n}": s for i in range(L)
                for n, s in (("q_rope", q_shape), ("k_rope", kv_shape))}
    return shapes | {
        "embedding.wte": {"transformer.wte.output": btc},
        "rope.rotary": rope_sub,
        "rmsnorm.after_embedding": {"transformer.h.0.input": btc},
        "rmsnorm.final": {"lm_head.input": btc},
        "final_norm.before_lm_head": {"lm_head.input": btc},
        "lm_head.untied_softcap": {"lm_head.output": (B, T, V), "logits": (B, T, V)},
        "loss.cross_entropy": {"loss": ()},
    }


# sub-components a trace shows otherwise than as a cached tensor: through the derived attention
# pattern (causal mask, softmax), the parameter gradients, and the scaling table of the command line
SHOWN_OTHERWISE = {"attention.causal_mask", "attention.softmax", "gradients.backward", "scaling.parameter_count",
                   "scaling.cost_estimates"}  # the scaling analysis prints the counts and estimate_flops


def build(impl, seed=0):
    """impl.GPT(CFG), initialised, then every weight random so that every path carries signal."""
    torch.manual_seed(seed)
    model = impl.GPT(impl.GPTConfig(**CFG))
    model.init_weights()
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0.0, 0.5)
    return model


def batch(seed=1):
    gen = torch.Generator().manual_seed(seed)
    return torch.randint(0, V, (B, T), generator=gen), torch.randint(0, V, (B, T), generator=gen)


@pytest.fixture(scope="module", params=sorted(IMPLEMENTATIONS))
def traced(request):
    """(impl, model, cache) after one traced forward and backward of each implementation."""
    impl = load_implementation(IMPLEMENTATIONS[request.param])
    model = build(impl)
    idx, targets = batch()
    with trace(model) as cache:
        model(idx, targets).backward()
    return impl, model, cache


def hook_count(model):
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules())


def patched_functions(impl):
    """Every function the tracer wraps, where it looks them up."""
    return {"impl.norm": impl.norm, "impl.apply_rotary_emb": impl.apply_rotary_emb,
            "F.scaled_dot_product_attention": F.scaled_dot_product_attention, "F.cross_entropy": F.cross_entropy,
            **{f"impl.{n}": getattr(impl, n) for n in ("scaled_dot_product_attention", "cross_entropy")
               if hasattr(impl, n)}}


def run_cli(argv, capsys):
    """main(argv) in-process: (exit status, stdout, stderr)."""
    try:
        status = trace_cli.main(argv)
    except SystemExit as e:
        status = e.code
    out, err = capsys.readouterr()
    return status, out, err


# ------------------------------------------------------------------------------------------------
# the tracer core


@pytest.mark.tooling
@pytest.mark.component("tooling.tracer")
def test_trace_shows_every_subcomponent_of_the_table_with_its_shape(traced):
    """Every sub-component of the table appears in a trace of either implementation, with the right shape."""
    impl, model, cache = traced
    shapes = expected_shapes(B, T, C, V, L, H, HKV)
    table = {s.id for c in COMPONENTS for s in c.subcomponents}
    assert set(shapes) | SHOWN_OTHERWISE == table, "a sub-component of the table has no expectation here"
    for sub, names in shapes.items():
        for name, shape in names.items():
            assert name in cache, f"{sub}: {name} was not traced"
            assert tuple(cache[name].shape) == shape, f"{sub}: {name} has shape {tuple(cache[name].shape)}, expected {shape}"
    # causal mask and softmax, through the pattern derived from the traced q and k
    pattern = cache.attention_pattern(0)
    assert tuple(pattern.shape) == (B, H, T, T)
    assert torch.all(pattern.triu(1) == 0), "the pattern lets a position see the future"
    assert torch.allclose(pattern.sum(-1), torch.ones(B, H, T), atol=1e-5)
    # gradients: every parameter, with the parameter's shape
    params = dict(model.named_parameters())
    assert set(cache.grads) == set(params)
    assert all(cache.grads[n].shape == p.shape for n, p in params.items())
    assert all(cache[f"transformer.h.{i}.output.grad"].shape == (B, T, C) for i in range(L))


@pytest.mark.tooling
@pytest.mark.component("tooling.tracer")
def test_traced_tensors_are_the_values_their_names_claim(traced):
    """Each cached tensor equals what its name says, recomputed from its cached input with the model's own parts."""
    impl, model, cache = traced
    close = dict(atol=1e-5, rtol=1e-5)
    cos, sin = model.cos[:, :T], model.sin[:, :T]
    assert torch.allclose(cache["transformer.h.0.input"], impl.norm(cache["transformer.wte.output"]), **close)
    for i, block in enumerate(model.transformer.h):
        p, attn, mlp = f"transformer.h.{i}", block.attn, block.mlp
        x = cache[f"{p}.attn.input"]
        with torch.no_grad():
            for name, proj, heads in (("q", attn.c_q, H), ("k", attn.c_k, HKV), ("v", attn.c_v, HKV)):
                assert torch.allclose(cache[f"{p}.attn.{name}"], proj(x).view(B, T, heads, D), **close), name
            for name in ("q", "k"):
                rotated = impl.apply_rotary_emb(cache[f"{p}.attn.{name}"], cos, sin)
                assert torch.allclose(cache[f"{p}.attn.{name}_rope"], rotated, **close), f"{name}_rope"
                assert torch.allclose(cache[f"{p}.attn.{name}_norm"], impl.norm(rotated), **close), f"{name}_norm"
                assert torch.equal(cache[f"{p}.attn.sdpa_{name}"], cache[f"{p}.attn.{name}_norm"].transpose(1, 2))
            assert torch.allclose(attn.c_proj(cache[f"{p}.attn.heads_concat"]), cache[f"{p}.attn.output"], **close)
            concat = cache[f"{p}.attn.sdpa_out"].transpose(1, 2).reshape(B, T, C)
            assert torch.allclose(concat, cache[f"{p}.attn.heads_concat"], **close)
            # the derived attention weights reproduce the observed attention output
            v = cache[f"{p}.attn.v"].transpose(1, 2).repeat_interleave(H // HKV, dim=1)
            assert torch.allclose(cache.attention_pattern(i) @ v, cache[f"{p}.attn.sdpa_out"], atol=1e-4)
            assert torch.allclose(cache[f"{p}.mlp.act"], torch.relu(cache[f"{p}.mlp.fc"]) ** 2, **close)
            assert torch.allclose(mlp.c_proj(cache[f"{p}.mlp.act"]), cache[f"{p}.mlp.output"], **close)
        residual = cache[f"{p}.input"] + cache[f"{p}.attn.output"] + cache[f"{p}.mlp.output"]
        assert torch.allclose(cache[f"{p}.output"], residual, **close)
    assert torch.allclose(cache["lm_head.input"], impl.norm(cache[f"transformer.h.{L - 1}.output"]), **close)
    cap = load_card().softcap
    assert torch.allclose(cache["logits"], cap * torch.tanh(cache["lm_head.output"].float() / cap), **close)
    assert all(torch.equal(cache.grads[n], p.grad) for n, p in model.named_parameters())


@pytest.mark.tooling
@pytest.mark.component("tooling.tracer")
@pytest.mark.parametrize("failure", ["none", "inside the forward", "after the backward"])
def test_hooks_and_wrappers_are_removed_on_exit_even_after_an_exception(failure):
    """Leaving the trace, normally or by an exception, removes every hook and restores every wrapped function."""
    impl = load_implementation(IMPLEMENTATIONS["own"])
    model = build(impl)
    idx, targets = batch()
    hooks_before, functions_before = hook_count(model), patched_functions(impl)
    c_v = model.transformer.h[1].attn.c_v
    if failure == "inside the forward":  # fails mid-attention, between the traced q/k and v
        c_v.forward = lambda x: (_ for _ in ()).throw(RuntimeError("boom"))
    try:
        with trace(model) as cache:
            assert hook_count(model) > hooks_before  # the trace did install its hooks
            model(idx, targets).backward()
            if failure == "after the backward":
                raise RuntimeError("boom")
    except RuntimeError as e:
        assert failure != "none" and str(e) == "boom"
    finally:
        vars(c_v).pop("forward", None)
    assert hook_count(model) == hooks_before
    assert patched_functions(impl) == functions_before
    recorded = dict(cache.calls)
    model(idx, targets)  # nothing is listening any more
    assert dict(cache.calls) == recorded


@pytest.mark.tooling
@pytest.mark.component("tooling.tracer")
def test_cached_tensors_and_gradients_are_detached(traced):
    """No cached activation or gradient carries autograd history or requires grad."""
    _, _, cache = traced
    for name, tensor in list(cache.items()) + list(cache.grads.items()):
        assert tensor.grad_fn is None and not tensor.requires_grad, name


# ------------------------------------------------------------------------------------------------
# the command line


@pytest.mark.tooling
@pytest.mark.component("tooling.tracer")
@pytest.mark.parametrize("impl_key", sorted(IMPLEMENTATIONS))
def test_cli_runs_end_to_end_and_writes_every_section(impl_key, tmp_path, capsys):
    """The CLI trains, prints every section, and writes JSON with all 12 sections, every traced name and a loss per iteration."""
    out_json = tmp_path / "t.json"
    argv = TINY_CLI + ["--json", str(out_json), "--no-color", "--gpt-impl", IMPLEMENTATIONS[impl_key]]
    status, out, err = run_cli(argv, capsys)
    assert status == 0, err
    for component in COMPONENTS:
        assert f"{component.number} · {component.title_for(load_card())}" in out
    record = json.loads(out_json.read_text())
    assert set(record["sections"]) == {c.key for c in COMPONENTS}
    losses = record["losses"]
    assert len(losses) == 2 and [it["iteration"] for it in record["iterations"]] == [1, 2]
    assert all(math.isfinite(x) for x in losses)
    assert losses[0] == pytest.approx(math.log(256), abs=1e-4)  # byte vocabulary, zeroed lm_head
    assert losses[1] < losses[0], "the default learning rate must make the loss fall"
    c = record["config"]
    shapes = expected_shapes(2, 16, c["n_embd"], c["vocab_size"], c["n_layer"], c["n_head"], c["n_kv_head"])
    for names in shapes.values():
        for name, shape in names.items():
            assert tuple(record["activations"][name]["shape"]) == shape, name
    assert set(record["gradients"]) == {f"transformer.{n}.weight" for n in ("wte",)} | {
        f"transformer.h.0.{n}.weight" for n in ("attn.c_q", "attn.c_k", "attn.c_v", "attn.c_proj", "mlp.c_fc",
                                                 "mlp.c_proj")} | {"lm_head.weight"}
    target = record["sections"]["scaling"]["target"]
    tc, measured = target["config"], target["measured"]
    assert target["depth"] == load_card().target_depth and target["matches"]
    d, vocab, layers = tc["n_embd"], tc["vocab_size"], tc["n_layer"]
    assert measured["total"] == 2 * vocab * d + 12 * layers * d * d  # the SPEC's closed form
    if impl_key == "own":
        assert target["flops_per_token"] > 0


@pytest.mark.tooling
@pytest.mark.component("tooling.tracer")
def test_sections_print_in_the_order_of_the_component_table(capsys):
    """The headings come in the table's order, 1 to 12 (a component shown per block keeps its blocks together,
    and the modern ones follow): a reader meets them as the seed document lists them."""
    status, out, err = run_cli(TINY_CLI + ["--no-color"], capsys)
    assert status == 0, err
    numbers = [int(m) for m in re.findall(r"(?m)^(\d+) · ", out)]
    assert numbers == sorted(numbers) and set(range(1, 13)) <= set(numbers)


@pytest.mark.tooling
@pytest.mark.component("tooling.tracer")
def test_a_model_whose_softcap_is_not_the_cards_is_a_failed_trace(tmp_path, capsys):
    """Our gpt.py with LOGIT_SOFTCAP = 30, traced under the seed card (softcap 15): the LM head's softcap check
    shows ✗, a closing line names the failed check against the card, and the exit status is 1, not 0."""
    source = (SOURCE_ROOT / "nanochat" / "gpt.py").read_text()
    assert source.count("\nLOGIT_SOFTCAP = 15.0\n") == 1
    broken = tmp_path / "gpt_softcap_30.py"
    broken.write_text(source.replace("\nLOGIT_SOFTCAP = 15.0\n", "\nLOGIT_SOFTCAP = 30.0\n"))
    status, out, err = run_cli(TINY_CLI + ["--no-color", "--gpt-impl", str(broken)], capsys)
    assert status == 1, (out[-2000:], err)
    assert re.search(r"softcap identity max \|Δ\| [0-9.e-]+ ✗", out)
    assert re.search(r"1 check\(s\) failed against the card seed: logits = 15·tanh\(raw/15\)", out + err)
    status, out, _ = run_cli(TINY_CLI + ["--no-color"], capsys)  # the same trace of the unbroken model passes
    assert status == 0 and "✗" not in out


@pytest.mark.tooling
@pytest.mark.component("tooling.tracer")
@pytest.mark.parametrize("argv, option", [
    (["--depth", "0"], "--depth"),
    (["--n-kv-head", "3"], "--n-kv-head"),  # depth 4 has n_head 2
    (["--depth", "127"], "head_dim"),  # n_embd 8128 over 64 heads: head_dim 127, odd
    (["--json", "{tmp}/no/such/dir/t.json"], "--json"),
    (["--gpt-impl", "{tmp}/no_such_impl.py"], "--gpt-impl"),
    (["--blocks", "9"], "--blocks"),
    (["--gpt-impl", ""], "--gpt-impl is empty"),
    (["--json", "{tmp}"], "is a directory"),
    (["--plot", "{tmp}/no/such/dir/t.png"], "--plot"),
], ids=["depth-0", "kv-heads-not-dividing", "odd-head-dim", "unwritable-json", "missing-impl", "no-such-block",
        "empty-impl", "json-is-a-directory", "plot-folder-missing"])
def test_bad_options_exit_2_with_one_line_before_any_work(argv, option, tmp_path, capsys, monkeypatch):
    """A bad option prints one clear line on stderr and exits with status 2 before anything is trained."""
    def no_work(*args, **kwargs):
        raise AssertionError("training started before the options were checked")
    monkeypatch.setattr(trace_cli, "run_trace", no_work)
    status, out, err = run_cli([a.replace("{tmp}", str(tmp_path)) for a in argv], capsys)
    assert status == 2
    assert out == ""
    assert len(err.strip().splitlines()) == 1, err
    assert "error" in err and option in err


@pytest.mark.tooling
@pytest.mark.component("tooling.tracer")
def test_an_implementation_whose_import_never_returns_is_one_line_at_the_import_time_limit(tmp_path, capsys):
    """`--gpt-impl` naming a module whose import hangs: exit 2 with one line naming --import-timeout and its
    limit, instead of a tracer that hangs silently."""
    hangs = tmp_path / "hangs.py"
    hangs.write_text("import time\ntime.sleep(60)\n")
    status, out, err = run_cli(["--gpt-impl", str(hangs), "--import-timeout", "0.3"], capsys)
    assert status == 2 and out == "" and len(err.strip().splitlines()) == 1, err
    assert "importing it did not finish within 0.3 s" in err and "--import-timeout SECONDS" in err


@pytest.mark.tooling
@pytest.mark.component("tooling.tracer")
def test_plot_without_matplotlib_names_the_install_command(tmp_path, capsys, monkeypatch):
    """--plot without matplotlib exits 2 with one line that says how to install it."""
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # makes `import matplotlib` fail
    status, out, err = run_cli(TINY_CLI + ["--plot", str(tmp_path / "t.png")], capsys)
    assert status == 2 and out == ""
    assert len(err.strip().splitlines()) == 1 and "pip install" in err and "matplotlib" in err


@pytest.mark.tooling
@pytest.mark.component("tooling.tracer")
@pytest.mark.parametrize("how", ["NO_COLOR", "--no-color"])
def test_no_color_disables_colour(how, capsys, monkeypatch):
    """With NO_COLOR set or --no-color, even a colour terminal gets no ANSI colour codes; without, it does."""
    argv = TINY_CLI + ["--num-iterations", "1"]
    monkeypatch.setenv("FORCE_COLOR", "1")  # rich: behave as on a colour terminal
    monkeypatch.delenv("NO_COLOR", raising=False)
    status, coloured, _ = run_cli(argv, capsys)
    assert status == 0 and SGR.search(coloured), "the control run should be coloured"
    if how == "NO_COLOR":
        monkeypatch.setenv("NO_COLOR", "1")
    else:
        argv = argv + ["--no-color"]
    status, plain, _ = run_cli(argv, capsys)
    assert status == 0 and "1 · Token embeddings" in plain
    assert not SGR.search(plain)


# ------------------------------------------------------------------------------------------------
# interruptions, wrong shapes, and numbers that must not mislead


@pytest.mark.tooling
@pytest.mark.component("tooling.tracer")
def test_a_trace_too_large_for_the_memory_is_refused_in_one_line_before_anything_is_built(capsys, monkeypatch):
    """`--depth 1000` (49 trillion parameters): exit 2 at once, one line with the estimate, the memory available
    and the flag that insists, decided from the closed form before any model is built (it used to run the machine
    out of memory: killed, exit 137, nothing printed)."""
    def no_build(*args, **kwargs):
        raise AssertionError("a model was built before the memory was checked")
    monkeypatch.setattr(trace_cli, "build_on_meta", no_build)
    monkeypatch.setattr(trace_cli, "run_trace", no_build)
    status, out, err = run_cli(["--depth", "1000"], capsys)
    assert status == 2 and out == "" and len(err.strip().splitlines()) == 1, err
    assert re.search(r"--depth 1000 \(n_layer 1000, n_embd 64000, vocab 65,536\) at --batch-size 8 --seq-len 64 needs "
                     r"about [\d,]+ GB of memory \(49,160,388,608,000 parameters.*\), more than the [\d.,]+ GB "
                     r"available; .*--allow-large to try anyway", err), err


@pytest.mark.tooling
@pytest.mark.component("tooling.tracer")
def test_the_memory_available_decides_and_allow_large_insists(capsys, monkeypatch):
    """The same small trace is refused where the estimate exceeds the memory available, runs where it does not,
    and runs anyway with --allow-large; a model the implementation itself refuses to build is then one line."""
    from nanochat_verify import memory
    started = []

    def training_starts(*args, **kwargs):
        started.append(1)
        raise KeyboardInterrupt  # that it started is what counts: stop there (exit status 130)
    monkeypatch.setattr(trace_cli, "run_trace", training_starts)
    monkeypatch.setattr(memory, "available_bytes", lambda: 10 ** 6)
    status, _, err = run_cli(TINY_CLI, capsys)
    assert status == 2 and "more than the 0.0 GB available" in err and started == []
    assert run_cli(TINY_CLI + ["--allow-large"], capsys)[0] == 130 and started == [1]
    monkeypatch.setattr(memory, "available_bytes", lambda: 10 ** 12)
    assert run_cli(TINY_CLI, capsys)[0] == 130 and started == [1, 1]
    monkeypatch.undo()
    status, _, err = run_cli(["--depth", "1000", "--allow-large", "--no-color"], capsys)
    assert status == 1 and len(err.strip().splitlines()) == 1, err
    assert "the implementation refuses to build the model: GPTConfig(n_layer=1000, n_embd=64000" in err


@pytest.mark.tooling
@pytest.mark.component("tooling.tracer")
def test_ctrl_c_is_one_line_and_exit_status_130(capsys, monkeypatch):
    """Ctrl-C during training stops the trace with one line on stderr and exit status 130, no traceback."""
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt
    monkeypatch.setattr(trace_cli, "run_trace", interrupted)
    try:
        status, out, err = run_cli(TINY_CLI + ["--no-color"], capsys)
    except KeyboardInterrupt:
        pytest.fail("Ctrl-C left the command line as a traceback")
    assert status == 130
    assert err.strip() == "nanochat_verify.trace: interrupted" and "Traceback" not in out + err


@pytest.mark.tooling
@pytest.mark.component("tooling.tracer")
def test_a_tensor_of_the_wrong_shape_is_named_with_its_shape(capsys, monkeypatch):
    """Logits that are not (B, T, vocab_size) stop the trace with one line naming the tensor and its
    shape (exit status 1), before any comparison of tensors that cannot be compared."""
    config = load_implementation(IMPLEMENTATIONS["own"]).GPTConfig(**CFG)
    cache = {"logits": torch.zeros(B, T, V + 1), "lm_head.input": torch.zeros(B, T, C)}
    with pytest.raises(sections.TraceError, match=r"logits has shape \(2, 8, 33\), expected \(2, 8, 32\): "
                                                   r"forward must return \(B, T, vocab_size\) logits"):
        training._check_shapes(cache, config, (B, T), torch.tensor(1.0))

    def wrong_shape(*args, **kwargs):
        training._check_shapes(cache, config, (B, T), torch.tensor(1.0))
    monkeypatch.setattr(trace_cli, "run_trace", wrong_shape)
    status, _, err = run_cli(TINY_CLI + ["--no-color"], capsys)
    assert status == 1 and len(err.strip().splitlines()) == 1 and "logits has shape (2, 8, 33)" in err


@pytest.mark.tooling
@pytest.mark.component("tooling.tracer")
def test_comparing_tensors_of_different_shapes_names_both_shapes():
    """A derived check between two tensors of different shapes says so, instead of failing to broadcast."""
    with pytest.raises(sections.TraceError, match=r"cannot compare block 0 output and input \+ attn \+ mlp: "
                                                   r"shapes \(2, 3\) and \(3, 2\) differ"):
        sections._max_abs(torch.zeros(2, 3), torch.zeros(3, 2), "block 0 output and input + attn + mlp")


@pytest.mark.tooling
@pytest.mark.component("tooling.tracer")
@pytest.mark.parametrize("fraction, shown", [
    (0.0, "0.0%"),
    (1.0, "100.0%"),
    (0.25, "25.0%"),
    (1 - 28 / 65536, "99.96%"),
    (1 - 1 / 16_000_000, "99.99999%"),
    (1e-9, "0.0000001%"),
], ids=["no-zeros", "all-zeros", "a-quarter", "28-nonzero-rows-of-65536", "one-nonzero-of-16-million",
        "one-zero-in-a-billion"])
def test_a_share_of_zeros_never_rounds_to_none_or_all(fraction, shown):
    """Zero fractions get the decimals they need: a gradient with nonzero rows never reads 100.0% zeros."""
    assert percent_of(fraction) == shown



@pytest.mark.tooling
@pytest.mark.component("tooling.tracer")
def test_cli_traces_the_modern_components_switched_on(tmp_path, capsys):
    """With --features all the trace shows rows 13-18: windows, value-embedding layers and gates, lambdas, smear,
    backout and the padded vocabulary, each as the card says."""
    out_json = tmp_path / "t.json"
    argv = [*TINY_CLI, "--depth", "2", "--vocab-size", "300", "--features", "all", "--json", str(out_json), "--no-color"]
    status, out, err = run_cli(argv, capsys)
    assert status == 0, err
    card = load_card()
    modern = [c for c in ALL_COMPONENTS if c.feature is not None]
    for component in modern:
        assert f"{component.number} · {component.title_for(card)}" in out
    s = json.loads(out_json.read_text())["sections"]
    assert set(s) == {c.key for c in ALL_COMPONENTS}
    assert s["sliding_window"]["windows"] == s["sliding_window"]["card_windows"] == card.window_sizes(16, 2)
    assert s["value_embeddings"]["layers"] == card.ve_layers(2)
    assert all(0 < g["min"] and g["max"] < card.value_embeddings["gate_scale"] for g in s["value_embeddings"]["gates"].values())
    assert s["lambdas"]["resid"] == pytest.approx(card.init_rule("resid_lambdas").schedule(2), abs=0.05)
    assert s["padded_vocab"]["rows"] == 320 and s["padded_vocab"]["vocab_size"] == 300
    assert s["backout"]["layer"] == 1
