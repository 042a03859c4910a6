"""
Where a run writes, whatever folder pytest is started from: pytest-cov's `.coverage` and hypothesis's
`.hypothesis/` in the project root (pytest's rootdir), and path options relative to where they were typed.
"""

import os
import sys
from pathlib import Path

import pytest


@pytest.hookimpl(wrapper=True)
def pytest_load_initial_conftests(early_config, parser, args):
    """pytest-cov starts here (tryfirst) and puts `.coverage` in the current folder, reading its
    settings from there: a run started elsewhere (`cd /tmp && pytest <checkout>/tests/...`) must
    still use the project's data file and [tool.coverage] settings. Runs only when the plugin is
    loaded early (its entry point, or the `-p nanochat_verify.plugin` of pyproject.toml's addopts)."""
    root = early_config.rootpath
    if Path.cwd().resolve() != root.resolve() and (root / "pyproject.toml").is_file():
        os.environ.setdefault("COVERAGE_FILE", str(root / ".coverage"))
        options = early_config.known_args_namespace
        if getattr(options, "cov_config", None) == ".coveragerc" and not Path(".coveragerc").exists():
            options.cov_config = str(root / "pyproject.toml")
    return (yield)


HYPOTHESIS_HOME_KEY = pytest.StashKey()


def pytest_sessionstart(session):
    """hypothesis keeps its caches in .hypothesis/ of the current folder: keep them in the project.
    A run that has not imported hypothesis (seconds of import time) needs no folder for it."""
    configuration = sys.modules.get("hypothesis.configuration")
    if configuration is not None and not os.environ.get("HYPOTHESIS_STORAGE_DIRECTORY"):
        previous = configuration.storage_directory(intent_to_write=False).home_directory
        session.config.stash[HYPOTHESIS_HOME_KEY] = previous
        configuration.set_hypothesis_home_dir(session.config.rootpath / ".hypothesis")


def pytest_unconfigure(config):
    # a run inside another (pytester) gives the outer run its folder back
    previous = config.stash.get(HYPOTHESIS_HOME_KEY, None)
    if previous is not None:
        sys.modules["hypothesis.configuration"].set_hypothesis_home_dir(previous)


def resolve_option_path(config, option, value):
    """A path option's value: relative to where pytest was started when the user typed it, relative
    to the project root when it comes from the ini file (addopts), like pytest's own ini paths."""
    path = Path(value)
    if path.is_absolute():
        return path
    typed = any(a == option or a.startswith(option + "=") for a in config.invocation_params.args)
    return (config.invocation_params.dir if typed else config.rootpath) / path
