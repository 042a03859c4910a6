"""
What the kit's command lines share: one-line usage errors, checks of output paths before a long run, and
the project a tool works in (the checkout it verifies, where its records and reports go).

Nothing heavy is imported here (no torch, no pytest, no coverage), so that `--help` and the usage errors of
every tool work with the kit alone.
"""

import argparse
import math
import os
from pathlib import Path

from nanochat_verify.exits import Exit, epilog
from nanochat_verify.paths import SOURCE_ROOT


class OneLineParser(argparse.ArgumentParser):
    """argparse, except that an error is exactly one line on stderr (no usage block), exit status 2, and the
    kit's table of exit statuses closes every --help."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("epilog", epilog())
        super().__init__(*args, **kwargs)

    def error(self, message):
        self.exit(int(Exit.USAGE), f"{self.prog}: error: {' '.join(str(message).split())}\n")


def _positive(convert, what):
    """An argparse type: a finite number > 0 of the kind `convert` makes."""
    def parse(text):
        try:
            value = convert(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be {what}, got {text!r}") from None
        if not (value > 0 and math.isfinite(value)):
            raise argparse.ArgumentTypeError(f"must be {what}, got {text!r}")
        return value
    return parse


positive_int = _positive(int, "a positive integer")
positive_number = _positive(float, "a positive number")
positive_float = _positive(float, "a positive number of seconds")  # time limits: 0 would kill every run at once


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


def project_root(start=None):
    """The project a tool works in: the nearest folder, from `start` (default: the current folder) up, that
    holds a pyproject.toml or a nanochat/gpt.py; else the kit's own source checkout; else `start`."""
    start = Path(start or Path.cwd()).resolve()
    for folder in (start, *start.parents):
        if (folder / "pyproject.toml").is_file() or (folder / "nanochat" / "gpt.py").is_file():
            return folder
    return SOURCE_ROOT or start


def resolve_implementation(parser, args, root):
    """Fill in `args.settings` (the project's [tool.nanochat-verify]) and `args.gpt_impl` (the option, else the
    project's setting, else its own nanochat checkout); a usage error in one line where there is none."""
    from nanochat_verify.settings import SettingsError, default_implementation, no_implementation, read_settings
    try:
        args.settings = read_settings(root)
    except SettingsError as e:
        parser.error(str(e))
    if args.gpt_impl is not None and not args.gpt_impl.strip():
        parser.error("--gpt-impl is empty: name a nanochat checkout, a .py file or a dotted module")
    args.gpt_impl = args.gpt_impl or default_implementation(args.settings)
    if args.gpt_impl is None:
        parser.error(no_implementation(root))
