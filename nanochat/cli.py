"""
What the command-line tools (nanochat.coverage, nanochat.mutation, nanochat.trace) and the pytest
plugin share: one-line usage errors, output paths checked before a long run, the project root, and
the fingerprint of the sources a result was computed from.

Nothing heavy is imported here (no torch, no pytest, no coverage), so that `--help` and the usage
errors of every tool work with only the package installed.
"""

import argparse
import hashlib
import os
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
PROJECT_ROOT = PACKAGE_DIR.parent  # in a source checkout: the folder of pyproject.toml and tests/


class OneLineParser(argparse.ArgumentParser):
    """argparse, except that an error is exactly one line on stderr (no usage block), exit status 2."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {' '.join(str(message).split())}\n")


def positive_float(text):
    """An argparse type: a finite number > 0 (a time limit of 0 or less would kill every run at once)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds, got {text!r}") from None
    if not (value > 0 and value != float("inf")):
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds, got {text!r}")
    return value


def unwritable(path):
    """Why a file cannot be written at `path`, or None. Checked before a long run so that it is not
    lost to a typo at the end; nothing is created (a missing folder is an error, never made silently)."""
    p = Path(path)
    if str(path) == "":
        return "is empty"
    if p.is_dir():
        return "is a directory"
    parent = p.parent if str(p.parent) else Path(".")
    if not parent.is_dir():
        return f"the folder {str(parent)!r} does not exist"
    if not os.access(parent, os.W_OK | os.X_OK) or (p.exists() and not os.access(p, os.W_OK)):
        return "is not writable"
    return None


def source_checkout_problem(tool, root=PROJECT_ROOT):
    """Why `tool` cannot run from this installation, or None. The report and the mutation runner run
    the test suite, which lives in the source checkout beside the package, not in an installed wheel."""
    if (root / "pyproject.toml").is_file() and (root / "tests").is_dir():
        return None
    return (f"{tool} needs a source checkout of nanochat-verify (tests/ and pyproject.toml beside the nanochat "
            f"package), but nanochat is installed at {PACKAGE_DIR}: clone the repository and run "
            f"`pip install -e '.[test]'` in it, then run {tool} there")


def tree_fingerprint(root=PROJECT_ROOT, extra=()):
    """A hash of the sources that decide a report: the nanochat package (model, tools, cards), the
    tests and the pytest configuration of the project at `root`, and `extra` files (an implementation
    outside the package). Outcomes and mutation results carry it, so that a report can prove they
    were computed from the tree as it is now."""
    root = Path(root)
    files = [("nanochat/" + f.relative_to(PACKAGE_DIR).as_posix(), f)
             for f in sorted(PACKAGE_DIR.glob("*.py")) + sorted(PACKAGE_DIR.glob("cards/*.toml"))]
    files += [(f"tests/{f.name}", f) for f in sorted((root / "tests").glob("*.py"))]
    files += [(name, root / name) for name in ("conftest.py", "pyproject.toml")]
    files += [(str(Path(f).resolve()), Path(f)) for f in extra]
    digest = hashlib.sha256()
    for label, f in files:
        if f.is_file():
            digest.update(label.encode() + b"\0" + f.read_bytes() + b"\0")
    return digest.hexdigest()


def file_sha256(path):
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def read_expected_failures(path):
    """{node id: note} from a findings file (pytest --expect-failures, python -m nanochat.coverage
    --expect-failures): one test node id per line, `# note` after it; blank and comment lines ignored.
    ValueError for a line that is not a node id."""
    expected = {}
    for number, line in enumerate(Path(path).read_text().splitlines(), 1):
        nodeid, _, note = line.partition("#")
        nodeid = nodeid.strip()
        if nodeid:
            if "::" not in nodeid:
                raise ValueError(f"{path}, line {number}: {nodeid!r} is not a test node id")
            expected[nodeid] = note.strip()
    return expected
