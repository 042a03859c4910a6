"""
A red test must be the implementation's fault. Under another implementation than this project's own model,
a test that stops because the suite cannot observe something there is reported as skipped, "not observable in
this implementation: <what is missing>" (⚠️ in the report, with the reason), never as a failure:

- NotObservable: the tracer saw no such tensor (a renamed or fused module, another head layout);
- InterfaceDiffers: the implementation's interface differs from the contract's at one point (its config, its
  forward, its KV cache; one test of tests/test_interface.py fails naming the difference);
- an AttributeError raised in the suite's own code (a fixture, a test) when it reads a module or attribute
  the implementation does not have (model.transformer.h[0].attn.c_q of a fork that renamed it).

Anything raised inside the implementation's own code, and every failed assertion, stays a failure. On this
project's own model (and on copies of it, --with-extras: the mutation runner's mutants) nothing is converted:
there, an unobservable internal is a regression of the model itself.
"""

from pathlib import Path

import pytest

from nanochat_verify.contract.interface import InterfaceDiffers
from nanochat_verify.paths import KIT_DIR, SUITE_DIR
from nanochat_verify.plugin.options import is_own_implementation

OURS = (KIT_DIR.resolve(), SUITE_DIR.resolve())


def raised_in_our_code(excinfo):
    """Whether the innermost frame of the traceback outside torch (torch.nn.Module.__getattr__ raises a missing
    module's AttributeError for whoever asked) is a file of the kit or of the suite."""
    import torch
    torch_dir = Path(torch.__file__).resolve().parent
    frames, tb = [], excinfo.tb
    while tb is not None:
        frames.append(Path(tb.tb_frame.f_code.co_filename).resolve())
        tb = tb.tb_next
    path = next((f for f in reversed(frames) if not f.is_relative_to(torch_dir)), None)
    return path is not None and any(path.is_relative_to(folder) for folder in OURS)


def blindness(excinfo):
    """Why the suite could not observe what this test needs, or None when the failure is the implementation's."""
    from nanochat_verify.trace.hooks import NotObservable
    error = excinfo.value
    if isinstance(error, (NotObservable, InterfaceDiffers)):
        return str(error)
    if isinstance(error, AttributeError) and raised_in_our_code(excinfo):
        import types

        import torch
        holder = getattr(error, "obj", None)
        if isinstance(holder, torch.nn.Module) or type(holder).__name__ == "GPTConfig":
            return f"not observable in this implementation: {type(holder).__name__} has no {error.name!r}"
        if isinstance(holder, types.ModuleType) and holder.__name__.startswith("_gpt_impl_"):
            return f"not observable in this implementation: its module defines no {error.name!r}"
    return None


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    report = yield
    config = item.config
    if report.failed and call.excinfo is not None and not is_own_implementation(config) \
            and not config.getoption("with_extras"):
        reason = blindness(call.excinfo)
        if reason:
            report.outcome = "skipped"
            report.longrepr = (str(item.path), (item.location[1] or 0) + 1, f"Skipped: {reason}")
    return report
