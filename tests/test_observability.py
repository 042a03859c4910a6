"""The suite never blames a component for its own blindness: under another implementation, what it cannot observe
(a fused helper, a renamed module, another head layout, an interface that differs) is reported as not observable,
with what is missing; one interface difference is one finding; red tests are grouped by their first error; and an
implementation's warnings are recorded, not failures."""

import textwrap

import pytest
import torch

from nanochat_verify.contract import CacheAdapter, InterfaceDiffers, interface, load_implementation
from nanochat_verify.paths import OWN_MODEL, SOURCE_ROOT
from nanochat_verify.trace import NotObservable, trace

pytestmark = [pytest.mark.tooling, pytest.mark.component("tooling.observability")]
TINY = dict(sequence_len=8, vocab_size=32, n_layer=2, n_head=4, n_kv_head=2, n_embd=32)


def fork_of_our_model(tmp_path, old, new, name="fork"):
    """A copy of this project's nanochat checkout with one text of gpt.py replaced: a fork's legitimate change."""
    import shutil
    root = tmp_path / name
    shutil.copytree(OWN_MODEL.parent, root / "nanochat", ignore=shutil.ignore_patterns("__pycache__"))
    gpt = root / "nanochat" / "gpt.py"
    source = gpt.read_text()
    assert source.count(old) == 1
    gpt.write_text(source.replace(old, new))
    return load_implementation(str(root))


def test_a_rope_of_the_forks_own_leaves_the_rotated_tensors_not_observable_and_the_rest_traced(tmp_path):
    """A fork that rotates q and k in a helper of its own (the same maths): the trace runs, q_rope says what it
    needs, and everything else is observed."""
    impl = fork_of_our_model(tmp_path, "q, k = apply_rotary_emb(q, cos, sin), apply_rotary_emb(k, cos, sin)",
                             "q, k = _rotate(q, cos, sin), _rotate(k, cos, sin)")
    impl._rotate = _rope
    model = impl.GPT(impl.GPTConfig(**TINY))
    idx = torch.zeros(1, 8, dtype=torch.long)
    with trace(model) as cache:
        model(idx, targets=idx).backward()
    assert cache["transformer.h.0.attn.output"].shape == (1, 8, 32) and "loss" in cache
    with pytest.raises(NotObservable, match="not observable in this implementation: transformer.h.0.attn.q_rope "
                                            r"\(needs apply_rotary_emb called on the queries"):
        cache["transformer.h.0.attn.q_rope"]


def _rope(x, cos, sin):
    d = x.size(-1) // 2
    x1, x2 = x[..., :d], x[..., d:]
    return torch.cat([x1 * cos + x2 * sin, -x1 * sin + x2 * cos], -1).to(x.dtype)


def test_a_projection_of_another_head_layout_is_not_observable_as_heads_and_the_forward_still_runs(tmp_path):
    """c_q of twice n_head heads (a fork's own layout): the tracer cannot lay it out as heads of head_dim; it says so
    for that name instead of raising inside the forward, and the forward's result is untouched."""
    model = load_implementation(str(SOURCE_ROOT)).GPT(load_implementation(str(SOURCE_ROOT)).GPTConfig(**TINY))
    model.config.n_head = 3  # the tracer now expects 3 heads of 32 // 3: c_q's 32 outputs are not that
    idx = torch.zeros(1, 8, dtype=torch.long)
    expected = model(idx)
    with trace(model) as cache:
        got = model(idx)
    torch.testing.assert_close(got, expected, rtol=0, atol=0)
    with pytest.raises(NotObservable, match=r"transformer.h.0.attn.q \(its output \(1, 8, 32\) is not laid out as 3 "
                                            r"heads of head_dim 10"):
        cache["transformer.h.0.attn.q"]


def test_a_kv_cache_of_another_constructor_is_one_interface_difference():
    """A KVCache that needs another argument is an InterfaceDiffers naming its signature, for every test that needs
    a cache, never a TypeError raised in the adapter."""
    class KVCache:
        def __init__(self, batch_size, num_heads, seq_len, head_dim, num_layers, n_embd):
            pass
    assert "cannot be built as KVCache(batch_size" in interface.cache_difference(KVCache)
    with pytest.raises(InterfaceDiffers, match=r"n_embd"):
        CacheAdapter(KVCache).new(1, 2, 4, 8, 1)


