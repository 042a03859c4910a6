"""
Where things are, declared once: the kit's own folders, the source checkout it may run from, the suite,
this project's own model, and the folder a checkout keeps the kit's records in.

Nothing heavy is imported here, so that every tool's `--help` and usage errors work with the kit alone.
"""

from pathlib import Path

KIT_DIR = Path(__file__).resolve().parent
CARDS_DIR = KIT_DIR / "cards"
DISTRIBUTION = "nanochat-verify"


def _source_checkout():
    """The kit's source checkout (this project: pyproject.toml of nanochat-verify and tests/ beside the kit),
    or None for an installed kit."""
    root = KIT_DIR.parent
    pyproject = root / "pyproject.toml"
    if (root / "tests" / "conftest.py").is_file() and pyproject.is_file() and \
            f'name = "{DISTRIBUTION}"' in pyproject.read_text(errors="replace"):
        return root
    return None


SOURCE_ROOT = _source_checkout()
# the suite: tests/ of the checkout, or the same files installed as nanochat_verify/suite
SUITE_DIR = SOURCE_ROOT / "tests" if SOURCE_ROOT else KIT_DIR / "suite"
# this project's own model, whose extras (project_only tests) and tools (tooling tests) the suite also verifies
OWN_MODEL = SOURCE_ROOT / "nanochat" / "gpt.py" if SOURCE_ROOT else None
# a checkout's records of the kit's runs: outcomes, mutation results, fork reports
STATE_DIR_NAME = ".nanochat-verify"


def state_dir(root):
    return Path(root) / STATE_DIR_NAME


def checkout_model(root):
    """The nanochat/gpt.py of the checkout at `root`, or None: the implementation verified by default."""
    candidate = Path(root) / "nanochat" / "gpt.py"
    return candidate.resolve() if candidate.is_file() else None


def is_own_model(path):
    return OWN_MODEL is not None and Path(path).resolve() == OWN_MODEL.resolve()


def display(path, root):
    """A path as a report shows it: relative to `root` (the checkout verified) where it lies inside it."""
    path, root = Path(path).resolve(), Path(root).resolve()
    return path.relative_to(root).as_posix() if path.is_relative_to(root) else str(path)
