"""
The implementation contract: loading any implementation (loading.py), its package as its own (packages.py),
its engine (engine.py: the KV cache, the sampler and the Engine of its engine.py, without the rest of that
module) and its KV cache through one small interface (cache.py). See ../shared/SPEC.md, "Conformance".
"""

from nanochat_verify.contract.cache import CacheAdapter, NoCache, cache_class, flash_cache_class
from nanochat_verify.contract.engine import EngineModule, NoEngineName, engine_of
from nanochat_verify.contract.interface import InterfaceDiffers
from nanochat_verify.contract.loading import (REQUIRED_NAMES, ContractError, is_path, load_implementation,
                                              package_context_of, resolve_path, source_path)

__all__ = ["CacheAdapter", "InterfaceDiffers", "NoCache", "cache_class", "flash_cache_class", "EngineModule",
           "NoEngineName", "engine_of", "REQUIRED_NAMES", "ContractError", "is_path", "load_implementation",
           "package_context_of", "resolve_path", "source_path"]
