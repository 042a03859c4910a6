"""
The implementation contract, and loading an implementation of it.

An implementation is a module that exposes `GPTConfig`, `GPT`, `norm` and `apply_rotary_emb` with
nanochat's module names (`transformer.wte`, `transformer.h[i].attn.c_q/c_k/c_v/c_proj`,
`transformer.h[i].mlp.c_fc/c_proj`, `lm_head`) and buffers `cos`, `sin`. It is named either by a
dotted module name (`nanochat.gpt`) or by the path of a `.py` file.
"""

import hashlib
import importlib
import importlib.util
import sys
from pathlib import Path

DEFAULT_IMPL = "nanochat.gpt"
REQUIRED_NAMES = ("GPTConfig", "GPT", "norm", "apply_rotary_emb")


class ContractError(ValueError):
    """The named implementation cannot be loaded or does not expose the contract."""


def is_path(spec):
    return spec.endswith(".py") or "/" in spec or "\\" in spec


def load_implementation(spec=DEFAULT_IMPL):
    """Import the implementation named by `spec` (a dotted module name or a .py path) and check its names."""
    if is_path(spec):
        path = Path(spec).resolve()
        if not path.is_file():
            raise ContractError(f"--gpt-impl {spec!r}: no such file (expected a .py file or a dotted module name)")
        # a unique, stable module name per file, so two implementations can live side by side
        name = f"_gpt_impl_{path.stem}_{hashlib.sha1(str(path).encode()).hexdigest()[:10]}"
        if name not in sys.modules:
            module_spec = importlib.util.spec_from_file_location(name, path)
            module = importlib.util.module_from_spec(module_spec)
            sys.modules[name] = module  # dataclasses look their module up here
            try:
                module_spec.loader.exec_module(module)
            except Exception as e:
                del sys.modules[name]
                raise ContractError(f"--gpt-impl {spec!r}: importing it failed: {type(e).__name__}: {e}") from e
        module = sys.modules[name]
    else:
        try:
            module = importlib.import_module(spec)
        except ImportError as e:
            raise ContractError(f"--gpt-impl {spec!r}: no importable module of that name ({e})") from e
    missing = [n for n in REQUIRED_NAMES if not hasattr(module, n)]
    if missing:
        raise ContractError(f"--gpt-impl {spec!r} does not expose {', '.join(missing)} "
                            f"(the contract needs {', '.join(REQUIRED_NAMES)})")
    return module


def source_path(module):
    """The .py file an implementation module was loaded from."""
    return Path(module.__file__).resolve()
