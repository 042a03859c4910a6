"""
The implementation under test and the architecture it is verified against.

- `--gpt-impl PATH_OR_MODULE`: a nanochat checkout, a .py file or a dotted module name; default: the
  `gpt-impl` of [tool.nanochat-verify] in the project's pyproject.toml, else the project's own
  nanochat/gpt.py (this project's model, or a fork's when the kit runs from the fork's root).
- `--architecture NAME_OR_PATH`: the card; default: [tool.nanochat-verify] architecture for the project's own
  implementation, else the base found for a checkout (nanochat_verify/base.py: from its git history, else from
  its code), else the default card. The pytest header says which implementation and which card, and how the
  card was chosen. [tool.nanochat-verify.card] overrides apply either way.
- `--import-timeout SECONDS`: how long importing the implementation may take (default: [tool.nanochat-verify]
  import-timeout, else 60): an import that never returns stops the run with one line, before any test.

Tests reach them through the session fixtures `impl` and `arch`. The markers the suite uses are registered
here, so that the suite runs under any project's pytest configuration.
"""

import argparse
from pathlib import Path

import pytest

from nanochat_verify import options
from nanochat_verify.base import choose_card
from nanochat_verify.card import CardError
from nanochat_verify.argtypes import positive_float
from nanochat_verify.contract import ContractError, load_implementation, source_path
from nanochat_verify.paths import is_own_model
from nanochat_verify.settings import (SettingsError, default_implementation, default_implementation_file,
                                     no_implementation, read_settings)

IMPL_KEY = pytest.StashKey()
ARCH_KEY = pytest.StashKey()
SETTINGS_KEY = pytest.StashKey()
SPEC_KEY = pytest.StashKey()  # the --gpt-impl the implementation was loaded from, as resolved
HOW_KEY = pytest.StashKey()  # how the card was chosen, in one sentence

MARKERS = (
    "component(*ids): the sub-component(s) of the component table this test verifies "
    "(nanochat_verify/components.py); required on every test",
    "project_only: verifies the project model's extras beyond the contract (its ValueError messages); "
    "deselected under another --gpt-impl unless --with-extras",
    "tooling: verifies the kit's tools (tracer, report, mutation runner, plugin); runs on the project's own model only",
    "cuda: needs a CUDA device; skipped where there is none",
    "packaging: builds the kit's wheel and virtual environments; runs with --run-packaging only",
)


def pytest_addoption(parser):
    group = parser.getgroup("nanochat-verify", "nanochat verification suite")
    options.add_to_pytest(group, options.GPT_IMPL, options.ARCHITECTURE, options.EXPECT_FAILURES,
                          options.IMPORT_TIMEOUT)
    group.addoption("--with-extras", action="store_true",
                    help="the implementation is a copy of this project's nanochat/gpt.py: also run the project_only tests")
    group.addoption("--prioritize-component", default=None, metavar="KEY",
                    help="run the tests of this component (or sub-component) first, then its table row's, "
                         "then the oracle and validation tests")
    group.addoption("--run-packaging", action="store_true",
                    help="also run the packaging tests (they build a wheel and virtual environments: CI runs them)")
    group.addoption("--outcomes", default=None, metavar="PATH",
                    help="write each test's outcome, components and docstring to this JSON file "
                         "(relative to the project root when set in the ini file)")


def implementation_spec(config, settings):
    """What to verify: --gpt-impl, else the project's setting, else the project's own nanochat checkout."""
    spec = config.getoption("gpt_impl") or default_implementation(settings)
    if spec is None:
        raise pytest.UsageError(no_implementation(config.rootpath))
    return spec


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config):
    for marker in MARKERS:
        config.addinivalue_line("markers", marker)
    try:
        settings = read_settings(config.rootpath)
        spec = implementation_spec(config, settings)
        impl = config.stash[IMPL_KEY] = load_implementation(spec, import_limit(config, settings))
        config.stash[ARCH_KEY], config.stash[HOW_KEY] = choose_card(
            settings, source_path(impl), config.getoption("architecture"), default_implementation_file(settings))
    except (ContractError, CardError, SettingsError) as e:
        raise pytest.UsageError(str(e)) from None
    config.stash[SETTINGS_KEY], config.stash[SPEC_KEY] = settings, spec


def pytest_report_header(config):
    """The implementation, its card and how the card was chosen; what the engine tests run of the implementation's
    engine.py, and what they leave out (its tokenizer and checkpoint imports): said at the top of every run."""
    impl = config.stash.get(IMPL_KEY, None)
    if impl is None:
        return None
    from nanochat_verify.contract import engine_of
    card = config.stash[ARCH_KEY]
    return [f"nanochat-verify: implementation {source_path(impl)}",
            f"nanochat-verify: architecture {card.name} ({config.stash[HOW_KEY]})",
            f"nanochat-verify: {engine_of(impl).describe()} (tests/test_engine.py hands Engine a StubTokenizer)"]


def import_limit(config, settings):
    """--import-timeout, checked, else the project's setting, else the default."""
    text = config.getoption("import_timeout")
    if text is None:
        return options.import_timeout(None, settings)
    try:
        return positive_float(text)
    except argparse.ArgumentTypeError as e:
        raise pytest.UsageError(f"--import-timeout: {e}") from None


def is_own_implementation(config):
    """Whether the implementation under test is this project's own model (not a fork's, not a copy)."""
    return is_own_model(source_path(config.stash[IMPL_KEY]))


@pytest.fixture(scope="session")
def impl(request):
    """The contract implementation under test (a module exposing GPTConfig, GPT, norm, apply_rotary_emb)."""
    return request.config.stash[IMPL_KEY]


@pytest.fixture(scope="session")
def arch(request):
    """The architecture card the implementation is verified against (nanochat_verify.card.Architecture)."""
    return request.config.stash[ARCH_KEY]


def resolve_option_path(config, option, value):
    """A path option's value: relative to where pytest was started when the user typed it, relative
    to the project root when it comes from the ini file (addopts), like pytest's own ini paths."""
    path = Path(value)
    if path.is_absolute():
        return path
    typed = any(a == option or a.startswith(option + "=") for a in config.invocation_params.args)
    return (config.invocation_params.dir if typed else config.rootpath) / path
