"""
The implementation contract, and loading an implementation of it.

An implementation is a module that exposes `GPTConfig`, `GPT`, `norm` and `apply_rotary_emb` with
nanochat's module names (`transformer.wte`, `transformer.h[i].attn.c_q/c_k/c_v/c_proj`,
`transformer.h[i].mlp.c_fc/c_proj`, `lm_head`), buffers `cos`, `sin`, `init_weights()` and
`forward(idx, targets=None, kv_cache=None, loss_reduction='mean')`. `--gpt-impl` names it as

- a dotted module name (`nanochat.gpt`);
- the path of a `.py` file. A file inside a package folder (a folder with `__init__.py`, such as a
  nanochat checkout's `nanochat/gpt.py`) is loaded with its package: its `from nanochat.X import ...`
  resolve to the modules of that folder, never to this project's `nanochat`;
- the root of a nanochat checkout (a folder holding `nanochat/gpt.py`).

The KV cache is part of the contract through `CacheAdapter`: the inference tests use the cache of the
implementation under test when its package has one (`engine.KVCache`, read out of `engine.py` without
importing the rest of that module), else the implementation module's own `KVCache`, else this
project's. Two styles are understood:

- insert_kv (nanochat a088b7a, this project): `KVCache(batch_size, num_heads, seq_len, head_dim,
  num_layers)`; attention calls `insert_kv(layer_idx, k, v)` and gets the whole prefix back; the
  position advances after the last layer's insert;
- flash (nanochat 92d63d4): `KVCache(..., num_layers, device, dtype)` with `k_cache`/`v_cache` of
  shape (L, B, T, H, D), `get_layer_cache(layer_idx)`, `cache_seqlens`, `advance(T)`.

Both offer `get_pos()` and `reset()`.
"""

import ast
import hashlib
import importlib
import importlib.util
import inspect
import keyword
import sys
import warnings
from contextlib import contextmanager
from pathlib import Path

DEFAULT_IMPL = "nanochat.gpt"
REQUIRED_NAMES = ("GPTConfig", "GPT", "norm", "apply_rotary_emb")
OWN_IMPL_PATH = Path(__file__).resolve().with_name("gpt.py")
OWN_PACKAGE = __name__.split(".")[0]


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


def load_implementation(spec=DEFAULT_IMPL):
    """Import the implementation named by `spec` and check that it exposes the contract's names."""
    if not isinstance(spec, str) or not spec.strip():
        raise ContractError(f"--gpt-impl {spec!r}: empty; expected a .py file, a nanochat checkout folder "
                            f"or a dotted module name")
    if is_path(spec):
        path = resolve_path(spec)
        module = _import_own() if path == OWN_IMPL_PATH else _import_file(spec, path)
    else:
        if not all(part.isidentifier() and not keyword.iskeyword(part) for part in spec.split(".")):
            raise ContractError(f"--gpt-impl {spec!r}: not a dotted module name, and no such file")
        module = _guarded(spec, lambda: importlib.import_module(spec))
    missing = [n for n in REQUIRED_NAMES if not hasattr(module, n)]
    if missing:
        raise ContractError(f"--gpt-impl {spec!r} does not expose {', '.join(missing)} "
                            f"(the contract needs {', '.join(REQUIRED_NAMES)})")
    return module


def _import_own():
    return importlib.import_module(f"{OWN_PACKAGE}.gpt")


def _guarded(spec, load):
    """Run an import, turning whatever goes wrong (sys.exit included) into one ContractError."""
    try:
        return load()
    except ContractError:
        raise
    except ModuleNotFoundError as e:
        raise ContractError(f"--gpt-impl {spec!r}: no importable module of that name ({e})") from None
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
            # a foreign package's import-time warnings (deprecations in its dependencies) are not
            # the implementation's behaviour, and must not fail a run under -W error
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


class _CheckoutFinder:
    """Finds `<package>.X` in a checkout's package folder, and nowhere else: a module the checkout does not
    have must not quietly come from this project's package of the same name (an editable install's
    finder would hand it out)."""

    def __init__(self, name, package_dir):
        self.name, self.package_dir = name, Path(package_dir)

    def find_spec(self, fullname, path=None, target=None):
        if not fullname.startswith(self.name + "."):
            return None
        parts = fullname.split(".")[1:]
        base = self.package_dir.joinpath(*parts)
        if (base / "__init__.py").is_file():
            return importlib.util.spec_from_file_location(fullname, base / "__init__.py",
                                                          submodule_search_locations=[str(base)])
        if base.with_suffix(".py").is_file():
            return importlib.util.spec_from_file_location(fullname, base.with_suffix(".py"))
        raise ModuleNotFoundError(f"No module named {fullname!r} in {self.package_dir}", name=fullname)


