"""
The engine of an implementation, loaded as it is: what the suite verifies around the forward pass.

nanochat keeps its inference code in `engine.py` beside `gpt.py`: `KVCache` (with `prefill`, which copies a
batch-1 prefill into the cache of n samples), `sample_next_token(logits, rng, temperature, top_k)` and
`Engine(model, tokenizer)` with `generate` and `generate_batch`. That module also imports the tokenizer and the
checkpoint manager, which the sampler and the cache never use (and which need files and packages a test run
does not have), so it is not imported: the names the suite verifies are defined from its source with the
top-level definitions and imports they use and nothing else (packages.extract_definitions), in the
checkout's own package, all in one namespace (Engine.generate calls the very sample_next_token and KVCache
that are verified). What was left out is listed (`left_out`), and the suite prints it in its header.

An implementation without an engine.py (a single file) offers what its own module defines.
"""

from dataclasses import dataclass
from pathlib import Path

from nanochat_verify.contract.loading import package_context_of, source_path
from nanochat_verify.contract.packages import extract_definitions

ENGINE_NAMES = ("KVCache", "FlashKVCache", "sample_next_token", "Engine")


class NoEngineName(LookupError):
    """The implementation's engine does not define a name the suite verifies."""


@dataclass(frozen=True)
class EngineModule:
    """The names of ENGINE_NAMES an implementation's engine defines, and where they came from."""
    where: str  # "nanochat/engine.py of <checkout>" or "the module <file>"
    definitions: dict  # name -> the object, for the names of ENGINE_NAMES it defines
    left_out: tuple = ()  # top-level statements of engine.py that were not run
    errors: tuple = ()  # names whose definitions could not be run, with the error

    def has(self, name):
        return name in self.definitions

    def get(self, name):
        """The definition, or NoEngineName saying that the implementation does not have it."""
        if name not in self.definitions:
            why = next((e for e in self.errors if e.startswith(f"{name}: ")), None)
            raise NoEngineName(f"{self.where} defines no {name}" + (f" that can be run ({why})" if why else ""))
        return self.definitions[name]

    def describe(self):
        """One line for the suite's header: what was loaded, and what was not run."""
        text = f"engine: {self.where}: {', '.join(self.definitions) or 'nothing the suite verifies'}"
        if self.left_out:
            text += f"; not run (unused by these): {'; '.join(self.left_out)}"
        if self.errors:
            text += f"; failed: {'; '.join(self.errors)}"
        return text


_LOADED = {}


def engine_of(impl):
    """The EngineModule of an implementation module (loaded once per implementation)."""
    key = id(impl)
    if key not in _LOADED:
        _LOADED[key] = (impl, _load(impl))  # the module is kept, so its id is never reused
    return _LOADED[key][1]


def engine_file(impl):
    """The engine.py beside the implementation's gpt.py in its package, or None."""
    context = package_context_of(impl)
    if context and (Path(context[0]) / "engine.py").is_file():
        return Path(context[0]) / "engine.py"
    return None


def _load(impl):
    path = engine_file(impl)
    if path is None:
        found = {n: getattr(impl, n) for n in ENGINE_NAMES if hasattr(impl, n)}
        return EngineModule(f"the module {source_path(impl).name} (no engine.py beside it)", found)
    package_dir, alias = package_context_of(impl)
    where = f"{path.parent.name}/engine.py of {path.parent.parent}"

    def extract(names):
        return extract_definitions(path, names, f"{alias}.engine", package=(package_dir, alias))

    try:
        extracted = extract(list(ENGINE_NAMES))
        found = {n: extracted.namespace[n] for n in extracted.found}
        return EngineModule(where, found, extracted.left_out)
    except Exception:  # noqa: BLE001 - foreign code: find which of the names fails, keep the others
        pass
    found, errors, left_out = {}, [], ()
    for name in ENGINE_NAMES:
        try:
            extracted = extract([name])
        except Exception as e:  # noqa: BLE001
            errors.append(f"{name}: {type(e).__name__}: {e}")
            continue
        if name in extracted.found:
            found[name] = extracted.namespace[name]
            left_out = extracted.left_out
    return EngineModule(where, found, left_out, tuple(errors))
