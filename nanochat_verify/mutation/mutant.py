"""
A mutant: one small, deliberate, realistic bug in a contract implementation. The catalog
(nanochat_verify/mutation/catalog/) holds them by component; runner.py says how they are run.

A mutant is applied to the *source text* of one module of an implementation (`module`: "gpt", the default,
or "engine", the engine.py beside it in its package), in one or both of two ways:

- `edits`: exact-text substitutions `(old, new)`, applied in order. Each `old` must occur exactly
  once in the text at that point, else the mutant does not apply (`NotApplicable`): a catalog bug
  for the project's own nanochat/gpt.py, "not applicable" for another implementation. With
  `card_values`, the texts are templates filled with the architecture card's values (`{softcap!r}`,
  `{rope_base:g}`...), so that a mutant such as "the softcap doubled" follows the card when the
  architecture changes on purpose.
- `append`: source appended to the copy. It rebinds contract names (`norm`, `apply_rotary_emb`,
  `GPT.forward`, `GPT.__init__`) to broken wrappers of the originals, so it works on any
  implementation whose code looks those names up at call time.

An `equivalent` mutant changes the text but not the behaviour: no test of the contract can tell it
apart from the original. It is listed (with the argument in its description) so the claim stays
visible, and it is excluded from the score instead of being counted as a survivor.
"""

import re
import textwrap
from dataclasses import dataclass


class NotApplicable(Exception):
    """The mutant's target text is not in this implementation (or not exactly once)."""


@dataclass(frozen=True)
class Mutant:
    name: str  # short snake_case
    target: str  # component key or sub-component ID of nanochat/components.py that the bug breaks
    description: str  # one line: the bug as a reviewer would describe it (for equivalents: why)
    edits: tuple[tuple[str, str], ...] = ()
    append: str = ""
    equivalent: bool = False
    own_only: bool = False  # breaks a project extra (its ValueErrors) or our own code: not for other implementations
    needs_cuda: bool = False  # only observable on a CUDA device (e.g. a tensor made on the CPU): not run without one
    needs_bf16_tables: bool = False  # only a bug where the card keeps the rotary tables in bfloat16
    card_values: bool = False  # the edit texts are templates of the card's values (see card_values())
    module: str = "gpt"  # the module of the implementation's package the mutant edits: gpt (gpt.py) or engine

    @property
    def file_name(self):
        return f"{self.module}.py"

    def missing_names(self, source):
        """Top-level names the `append` override uses that neither it nor `source` defines (an override of
        this project's KVCache means nothing to an implementation without one)."""
        if not self.append:
            return []
        import ast
        import builtins

        def defined(tree):
            names = set()
            for node in tree.body:
                if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                    names.add(node.name)
                elif isinstance(node, (ast.Import, ast.ImportFrom)):
                    names |= {(a.asname or a.name).split(".")[0] for a in node.names}
                elif isinstance(node, (ast.Assign, ast.AnnAssign, ast.AugAssign)):
                    # `x = ...` defines x; `KVCache.reset = ...` defines nothing, it needs KVCache
                    targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                    names |= {n.id for t in targets for n in ast.walk(t)
                              if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)}
            return names

        tree, override = ast.parse(source), ast.parse(self.append)
        available = defined(tree) | defined(override) | set(dir(builtins))
        used = {n.id for stmt in override.body if not isinstance(stmt, (ast.FunctionDef, ast.ClassDef))
                for n in ast.walk(stmt) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)}
        # `GPT._smear = ...` replaces a method: in an implementation whose GPT has no _smear it changes nothing
        classes = {node.name: {n.name for n in node.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))}
                   for node in tree.body if isinstance(node, ast.ClassDef)}
        rebound = {f"{t.value.id}.{t.attr}" for stmt in override.body if isinstance(stmt, ast.Assign)
                   for t in stmt.targets if isinstance(t, ast.Attribute) and isinstance(t.value, ast.Name)
                   and t.value.id in classes and t.attr not in classes[t.value.id]}
        return sorted((used - available) | rebound)

    @property
    def component(self):
        return self.target.split(".", 1)[0]

    @property
    def mechanism(self):
        return " + ".join(m for m, used in (("edit", self.edits), ("override", self.append)) if used)

    def texts(self, card=None):
        """The edits as exact texts: templates filled with the card's values (default: the default card)."""
        if not self.card_values:
            return self.edits
        if card is None:
            from nanochat_verify.card import load_card
            card = load_card()
        values = card_values(card)
        return tuple((old.format(**values), new.format(**values)) for old, new in self.edits)

    def apply(self, source, card=None):
        """The mutated source; NotApplicable if an edit's target text is not found exactly once.
        `card`: the architecture the texts are written for (default: the default card)."""
        for i, (old, new) in enumerate(self.texts(card), 1):
            count = source.count(old)
            if count != 1:
                where = "not found" if count == 0 else f"found {count} times"
                raise NotApplicable(f"mutant {self.name}: edit {i} of {len(self.edits)}: target text {where}: "
                                    f"{_first_line(old)!r}")
            source = source.replace(old, new)
        if self.append:
            # a trailing block, headed by what it does, so a kept copy reads as documentation
            source = source.rstrip("\n") + f"\n\n\n# --- mutant {self.name}: {self.description}\n{self.append}"
        return source


def card_values(card):
    """The values an edit template may name: the card's, and what a mutant derives from them."""
    return {"softcap": card.softcap, "softcap_doubled": 2 * card.softcap, "rope_base": card.rope_base}


def _first_line(text):
    line = text.strip().splitlines()[0] if text.strip() else text
    return line if len(line) <= 80 else line[:77] + "..."


def _code(text):
    """An appended override, written indented in the catalog for readability."""
    return textwrap.dedent(text).lstrip("\n")


def M(name, target, description, *edits, append="", equivalent=False, own_only=False, needs_cuda=False,
      needs_bf16_tables=False, card_values=False, module="gpt"):
    """A mutant written in Python (the tests' probes; the catalog itself is TOML)."""
    return Mutant(name, target, description, tuple(edits), _code(append) if append else "", equivalent, own_only,
                  needs_cuda, needs_bf16_tables, card_values, module)


MODULES = ("gpt", "engine")  # the modules of a nanochat package a mutant may edit


NAME_PATTERN = re.compile(r"^[a-z][a-z0-9]*(_[a-z0-9]+)*$")
