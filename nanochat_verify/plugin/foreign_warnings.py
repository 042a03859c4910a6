"""
Warnings are not findings. This project's own model runs under its pytest configuration's
`filterwarnings = error` (a warning of ours is a bug to fix); under another implementation its warnings, and
torch's warnings about it (a deprecation raised inside a fork's import of FlexAttention), are recorded in
pytest's warnings summary, not turned into failures.
"""

import pytest

from nanochat_verify.plugin.options import is_own_implementation


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(session, config, items):
    if is_own_implementation(config) or config.getoption("with_extras"):
        return
    for item in items:
        item.add_marker(pytest.mark.filterwarnings("default"), append=False)
