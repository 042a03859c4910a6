"""The architecture cards: every value checked against the card's schema (type, range, nested tables,
unknown keys with the closest known one suggested) before any test runs, `extends` resolved against the card
that names it, and one line that names the file, the key, the value and what was expected."""

import math
import textwrap

import pytest

from nanochat_verify.card import CardError, card_names, load_card
from nanochat_verify.paths import SOURCE_ROOT

pytestmark = [pytest.mark.tooling, pytest.mark.component("tooling.cards")]


def card_file(folder, text, name="mine.toml"):
    path = folder / name
    path.write_text(textwrap.dedent(text))
    return path


BAD_VALUES = [
    ('rope_base = "ten thousand"', "rope_base", "a finite number > 1"),
    ("rope_base = 1e308", "rope_base", "at most 1e9"),
    ("rope_base = nan", "rope_base", "a finite number"),
    ("rope_base = -5.0", "rope_base", "a finite number > 1"),
    ("softcap = true", "softcap", "a finite number > 0"),
    ("softcap = inf", "softcap", "a finite number > 0"),
    ("rotary_len_factor = 2.7", "rotary_len_factor", "a whole number"),
    ("rotary_len_factor = [1]", "rotary_len_factor", "a whole number"),
    ('kv_cache_grows = "false"', "kv_cache_grows", "true or false"),
    ("name = 5", "name", "a non-empty string"),
    ("mlp_ratio = 0", "mlp_ratio", "a whole number from 1"),
    ("mlp_ratio = -4", "mlp_ratio", "a whole number from 1"),
    ('target = "big"', "target", "a table"),
    ("[padded_vocab]\nmultiple = 0", "padded_vocab.multiple", "a whole number from 1"),
    ("[sliding_window]\nshort_divisor = 0", "sliding_window.short_divisor", "a whole number from 1"),
    ('[sliding_window]\npattern = "SSXL"', "sliding_window.pattern", "a string matching"),
    ('sliding_window = "SSSL"', "sliding_window", "a table"),
    ('[init]\nwte = { dist = "gaussian", std = 1.0 }', "init.wte.dist", "one of 'normal'"),
    ('[init]\nwte = { dist = "normal", std = -1.0 }', "init.wte.std", "a finite number > 0"),
    ('[smear]\npresence = "sometimes"', "smear.presence", "one of 'absent', 'optional', 'always'"),
]


@pytest.mark.parametrize("line, key, expected", BAD_VALUES, ids=[line.split("=")[0].strip().replace("\n", "-")
                                                                  + f"-{i}" for i, (line, _, _) in
                                                                  enumerate(BAD_VALUES)])
def test_a_value_of_the_wrong_type_or_range_is_one_line_naming_file_key_value_and_expectation(tmp_path, line, key,
                                                                                              expected):
    """Wrong types are refused, never coerced (a string "false" is not False, true is not 1, 2.7 is not 2), and
    nonsense (an infinite softcap, a zero ratio, a std of -1) is refused before a test can blame the model."""
    path = card_file(tmp_path, f'extends = "seed"\n{line}\n')
    with pytest.raises(CardError) as caught:
        load_card(str(path))
    message = str(caught.value)
    assert "\n" not in message and str(path) in message and f"{key} = " in message and expected in message, message


def test_an_unknown_key_is_refused_with_the_closest_known_key(tmp_path):
    """A typo in a nested table ([target] deptth) is not silently ignored: it names the key and suggests depth."""
    path = card_file(tmp_path, 'extends = "seed"\n[target]\ndeptth = 20\n')
    with pytest.raises(CardError, match=r"unknown key 'target.deptth'; did you mean 'depth'\?"):
        load_card(str(path))
    path = card_file(tmp_path, 'extends = "seed"\nsoftcapp = 20.0\n')
    with pytest.raises(CardError, match=r"unknown key 'softcapp'; did you mean 'softcap'\?"):
        load_card(str(path))


def test_an_unknown_extends_names_the_card_file_and_its_extends(tmp_path):
    """extends = "nope" says which file's extends names nothing, and suggests nothing it cannot know."""
    path = card_file(tmp_path, 'extends = "nope"\n')
    with pytest.raises(CardError, match=rf"{path}: extends 'nope': no card of that name"):
        load_card(str(path))


