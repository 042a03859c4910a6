"""
The run record: what one pytest run of the suite says about an implementation, written by the plugin
(`--outcomes PATH`, plugin/record.py) and read by the report. Its schema is declared here, once.

    {"schema", "run_id", "finished", "pytest_args", "impl", "impl_path", "own_impl", "architecture": {"spec",
     "overrides", "name"}, "exitstatus", "complete", "incomplete": [why not], "not_applicable": [component keys],
     "fingerprint", "line_coverage": {"data_file", "sha256", "appended"} or null,
     "tests": {test id: {"outcome", "components", "doc", "skip_reason", "expected_finding"}}}

A run that has started but not finished leaves `"finished": false` (and nothing else that could be trusted).
"""

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

SCHEMA = 3
OUTCOMES = ("passed", "skipped", "failed", "error")
# when one test has several reports (setup, call, teardown), the worst decides
PRECEDENCE = {"passed": 0, "skipped": 1, "failed": 2, "error": 3}
REQUIRED = ("run_id", "impl_path", "own_impl", "complete", "incomplete", "fingerprint", "line_coverage", "tests")


class RecordError(ValueError):
    """A record that cannot be used. `kind`: missing | damaged | unfinished."""

    def __init__(self, message, kind):
        super().__init__(message)
        self.kind = kind


@dataclass
class Outcome:
    test_id: str
    outcome: str  # passed | failed | error | skipped (an expected finding that failed is failed)
    components: tuple
    doc: str
    skip_reason: str = ""
    expected_finding: str | None = None  # the note of the findings file, for a test expected to fail

    @property
    def function(self):
        # parametrized variants share a row: tests/test_x.py::test_y[a] -> tests/test_x.py::test_y
        return self.test_id.split("[", 1)[0]

    def as_json(self):
        data = asdict(self)
        del data["test_id"]
        data["components"] = list(self.components)
        return data


@dataclass
class RunRecord:
    run_id: str
    finished: bool
    pytest_args: list
    architecture: dict  # {"spec", "overrides", "name"}
    impl: str = ""
    impl_path: str = ""
    own_impl: bool = False
    exitstatus: int | None = None
    complete: bool = False
    incomplete: list = field(default_factory=list)
    not_applicable: list = field(default_factory=list)
    fingerprint: str = ""
    line_coverage: dict | None = None
    tests: dict = field(default_factory=dict)  # test id -> Outcome

    def to_json(self):
        data = {k: v for k, v in asdict(self).items() if k != "tests"}
        data["schema"] = SCHEMA
        data["tests"] = {t: o.as_json() for t, o in sorted(self.tests.items())}
        return json.dumps(data, indent=1, sort_keys=True) + "\n"


def read_record(path):
    """The RunRecord in `path`; RecordError saying what is wrong with it otherwise."""
    try:
        text = Path(path).read_text()
    except FileNotFoundError:
        raise RecordError("no test outcomes there", "missing") from None
    except (OSError, UnicodeDecodeError) as e:
        raise RecordError(f"the test outcomes cannot be read ({e})", "damaged") from None
    if not text.strip():
        raise RecordError("the test outcomes file is empty", "damaged")
    try:
        data = json.loads(text)
    except ValueError as e:
        raise RecordError(f"the test outcomes are not valid JSON ({e.msg} at line {e.lineno}: truncated?)",
                          "damaged") from None
    if not isinstance(data, dict) or not data:
        raise RecordError(f"the test outcomes hold no record ({text.strip()[:20]})", "damaged")
    if data.get("schema") != SCHEMA:
        raise RecordError(f"not an outcomes record of this version (schema {data.get('schema')!r}, expected "
                          f"{SCHEMA})", "damaged")
    if data.get("finished") is False:
        raise RecordError("the pytest run that wrote it did not finish (killed, out of time, or still running)",
                          "unfinished")
    missing = [k for k in REQUIRED if k not in data]
    if missing:
        raise RecordError(f"the outcomes record lacks {', '.join(missing)}", "damaged")
    try:
        tests = {test_id: Outcome(test_id, t["outcome"], tuple(t["components"]), t["doc"],
                                      t.get("skip_reason", ""), t.get("expected_finding"))
                 for test_id, t in data["tests"].items()}
    except (AttributeError, KeyError, TypeError) as e:
        raise RecordError(f"a test entry is malformed ({type(e).__name__}: {e})", "damaged") from None
    unknown = sorted({t.outcome for t in tests.values()} - set(OUTCOMES))
    if unknown:
        raise RecordError(f"unknown test outcome {unknown[0]!r}", "damaged")
    fields = {k: data[k] for k in RunRecord.__dataclass_fields__ if k in data and k != "tests"}
    return RunRecord(**{**fields, "tests": tests})