def test_a_config_without_a_contract_field_is_one_interface_difference():
    """A looped model's config without n_layer cannot take the contract's fields: the difference names the field and
    the config's own fields."""
    from dataclasses import dataclass

    @dataclass
    class GPTConfig:
        sequence_len: int = 8
        vocab_size: int = 32
        n_loops: int = 2
        n_head: int = 4
        n_kv_head: int = 2
        n_embd: int = 32
    difference = interface.config_difference(GPTConfig, TINY)
    assert "GPTConfig takes no n_layer" in difference and "n_loops" in difference


FAKE_TESTS = '''
import pytest, warnings
from nanochat_verify.trace import NotObservable
from nanochat_verify.contract import InterfaceDiffers

@pytest.mark.component("attention.qk_norm")
def test_needs_a_fused_tensor(impl):
    raise NotObservable("transformer.h.0.attn.q_norm", "needs norm called on the rotated queries")

@pytest.mark.component("inference.kv_cache")
def test_needs_the_cache(impl):
    raise InterfaceDiffers("KVCache(a, b) cannot be built as KVCache(batch_size, ...)")

@pytest.mark.component("attention.projections")
def test_reads_a_module_the_implementation_renamed(impl):
    from nanochat_verify.suite.conftest import randomize_weights
    randomize_weights(impl.GPT(impl.GPTConfig()))  # reads model.transformer.wte: this GPT has none

@pytest.mark.component("mlp.relu2")
def test_a_real_failure(impl):
    assert 1 == 2, "the implementation is wrong here"

@pytest.mark.component("mlp.fc")
def test_the_same_real_failure_again(impl):
    assert 1 == 2, "the implementation is wrong here"

@pytest.mark.component("embedding.wte")
def test_a_warning_of_the_implementation(impl):
    warnings.warn("deprecated inside the fork's import of FlexAttention", DeprecationWarning)
'''


@pytest.fixture
def fake_run(pytester, tmp_path):
    """The fake tests above, run in-process against a small foreign implementation, under filterwarnings = error."""
    impl = tmp_path / "foreign_gpt.py"
    impl.write_text(textwrap.dedent("""
        import torch
        class GPTConfig:
            pass
        class GPT(torch.nn.Module):
            def __init__(self, config):
                super().__init__()
                self.lm_head = torch.nn.Linear(2, 2)
    """))
    pytester.makeini("[pytest]\nfilterwarnings =\n    error\n    ignore::pytest.PytestAssertRewriteWarning\n")
    pytester.makepyfile(test_fake=FAKE_TESTS)
    return pytester.runpytest_inprocess("-p", "nanochat_verify.plugin", "-p", "no:cacheprovider", "-p", "no:cov",
                                        "-p", "no:randomly", f"--gpt-impl={impl}", "-rs")


def test_what_the_suite_cannot_observe_is_skipped_with_the_reason_and_real_failures_stay_red(fake_run):
    """NotObservable, InterfaceDiffers and a missing module read by the suite's own code are skips that say what is
    missing; a failed assertion stays a failure."""
    fake_run.assert_outcomes(passed=1, skipped=3, failed=2)
    fake_run.stdout.fnmatch_lines(["*not observable in this implementation: transformer.h.0.attn.q_norm*",
                                   "*not observable in this implementation: KVCache(a, b)*",
                                   "*not observable in this implementation: GPT has no 'transformer'*"])


def test_red_tests_are_grouped_by_component_and_first_error(fake_run):
    """The end of the run groups the red tests: one line per component and first error, with an example id."""
    fake_run.stdout.fnmatch_lines(["*red tests by component and first error*",
                                   "mlp: 2 test(s): AssertionError: the implementation is wrong here*"])


def test_another_implementations_warnings_are_recorded_not_failures(fake_run):
    """Under filterwarnings = error, a warning raised while testing another implementation is listed in the warnings
    summary, and its test passes."""
    fake_run.stdout.fnmatch_lines(["*DeprecationWarning: deprecated inside the fork's import of FlexAttention*"])