def test_a_relative_extends_resolves_against_the_card_that_names_it(tmp_path, monkeypatch):
    """The same card loads the same base wherever the user stands: `extends = "base.toml"` is next to the card."""
    (tmp_path / "cards").mkdir()
    card_file(tmp_path / "cards", 'extends = "seed"\nname = "base"\nsoftcap = 20.0\n', "base.toml")
    mine = card_file(tmp_path / "cards", 'extends = "base.toml"\nname = "mine"\n')
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    card_file(elsewhere, 'extends = "seed"\nname = "decoy"\nsoftcap = 99.0\n', "base.toml")
    monkeypatch.chdir(elsewhere)
    assert load_card(str(mine)).softcap == 20.0


def test_a_card_of_ones_own_is_named_after_its_file_not_the_card_it_extends(tmp_path):
    """A fork's card that extends an upstream card without a name of its own is called by its file name, and its
    title says what it extends (a report never labels a user's card with the upstream card's name)."""
    card = load_card(str(card_file(tmp_path, 'extends = "nanochat-92d63d4"\nsoftcap = 30.0\n', "my-fork.toml")))
    assert card.name == "my-fork" and "nanochat-92d63d4" in card.title and card.softcap == 30.0


def test_every_shipped_card_passes_its_schema():
    """Each card of nanochat_verify/cards loads, and the values the tests use are finite and in range."""
    for name in card_names():
        card = load_card(name)
        assert card.name == name and math.isfinite(card.softcap) and card.rope_base > 1


def test_a_bad_card_stops_pytest_with_one_usage_line_not_an_internal_error(pytester, tmp_path):
    """--architecture naming a bad card is a usage error in one line: no INTERNALERROR traceback."""
    path = card_file(tmp_path, 'extends = "seed"\nrope_base = "ten thousand"\n')
    pytester.makepyfile(test_x="def test_x():\n    pass\n")
    result = pytester.runpytest_inprocess("-p", "nanochat_verify.plugin", "-p", "no:cacheprovider", "-p", "no:cov",
                                          f"--gpt-impl={SOURCE_ROOT}", f"--architecture={path}")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    err = result.stderr.str()
    assert "INTERNALERROR" not in err and "rope_base = 'ten thousand'" in err


@pytest.mark.parametrize("tool", ["trace", "mutation"])
def test_a_bad_card_is_one_line_from_the_tracer_and_the_mutation_tool(tool, tmp_path, capsys):
    """The tracer and the mutation runner refuse a bad card in one line with the usage exit status, no traceback."""
    from nanochat_verify.exits import Exit
    from nanochat_verify.mutation import cli as mutation_cli
    from nanochat_verify.trace import cli as trace_cli
    path = card_file(tmp_path, 'extends = "seed"\nsoftcap = true\n')
    main = {"trace": trace_cli.main, "mutation": mutation_cli.main}[tool]
    argv = [f"--architecture={path}"] + (["--only", "mlp_relu"] if tool == "mutation" else ["--depth", "1"])
    try:
        status = main(argv)
    except SystemExit as e:
        status = e.code
    captured = capsys.readouterr()
    text = (captured.out + captured.err).strip()
    assert status == Exit.USAGE and len(text.splitlines()) == 1 and "softcap = True" in text, text


# ---- what a fork declares: components replaced on purpose, parts the table lacks, switches ------------------

REPLACED_MLP = """
    extends = "seed"
    [replaced]
    mlp = "a gated MLP of my own (SwiGLU), tested in my_tests/"
"""


def test_a_component_declared_replaced_has_its_tests_left_out_and_others_run(pytester, tmp_path):
    """[replaced] mlp: the MLP's tests are deselected (the suite has nothing of it to check) and the other
    components' tests run as before."""
    path = card_file(tmp_path, REPLACED_MLP)
    pytester.makepyfile(test_x='import pytest\n\n@pytest.mark.component("mlp.relu2")\ndef test_mlp():\n'
                               '    assert False\n\n@pytest.mark.component("rmsnorm")\ndef test_norm():\n    pass\n')
    result = pytester.runpytest_inprocess("-p", "nanochat_verify.plugin", "-p", "no:cacheprovider", "-p", "no:cov",
                                          "-p", "no:randomly", f"--gpt-impl={SOURCE_ROOT}", f"--architecture={path}")
    result.assert_outcomes(passed=1, deselected=1)


