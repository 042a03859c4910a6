"""
The argparse types of the tools' numeric options: finite numbers greater than 0, each refused in the words
of what it measures.
"""

import argparse
import math


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
