"""
The exit statuses of every tool of the kit, one table: the report (`python -m nanochat_verify.report`), the
mutation runner and the tracer mean the same by the same number.
"""

from enum import IntEnum


class Exit(IntEnum):
    OK = 0  # every component verified, every mutant killed, every trace check passed
    NOT_VERIFIED = 1  # a component not verified, a report stale, a mutant survived, a trace check failed
    USAGE = 2  # refused: a bad option, or inputs that cannot give an honest answer
    DAMAGED = 3  # an input file is damaged (truncated, not what it claims to be)
    CATALOG = 4  # the mutation catalog needs attention: a mutant's target text is gone
    HARNESS = 5  # the tool could not produce a result: a harness error, a control that fails the suite
    INTERRUPTED = 130  # Ctrl-C or SIGTERM


MEANING = {
    Exit.OK: "everything verified",
    Exit.NOT_VERIFIED: "something is not verified (a failing component, a stale report, a surviving mutant, a failed trace check)",
    Exit.USAGE: "refused: a bad option, or inputs that cannot give an honest answer",
    Exit.DAMAGED: "a damaged input file",
    Exit.CATALOG: "the mutation catalog needs attention (stale mutants)",
    Exit.HARNESS: "the tool could not produce a result (a harness error, a failing control run)",
    Exit.INTERRUPTED: "interrupted",
}


def epilog():
    """The exit statuses as one line, for every tool's --help."""
    return "Exit status: " + "; ".join(f"{int(code)} {text}" for code, text in MEANING.items()) + "."
