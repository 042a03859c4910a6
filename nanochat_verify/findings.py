"""
Expected findings: the tests a real implementation is known to fail, each with the upstream fix that
confirms it (`tests/findings/*.txt`). The plugin marks each as pytest's strict xfail, so that a run passes
when exactly these fail, and fails on any other failure or when one of them passes; the report reads the
same file for the same verdict.

A findings file holds one test id per line (`tests/test_x.py::test_y[case]`), `# note` after it; blank and
comment lines are ignored.
"""

from dataclasses import dataclass
from pathlib import Path


class FindingsError(ValueError):
    """A findings file that cannot be read, or a line that is not a test id."""


def read_findings(path):
    """{test id: note} from a findings file; FindingsError naming the file (and the line) otherwise."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise FindingsError(f"{path}: {e.strerror or e}") from None
    except UnicodeDecodeError:
        raise FindingsError(f"{path}: not a text file (expected one test id per line)") from None
    expected = {}
    for number, line in enumerate(text.splitlines(), 1):
        test_id, _, note = line.partition("#")
        test_id = test_id.strip()
        if test_id:
            if "::" not in test_id or not test_id.startswith("tests/"):
                raise FindingsError(f"{path}, line {number}: {test_id!r} is not a test id "
                                    f"(expected tests/test_<component>.py::test_<property>[case])")
            expected[test_id] = note.strip()
    return expected


@dataclass(frozen=True)
class Verdict:
    as_recorded: tuple  # expected findings that failed
    unexpected: tuple  # failures not in the findings file
    gone: tuple  # expected findings that did not fail

    @property
    def ok(self):
        return not self.unexpected and not self.gone

    def line(self):
        text = (f"{len(self.as_recorded)} expected finding(s) failed as recorded, {len(self.unexpected)} unexpected "
                f"failure(s)")
        return text + (f", {len(self.gone)} expected finding(s) did not fail" if self.gone else "")


def verdict(expected, failed):
    """The verdict on a run: `expected` the findings ({id: note}), `failed` the ids of the tests that failed."""
    failed = set(failed)
    return Verdict(as_recorded=tuple(sorted(failed & set(expected))), unexpected=tuple(sorted(failed - set(expected))),
                   gone=tuple(sorted(set(expected) - failed)))
