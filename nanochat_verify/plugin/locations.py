"""
Where a run writes, whatever folder pytest is started from: a recording run's own folder of records and line
coverage (runs.py), else pytest-cov's `.coverage` in the project root (pytest's rootdir); and hypothesis's
`.hypothesis/` in the project (in the records' folder of a checkout that cannot be written).
"""

import os
import sys
from pathlib import Path

import pytest

from nanochat_verify.plugin import runs
from nanochat_verify.records import records_for


@pytest.hookimpl(wrapper=True)
def pytest_load_initial_conftests(early_config, parser, args):
    """pytest-cov starts here (tryfirst) and puts `.coverage` in the current folder, reading its
    settings from there: a run started elsewhere (`cd /tmp && pytest <checkout>/tests/...`) must
    still use the project's data file and [tool.coverage] settings. Runs only when the plugin is
    loaded early (its entry point, or the `-p nanochat_verify.plugin` of pyproject.toml's addopts). A run that
    records its outcomes writes its coverage data into its own folder instead (runs.py)."""
    runs.start(early_config, early_config.known_args_namespace, early=True)
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
        kept = records_for(session.config.rootpath)
        home = session.config.rootpath / ".hypothesis" if kept.moved is None else kept.folder / "hypothesis"
        configuration.set_hypothesis_home_dir(home)


def pytest_unconfigure(config):
    # a run inside another (pytester) gives the outer run its folder back
    previous = config.stash.get(HYPOTHESIS_HOME_KEY, None)
    if previous is not None:
        sys.modules["hypothesis.configuration"].set_hypothesis_home_dir(previous)
