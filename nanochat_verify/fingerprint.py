"""
The fingerprint of the sources a result was computed from: outcomes and mutation results carry it, so that a
report can prove they belong to the tree as it is now.
"""

import hashlib
import sys
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

from nanochat_verify.paths import KIT_DIR, SUITE_DIR


def _files(folder, patterns):
    folder = Path(folder)
    return [f for pattern in patterns for f in sorted(folder.glob(pattern)) if f.is_file()]


def project_testpaths(root):
    """The test folders of the project at `root`: its pytest testpaths (default tests/) that exist."""
    try:
        ini = tomllib.loads((Path(root) / "pyproject.toml").read_text())["tool"]["pytest"]["ini_options"]
        paths = list(ini.get("testpaths", ["tests"]))
    except (OSError, KeyError, TypeError, ValueError):
        paths = ["tests"]
    return [Path(root) / p for p in paths if (Path(root) / p).is_dir()]


def tree_fingerprint(implementation_files=(), root=None):
    """A hash of what decides a result: the kit (its modules and cards), the suite, the pytest configuration and
    test folders of the project at `root`, and the implementation's own files (its package's modules, or the
    one file)."""
    labelled = [(f"kit/{f.relative_to(KIT_DIR).as_posix()}", f) for f in _files(KIT_DIR, ("**/*.py", "cards/*.toml"))
                if SUITE_DIR not in f.parents]
    labelled += [(f"suite/{f.relative_to(SUITE_DIR).as_posix()}", f)
                 for f in _files(SUITE_DIR, ("*.py", "findings/*.txt"))]
    if root is not None:
        labelled += [(name, Path(root) / name) for name in ("conftest.py", "pyproject.toml")]
        labelled += [(f"project/{f.relative_to(root).as_posix()}", f) for folder in project_testpaths(root)
                     if folder.resolve() != SUITE_DIR.resolve() for f in _files(folder, ("**/*.py",))]
    labelled += [(str(Path(f).resolve()), Path(f)) for f in sorted(set(map(Path, implementation_files)))]
    digest = hashlib.sha256()
    for label, f in labelled:
        if f.is_file():
            digest.update(label.encode() + b"\0" + f.read_bytes() + b"\0")
    return digest.hexdigest()


def implementation_files(source_file):
    """The files an implementation is made of: every module of its package folder, or the file alone."""
    source_file = Path(source_file).resolve()
    if (source_file.parent / "__init__.py").is_file():
        return sorted(source_file.parent.glob("*.py"))
    return [source_file]


def file_sha256(path):
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()
