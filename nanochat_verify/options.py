"""
The options every tool shares, declared once: the pytest plugin and the command lines of the report, the
mutation runner and the tracer add them from here, with the same name, metavar and help.
"""

from dataclasses import dataclass

from nanochat_verify.argtypes import positive_float


@dataclass(frozen=True)
class Option:
    flag: str
    metavar: str
    help: str
    type: object = None  # the command lines' converter (pytest's gets the text and checks it itself)

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

DEFAULT_IMPORT_TIMEOUT = 60.0  # seconds; importing torch and a model takes a few
IMPORT_TIMEOUT = Option(
    "--import-timeout", "SECONDS",
    "how long importing the implementation may take before it is refused as one whose import never returns "
    "(default: [tool.nanochat-verify] import-timeout of pyproject.toml, else 60)", positive_float)

SHARED = (GPT_IMPL, ARCHITECTURE, EXPECT_FAILURES, IMPORT_TIMEOUT)


def add_to_argparse(parser, *options):
    for option in options:
        kwargs = {"type": option.type} if option.type is not None else {}
        parser.add_argument(option.flag, dest=option.dest, default=None, metavar=option.metavar, help=option.help,
                            **kwargs)


def add_to_pytest(group, *options):
    for option in options:
        group.addoption(option.flag, dest=option.dest, default=None, metavar=option.metavar, help=option.help)


def import_timeout(value, settings):
    """The import time limit in seconds: the option's `value`, else the project's setting, else the default."""
    if value is not None:
        return value
    return settings.import_timeout if settings.import_timeout is not None else DEFAULT_IMPORT_TIMEOUT


def as_arguments(values):
    """`{dest: value}` back to command-line arguments (`--gpt-impl=X`), for a run a tool starts."""
    by_dest = {o.dest: o for o in SHARED}
    return [f"{by_dest[k].flag}={v}" for k, v in values.items() if v is not None and k in by_dest]