def test_the_report_shows_a_declared_component_with_its_note_and_not_as_failing(tmp_path):
    """The summary row of a replaced component says "declared" and the card's note; it is not among the failing
    components, and no sub-component of it is missing a test."""
    from nanochat_verify import components as table
    from nanochat_verify.paths import OWN_MODEL
    from nanochat_verify.report import inputs as report_inputs
    from nanochat_verify.report import render as report_render
    from nanochat_verify.report.status import DECLARED, failing_components, index_tests
    from nanochat_verify.runrecord import Outcome
    card = load_card(str(card_file(tmp_path, REPLACED_MLP)))
    tests = [Outcome(f"tests/test_a.py::test_{s.replace('.', '_')}", "passed", (s,), "A property.", "")
             for s in table.SUBCOMPONENTS if not s.startswith("mlp.")]
    inputs = report_inputs.Inputs(impl_path=OWN_MODEL, own_impl=True, tests=tests, card=card, root=SOURCE_ROOT)
    by_sub = index_tests(inputs)
    assert inputs.problems == [] and failing_components(inputs, by_sub) == []
    report = report_render.render(inputs)
    mlp_row = next(line for line in report.splitlines() if line.startswith("| ") and " MLP" in line)
    assert f"{DECLARED}: a gated MLP of my own (SwiGLU), tested in my_tests/" in mlp_row


def test_a_cards_extra_parameters_are_held_neutral_and_left_out_of_the_counts(impl, tmp_path):
    """[extra.gate] with parameter pattern gates.* and neutral 0: the fixtures zero those parameters, and the
    parameter count of the architecture is the model's without them."""
    import torch

    from nanochat_verify.scaling import measured_counts

    from .conftest import n_parameters, neutralize
    card = load_card(str(card_file(tmp_path, """
        extends = "seed"
        [extra.gate]
        note = "a gate per layer of my own"
        parameters = ["gates.*"]
        neutral = { "gates.*" = 0.0 }
    """)))
    model = impl.GPT(impl.GPTConfig(sequence_len=8, vocab_size=32, n_layer=2, n_head=2, n_kv_head=2, n_embd=16))
    plain = sum(p.numel() for p in model.parameters())
    model.gates = torch.nn.ParameterList([torch.nn.Parameter(torch.ones(3)) for _ in range(2)])
    assert "gates.1" in card.extra_parameters() and "transformer.wte.weight" not in card.extra_parameters()
    assert n_parameters(model, card) == plain
    assert measured_counts(model, card)["total"] == plain and measured_counts(model)["total"] == plain + 6
    neutralize(model, card=card)
    assert all((g == 0).all() for g in model.gates)
    assert ("extra: gate", "a gate per layer of my own") in card.describe()


def test_a_switch_off_of_an_always_on_feature_is_what_the_other_components_tests_get():
    """nanochat e7ed208 has windows always on, with window_pattern="L" to switch them off: the other components'
    tests get that keyword, the window tests do not, and a config with it has the feature inactive."""
    from types import SimpleNamespace
    card = load_card("nanochat-e7ed208")
    assert card.config_without() == {"window_pattern": "L"}
    assert card.config_without("sliding_window") == {}
    assert not card.active("sliding_window", SimpleNamespace(window_pattern="L"))
    assert card.active("sliding_window", SimpleNamespace(window_pattern="SSSL"))
    assert load_card("seed").config_without() == {}


def test_a_component_no_card_of_the_chain_mentions_is_absent(tmp_path):
    """A card chain without a component's table (a card written before the component existed) does not have it:
    no presence to declare, its tests not applicable."""
    import re
    seed = (SOURCE_ROOT / "nanochat_verify" / "cards" / "seed.toml").read_text()
    without = re.sub(r"(?ms)^\[smear\]\n.*?(?=^\[)", "", seed)  # the [smear] table, up to the next table
    without = re.sub(r"(?m)^smear_\w+ = .*\n", "", without)  # and its init rules
    assert "[smear]" in seed and "[smear]" not in without and "smear_gate" not in without
    card = load_card(str(card_file(tmp_path, without, name="no_smear.toml")))
    assert not card.has("smear") and card.has("backout") and card.config_for("backout")
