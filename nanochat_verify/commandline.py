"""
What the kit's command lines share: one-line usage errors, checks of output paths before a long run, the
project a tool works in (the checkout it verifies, where its records and reports go), and SIGTERM taken the
way Ctrl-C is (the processes a tool started are stopped, its temporary folders removed).

Nothing heavy is imported here (no torch, no pytest, no coverage), so that `--help` and the usage errors of
every tool work with the kit alone.
"""

import argparse
import contextlib
import os
import signal
import threading
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


class Terminated(KeyboardInterrupt):
    """SIGTERM or SIGHUP, raised where the tool is, so that it leaves the way Ctrl-C does: through every
    `finally` that stops its child processes and removes its temporary folders."""


@contextlib.contextmanager
def terminate_like_interrupt():
    """While the block runs, SIGTERM and SIGHUP raise Terminated (a KeyboardInterrupt) in the main thread instead
    of ending the process on the spot, which left a tool's pytest children running (orphans of init) and its
    temporary folders behind. A second signal during that cleanup is ignored, so that it cannot cut it short.
    Nested uses are fine; off the main thread (where Python takes no signals) it does nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    wanted = [getattr(signal, name) for name in ("SIGTERM", "SIGHUP") if hasattr(signal, name)]

    def stop(signum, frame):
        for number in wanted:
            signal.signal(number, signal.SIG_IGN)
        raise Terminated(signal.Signals(signum).name)

    previous = {number: signal.signal(number, stop) for number in wanted}
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)


def default_signals():
    """In a child forked from a tool: the default SIGTERM and SIGHUP (end at once), not the tool's handlers."""
    for name in ("SIGTERM", "SIGHUP"):
        if hasattr(signal, name):
            signal.signal(getattr(signal, name), signal.SIG_DFL)
