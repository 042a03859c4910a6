"""
Loading an implementation of the contract.

An implementation is a module that exposes `GPTConfig`, `GPT`, `norm` and `apply_rotary_emb` with
nanochat's module names (`transformer.wte`, `transformer.h[i].attn.c_q/c_k/c_v/c_proj`,
`transformer.h[i].mlp.c_fc/c_proj`, `lm_head`), buffers `cos`, `sin`, `init_weights()` and
`forward(idx, targets=None, kv_cache=None, loss_reduction='mean')`. `--gpt-impl` names it as

- the root of a nanochat checkout (a folder holding `nanochat/gpt.py`), this project's included;
- the path of a `.py` file. A file inside a package folder (a folder with `__init__.py`, such as a
  checkout's `nanochat/gpt.py`) is loaded with its package: its `from nanochat.X import ...` resolve to the
  modules of that folder (see packages.py), never to another `nanochat` that is installed or on the path;
- a dotted module name.

Importing it has a time limit (`timeout`, default 60 s; the tools' --import-timeout, or `import-timeout` in
[tool.nanochat-verify]): a module whose import never returns is a ContractError naming the limit, not a run
that hangs before its first test (pytest-timeout's limits start with the tests).
"""

import functools
import hashlib
import importlib
import importlib.util
import keyword
import signal
import sys
import threading
import time
import warnings
from pathlib import Path

from nanochat_verify.contract.packages import MissingFromCheckout, package_context
from nanochat_verify.options import DEFAULT_IMPORT_TIMEOUT

# the names without which nothing can be verified; `norm` and `apply_rotary_emb`, which the contract also names,
# are verified where they exist (a fork with RMSNorm modules and no norm function is still verified)
REQUIRED_NAMES = ("GPTConfig", "GPT")


class ContractError(ValueError):
    """The named implementation cannot be loaded or does not expose the contract."""


def is_path(spec):
    return spec.endswith(".py") or "/" in spec or "\\" in spec or spec.startswith(".") or Path(spec).is_dir()


def resolve_path(spec):
    """The gpt .py file a path names: the file itself, or the nanochat/gpt.py of a checkout root."""
    path = Path(spec).expanduser()
    if path.is_dir():
        for candidate in (path / "nanochat" / "gpt.py", path / "gpt.py"):
            if candidate.is_file():
                return candidate.resolve()
        raise ContractError(f"--gpt-impl {spec!r}: no such file: that is a directory without nanochat/gpt.py "
                            f"(expected a .py file, a nanochat checkout or a dotted module name)")
    if not path.is_file():
        raise ContractError(f"--gpt-impl {spec!r}: no such file (expected a .py file, a nanochat checkout "
                            f"or a dotted module name)")
    if path.suffix != ".py":
        raise ContractError(f"--gpt-impl {spec!r}: not a .py file")
    return path.resolve()


def load_implementation(spec, timeout=DEFAULT_IMPORT_TIMEOUT, limit_option="--import-timeout"):
    """Import the implementation named by `spec` within `timeout` seconds (None: no limit; `limit_option` sets
    it) and check that it exposes the contract's names."""
    if not isinstance(spec, str) or not spec.strip():
        raise ContractError(f"--gpt-impl {spec!r}: empty; expected a .py file, a nanochat checkout folder "
                            f"or a dotted module name")
    if is_path(spec):
        load = functools.partial(_import_file, spec, resolve_path(spec))
    else:
        if not all(part.isidentifier() and not keyword.iskeyword(part) for part in spec.split(".")):
            raise ContractError(f"--gpt-impl {spec!r}: not a dotted module name, and no such file")
        load = functools.partial(_guarded, spec, functools.partial(importlib.import_module, spec))
    try:
        module = within(timeout, load)
    except _Overran:
        raise ContractError(f"--gpt-impl {spec!r}: importing it did not finish within {timeout:g} s (an import "
                            f"that never returns?); allow more time with {limit_option} SECONDS") from None
    missing = [n for n in REQUIRED_NAMES if not hasattr(module, n)]
    if missing:
        raise ContractError(f"--gpt-impl {spec!r} does not expose {', '.join(missing)} "
                            f"(the contract needs {', '.join(REQUIRED_NAMES)})")
    return module


