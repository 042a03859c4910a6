"""
The mutant catalog: one TOML file per component of the table (nanochat_verify/components.py), each a list of
`[[mutant]]` tables, the deliberate bugs the suite must catch. Every edit anchors on code of nanochat/gpt.py, or
of nanochat/engine.py for a mutant with `module = "engine"` (never on a comment or a docstring), and no two mutants
make the same change (tests/test_mutation.py checks both). How the catalog grew, round by round, is told in docs/mutation-rounds.md.

    [[mutant]]
    name = "mlp_relu"                      # short snake_case, unique
    breaks = "mlp.relu2"                   # the component key or sub-component ID it breaks
    bug = "plain ReLU instead of ReLU squared"   # one line, as a reviewer would say it
    edits = [['x = F.relu(x).square()', 'x = F.relu(x)']]   # exact texts, each found once at its step
    # or: append = '''...'''              an override that rebinds a contract name (norm, apply_rotary_emb,
    #                                       GPT.forward...) to a broken wrapper: it applies to any implementation
    # flags: equivalent (with the argument in `bug`, starting "equivalent: "), own_only (breaks an extra of
    # this project's model, or overrides its own code: the internals of its engine's caches), needs_cuda,
    # needs_bf16_tables, card_values (the edits are templates of the card's values: {softcap!r},
    # {softcap_doubled!r}, {rope_base:g})
    # module = "engine": the edits and the append apply to the engine.py beside gpt.py (its KV cache, sampler and
    # Engine; an append there patches them, e.g. `KVCache.reset = _broken_reset`)

Check a new entry with `python -m nanochat_verify.mutation --diff NAME`, then `--only NAME`.
"""

import sys
from pathlib import Path

from nanochat_verify.components import ALL
from nanochat_verify.mutation.mutant import MODULES, Mutant

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

CATALOG_DIR = Path(__file__).resolve().parent
KEYS = {"name", "breaks", "bug", "edits", "append", "equivalent", "own_only", "needs_cuda", "needs_bf16_tables",
        "card_values", "module"}


class CatalogFileError(ValueError):
    """A catalog file that cannot be read as mutants."""


def read_catalog_file(path):
    """The Mutants of one catalog file, in its order."""
    try:
        entries = tomllib.loads(Path(path).read_text()).get("mutant", [])
    except (OSError, tomllib.TOMLDecodeError) as e:
        raise CatalogFileError(f"{path}: {e}") from None
    mutants = []
    for number, entry in enumerate(entries, 1):
        unknown = sorted(set(entry) - KEYS)
        if unknown or not {"name", "breaks", "bug"} <= set(entry):
            raise CatalogFileError(f"{path}: mutant {number} ({entry.get('name', '?')}): needs name, breaks and bug"
                                   + (f"; unknown key(s) {', '.join(unknown)}" if unknown else ""))
        if entry.get("module", "gpt") not in MODULES:
            raise CatalogFileError(f"{path}: mutant {number} ({entry['name']}): module = {entry['module']!r}; "
                                   f"expected one of {', '.join(MODULES)}")
        mutants.append(Mutant(entry["name"], entry["breaks"], entry["bug"],
                              tuple(tuple(edit) for edit in entry.get("edits", ())), entry.get("append", ""),
                              *(bool(entry.get(flag, False)) for flag in
                                ("equivalent", "own_only", "needs_cuda", "needs_bf16_tables", "card_values")),
                              entry.get("module", "gpt")))
    return mutants


def component_files():
    """The catalog's files, in the order of the component table."""
    return [CATALOG_DIR / f"{c.key}.toml" for c in ALL if (CATALOG_DIR / f"{c.key}.toml").is_file()]


MUTANTS = tuple(m for path in component_files() for m in read_catalog_file(path))
BY_NAME = {m.name: m for m in MUTANTS}
