"""
A checkout's package, loaded as its own: while an implementation inside a package folder (a nanochat
checkout's `nanochat/gpt.py`) is imported, `import nanochat.X` loads that folder's X.py, and never another
`nanochat` that is installed or on the path (this project's own model, or the fork's installed copy). The
modules stay importable under an alias, so two checkouts live side by side in one process.
"""

import ast
import importlib.util
import sys
import warnings
from contextlib import contextmanager
from pathlib import Path


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


