"""
A checkout's package, loaded as its own: while an implementation inside a package folder (a nanochat
checkout's `nanochat/gpt.py`) is imported, `import nanochat.X` loads that folder's X.py, and never another
`nanochat` that is installed or on the path (this project's own model, or the fork's installed copy). The
modules stay importable under an alias, so two checkouts live side by side in one process.
"""

import ast
import copy
import importlib.util
import sys
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path


class MissingFromCheckout(ModuleNotFoundError):
    """A module of the checkout's own package that the checkout does not have (`missing`: the file looked for)."""

    def __init__(self, message, name, missing):
        super().__init__(message, name=name)
        self.missing = missing


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
        raise MissingFromCheckout(f"No module named {fullname!r} in {self.package_dir}", fullname,
                                  base.with_suffix(".py"))


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


def extract_class(source_file, class_name, module_name, package=None):
    """Define one class of a module without running the rest of it (see extract_definitions); None when the
    module defines no such class."""
    extracted = extract_definitions(source_file, [class_name], module_name, package=package)
    return extracted.namespace.get(class_name) if class_name in extracted.found else None


@dataclass(frozen=True)
class Extracted:
    """What extract_definitions ran of a module, and what it left out."""
    namespace: dict  # the definitions (those asked for, and everything they use), in one module namespace
    found: tuple  # the names asked for that the module defines
    loaded: tuple  # every top-level name that was defined, in source order
    left_out: tuple  # the top-level statements not run, as one line each ("from x import y", "def f", ...)


def _bound(stmt):
    """The top-level names a statement binds (an import binds its alias, `x.y = ...` binds nothing)."""
    if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        return {stmt.name}
    if isinstance(stmt, (ast.Import, ast.ImportFrom)):
        return {(a.asname or a.name).split(".")[0] for a in stmt.names}
    if isinstance(stmt, (ast.Assign, ast.AnnAssign)):
        targets = stmt.targets if isinstance(stmt, ast.Assign) else [stmt.target]
        return {n.id for t in targets for n in ast.walk(t) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)}
    return set()


def _patched(stmt):
    """The top-level names whose attributes a statement sets (`KVCache.reset = ...` patches KVCache): such a
    statement belongs to the definition it patches."""
    if not isinstance(stmt, ast.Assign):
        return set()
    return {t.value.id for t in stmt.targets if isinstance(t, ast.Attribute) and isinstance(t.value, ast.Name)}


def _used(stmt):
    return {n.id for n in ast.walk(stmt) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)}


def _one_line(stmt):
    if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef)):
        return f"def {stmt.name}"
    if isinstance(stmt, ast.ClassDef):
        return f"class {stmt.name}"
    text = ast.unparse(stmt).splitlines()[0]
    return text if len(text) <= 100 else text[:97] + "..."


def _with_names(stmt, names):
    """A copy of an import statement that imports only `names`."""
    stmt = copy.copy(stmt)
    stmt.names = names
    return stmt


def extract_definitions(source_file, names, module_name, package=None):
    """Define some top-level names of a module without running the rest of it: the definitions of `names`, the
    top-level functions, classes, assignments and patches (`Cls.attr = ...`) they use, transitively, and the
    imports of the names they use (an import of several names keeps only the used ones). Everything else (a
    `__main__` block, the imports of a tokenizer and of checkpoint code an engine's sampler never calls) is
    not run, and is listed in `left_out`. Runs in the package's context when `package` is given."""
    source_file = Path(source_file)
    tree = ast.parse(source_file.read_text(), filename=str(source_file))
    bound = [_bound(stmt) for stmt in tree.body]
    wanted, queue, chosen = set(), list(names), set()
    while queue:
        name = queue.pop()
        if name in wanted:
            continue
        wanted.add(name)
        for i, stmt in enumerate(tree.body):
            if i not in chosen and (name in bound[i] or name in _patched(stmt)):
                chosen.add(i)
                queue.extend(_used(stmt) | _patched(stmt))
    body, left_out = [], []
    for i, stmt in enumerate(tree.body):
        if i not in chosen:
            if not (isinstance(stmt, ast.Expr) and isinstance(getattr(stmt, "value", None), ast.Constant)):
                left_out.append(_one_line(stmt))  # the module docstring is not worth a line
            continue
        if isinstance(stmt, (ast.Import, ast.ImportFrom)):
            kept = [a for a in stmt.names if (a.asname or a.name).split(".")[0] in wanted]
            dropped = [a for a in stmt.names if a not in kept]
            if dropped:
                left_out.append(_one_line(_with_names(stmt, dropped)))
                stmt = _with_names(stmt, kept)
        body.append(stmt)
    module = ast.fix_missing_locations(ast.Module(body=body, type_ignores=[]))
    namespace = {"__name__": module_name, "__file__": str(source_file)}
    code = compile(module, str(source_file), "exec")
    if package is None:
        exec(code, namespace)
    else:
        with warnings.catch_warnings(), package_context(*package):
            warnings.simplefilter("ignore")
            exec(code, namespace)
    loaded = tuple(n for stmt in body if not isinstance(stmt, (ast.Import, ast.ImportFrom))
                   for n in sorted(_bound(stmt)))
    return Extracted(namespace, tuple(n for n in names if any(n in b for b in bound)), loaded, tuple(left_out))
