"""
Time limits where the project sets none: a fork's pyproject.toml knows nothing of the suite, yet a forward
that never returns must fail its test, not hang the fork's CI. This project's pyproject.toml sets its own
(`timeout`, `session_timeout`), and the command line (`--timeout`) or PYTEST_TIMEOUT always win.
"""

import os

import pytest

PER_TEST = 60.0  # seconds; the slowest test takes about 2 s


@pytest.hookimpl(tryfirst=True)  # before pytest-timeout reads its settings
def pytest_configure(config):
    if not config.pluginmanager.has_plugin("timeout"):
        return
    if config.getvalue("timeout") is None and not os.environ.get("PYTEST_TIMEOUT") and not config.getini("timeout"):
        config.option.timeout = PER_TEST