@contextmanager
def package_context(package_dir, alias):
    """While the block runs, `import <package>.X` (package = the folder's name) loads package_dir/X.py.

    This project's own modules of the same name are set aside and put back afterwards; the modules
    loaded from package_dir stay importable under `alias.X` (so a second checkout gets its own)."""
    package_dir = Path(package_dir)
    name = package_dir.name
    ours = {k: sys.modules.pop(k) for k in list(sys.modules) if k == name or k.startswith(name + ".")}
    finder = _CheckoutFinder(name, package_dir)
    sys.meta_path.insert(0, finder)
    try:
        if alias in sys.modules:  # loaded before: reuse those modules
            sys.modules.update({name + k[len(alias):]: m for k, m in sys.modules.items()
                                if k == alias or k.startswith(alias + ".")})
        else:
            init = importlib.util.spec_from_file_location(name, package_dir / "__init__.py",
                                                          submodule_search_locations=[str(package_dir)])
            package = importlib.util.module_from_spec(init)
            sys.modules[name] = package
            init.loader.exec_module(package)
        yield
    finally:
        sys.meta_path.remove(finder)
        loaded = {k: sys.modules.pop(k) for k in list(sys.modules) if k == name or k.startswith(name + ".")}
        sys.modules.update({alias + k[len(name):]: m for k, m in loaded.items()})
        sys.modules.update(ours)


def source_path(module):
    """The .py file an implementation module was loaded from."""
    return Path(module.__file__).resolve()


def package_dir(module):
    """The package folder an implementation was loaded with (a checkout's nanochat/), or None."""
    context = getattr(module, "__nanochat_package__", None)
    if context:
        return context[0]
    if source_path(module) == OWN_IMPL_PATH:
        return OWN_IMPL_PATH.parent
    return None


# ---- the KV cache ---------------------------------------------------------------------------------

def extract_class(source_file, class_name, module_name, package=None):
    """Define one class of a module without running the rest of it: the class plus the top-level
    imports its body names (engine.py of nanochat imports a tokenizer and checkpoint code that a KV
    cache does not need)."""
    tree = ast.parse(Path(source_file).read_text(), filename=str(source_file))
    node = next((n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == class_name), None)
    if node is None:
        return None
    used = {n.id for n in ast.walk(node) if isinstance(n, ast.Name)}
    imports = []
    for stmt in tree.body:
        if isinstance(stmt, (ast.Import, ast.ImportFrom)):
            bound = {(a.asname or a.name).split(".")[0] for a in stmt.names}
            if bound & used:
                imports.append(stmt)
    module = ast.Module(body=[*imports, node], type_ignores=[])
    namespace = {"__name__": module_name, "__file__": str(source_file)}
    code = compile(module, str(source_file), "exec")
    if package is None:
        exec(code, namespace)
    else:
        with warnings.catch_warnings(), package_context(*package):
            warnings.simplefilter("ignore")
            exec(code, namespace)
    return namespace[class_name]


def cache_class(impl):
    """The KV cache class the implementation under test is used with (see the module docstring)."""
    context = getattr(impl, "__nanochat_package__", None)
    if context:
        engine = Path(context[0]) / "engine.py"
        if engine.is_file():
            cls = extract_class(engine, "KVCache", f"{context[1]}.engine", package=context)
            if cls is not None:
                return cls
    if hasattr(impl, "KVCache"):
        return impl.KVCache
    from nanochat.engine import KVCache
    return KVCache


def flash_cache_class(impl):
    """A flash-attention-style cache class for this implementation: its own KVCache if that is
    flash-style, else a FlashKVCache of its module, else this project's."""
    cls = cache_class(impl)
    if hasattr(cls, "get_layer_cache"):
        return cls
    if hasattr(impl, "FlashKVCache"):
        return impl.FlashKVCache
    from nanochat.engine import FlashKVCache
    return FlashKVCache


class CacheAdapter:
    """The KV cache of an implementation, seen through one small interface by the tests."""

    def __init__(self, cls):
        self.cls = cls
        self.style = "flash" if hasattr(cls, "get_layer_cache") else "insert_kv"

    @classmethod
    def of(cls, impl, flash=False):
        return cls(flash_cache_class(impl) if flash else cache_class(impl))

    def new(self, batch_size, num_heads, seq_len, head_dim, num_layers, *, device="cpu", dtype=None):
        """A cache of the implementation's class; device and dtype go to classes that take them."""
        import torch
        params = inspect.signature(self.cls).parameters
        kwargs = {}
        if "device" in params:
            kwargs["device"] = device
        if "dtype" in params:
            kwargs["dtype"] = dtype or torch.float32
        return self.cls(batch_size, num_heads, seq_len, head_dim, num_layers, **kwargs)

    def for_config(self, config, batch_size, seq_len, **kwargs):
        return self.new(batch_size, config.n_kv_head, seq_len, config.n_embd // config.n_head, config.n_layer, **kwargs)

    @staticmethod
    def pos(cache):
        return int(cache.get_pos())

    def tensors(self, cache):
        """The (keys, values) storage, laid out (L, B, H_kv, T, D) whatever the style; None before use."""
        if self.style == "flash":
            return cache.k_cache.transpose(2, 3), cache.v_cache.transpose(2, 3)
        if cache.kv_cache is None:
            return None
        return cache.kv_cache[:, 0], cache.kv_cache[:, 1]

    def nbytes(self, cache):
        kv = self.tensors(cache)
        return 0 if kv is None else sum(t.numel() * t.element_size() for t in kv)

    def kv_heads(self, cache):
        return self.tensors(cache)[0].size(2)

    @contextmanager
    def recording(self, cache):
        """Record, in order, the layer index of every attention layer's access to the cache."""
        method = "get_layer_cache" if self.style == "flash" else "insert_kv"
        original = getattr(cache, method)
        calls = []

        def record(layer_idx, *args, **kwargs):
            calls.append(layer_idx)
            return original(layer_idx, *args, **kwargs)

        setattr(cache, method, record)
        try:
            yield calls
        finally:
            delattr(cache, method)