class _Overran(BaseException):
    """Raised inside an import that ran past its time limit: a BaseException, so that the module's own
    `except Exception` cannot swallow it."""


def within(seconds, call):
    """call(), stopped with _Overran after `seconds` (None: no limit). On the main thread of a POSIX system a
    timer signal interrupts it where it is; elsewhere it runs in a thread of its own that is left behind."""
    if seconds is None:
        return call()
    if threading.current_thread() is threading.main_thread() and hasattr(signal, "setitimer"):
        return _within_timer(seconds, call)
    return _within_thread(seconds, call)


def _within_timer(seconds, call):
    outer, interval = signal.getitimer(signal.ITIMER_REAL)
    if outer and outer <= seconds:
        return call()  # a limit already running (pytest-timeout's, inside a test) ends sooner: it stays in charge

    def overran(signum, frame):
        raise _Overran()

    previous = signal.signal(signal.SIGALRM, overran)
    started = time.monotonic()
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        return call()
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous if previous is not None else signal.SIG_DFL)
        if outer:  # give the outer limit back what is left of it
            signal.setitimer(signal.ITIMER_REAL, max(outer - (time.monotonic() - started), 1e-3), interval)


def _within_thread(seconds, call):
    outcome = {}

    def run():
        try:
            outcome["value"] = call()
        except BaseException as e:  # noqa: BLE001 - handed to the caller
            outcome["error"] = e

    worker = threading.Thread(target=run, name="nanochat-verify import", daemon=True)
    worker.start()
    worker.join(seconds)
    if worker.is_alive():
        raise _Overran()
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


def _guarded(spec, load):
    """Run an import, turning whatever goes wrong (sys.exit included) into one ContractError."""
    try:
        return load()
    except ContractError:
        raise
    except MissingFromCheckout as e:
        raise ContractError(f"--gpt-impl {spec!r}: it imports {e.name!r}, which the checkout does not have "
                            f"(no {e.missing})") from None
    except ModuleNotFoundError as e:
        if e.name and (spec == e.name or spec.startswith(e.name + ".")):
            raise ContractError(f"--gpt-impl {spec!r}: no importable module of that name ({e})") from None
        raise ContractError(f"--gpt-impl {spec!r}: importing it needs the module {e.name!r}, which is not "
                            f"installed ({e})") from None
    except SyntaxError as e:
        raise ContractError(f"--gpt-impl {spec!r}: importing it failed: SyntaxError: {e.msg} "
                            f"({e.filename}, line {e.lineno})") from None
    except SystemExit as e:
        raise ContractError(f"--gpt-impl {spec!r}: importing it called sys.exit({e.code!r})") from None
    except Exception as e:  # noqa: BLE001 - any error of foreign code at import time
        raise ContractError(f"--gpt-impl {spec!r}: importing it failed: {type(e).__name__}: {e}") from None


def _alias(path):
    return f"_gpt_impl_{path.stem}_{hashlib.sha1(str(path).encode()).hexdigest()[:10]}"


def _import_file(spec, path):
    """Load a .py file under a unique, stable module name, so two implementations live side by side.
    A file in a package folder is loaded with that package in place (see package_context)."""
    name = _alias(path)
    if name in sys.modules:
        return sys.modules[name]
    package_dir = path.parent if (path.parent / "__init__.py").is_file() else None

    def load():
        module_spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(module_spec)
        module.__nanochat_package__ = (package_dir, f"{name}_pkg") if package_dir else None
        sys.modules[name] = module  # dataclasses look their module up here
        try:
            # an implementation's import-time warnings (deprecations in its dependencies) are not
            # its behaviour, and must not fail a run under -W error
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                if package_dir is None:
                    module_spec.loader.exec_module(module)
                else:
                    with package_context(package_dir, f"{name}_pkg"):
                        module_spec.loader.exec_module(module)
        except BaseException:
            sys.modules.pop(name, None)
            raise
        return module

    return _guarded(spec, load)


def source_path(module):
    """The .py file an implementation module was loaded from."""
    return Path(module.__file__).resolve()


def package_context_of(module):
    """(package folder, alias) an implementation was loaded with (a checkout's nanochat/), or None."""
    return getattr(module, "__nanochat_package__", None)
