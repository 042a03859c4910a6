"""
The options every tool shares, declared once: the pytest plugin and the command lines of the report, the
mutation runner and the tracer add them from here, with the same name, metavar and help.
"""

from dataclasses import dataclass


@dataclass(frozen=True)
class Option:
    flag: str
    metavar: str
    help: str

    @property
    def dest(self):
        return self.flag.lstrip("-").replace("-", "_")


GPT_IMPL = Option(
    "--gpt-impl", "PATH_OR_MODULE",
    "the implementation to verify: a nanochat checkout (its root), its nanochat/gpt.py, another .py file or a "
    "dotted module name (default: [tool.nanochat-verify] gpt-impl of pyproject.toml, else the nanochat checkout "
    "of the current project)")
ARCHITECTURE = Option(
    "--architecture", "NAME_OR_PATH",
    "the architecture card to verify against: a card name (see nanochat_verify/cards) or a .toml path (default: "
    "[tool.nanochat-verify] architecture of pyproject.toml, else the card found for the implementation)")
EXPECT_FAILURES = Option(
    "--expect-failures", "PATH",
    "a findings file of test ids, one per line (# starts a note): each is expected to fail (pytest's strict "
    "xfail), so the run passes when exactly these fail, and fails on any other failure or when one passes")

SHARED = (GPT_IMPL, ARCHITECTURE, EXPECT_FAILURES)


def add_to_argparse(parser, *options):
    for option in options:
        parser.add_argument(option.flag, dest=option.dest, default=None, metavar=option.metavar, help=option.help)


def add_to_pytest(group, *options):
    for option in options:
        group.addoption(option.flag, dest=option.dest, default=None, metavar=option.metavar, help=option.help)


def as_arguments(values):
    """`{dest: value}` back to command-line arguments (`--gpt-impl=X`), for a run a tool starts."""
    by_dest = {o.dest: o for o in SHARED}
    return [f"{by_dest[k].flag}={v}" for k, v in values.items() if v is not None and k in by_dest]
