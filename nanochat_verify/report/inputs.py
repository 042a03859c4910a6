"""
The inputs of a report, checked before anything is written: the run record of a complete pytest run of the
whole suite (nanochat_verify/runrecord.py), the line coverage data of that same run, and mutation results
of the same sources. Anything else is refused, with one line that says why and which command fixes it.
"""

import ast
import contextlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from nanochat_verify import components as table
from nanochat_verify.exits import Exit
from nanochat_verify.fingerprint import file_sha256, implementation_files, tree_fingerprint
from nanochat_verify.paths import display
from nanochat_verify.runrecord import RecordError, read_record


class Refused(Exception):
    """The inputs cannot give an honest report; the message says why and which command fixes it."""
    exit_status = Exit.USAGE


class Damaged(Refused):
    """An input file is unreadable, truncated or not what it claims to be."""
    exit_status = Exit.DAMAGED


@dataclass(frozen=True)
class Project:
    """Where the generator reads and writes: the project root (the checkout verified: this project, or a
    fork with the kit installed), never the current folder. Tests point it at a small fixture project."""
    root: Path

    @property
    def default_output(self):
        return self.root / "COVERAGE.md"

    def display(self, path):
        return display(path, self.root)


@dataclass
class Inputs:
    impl_path: Path
    own_impl: bool
    tests: list  # [Outcome]
    card: object  # the architecture card the run verified against (titles hold its values)
    root: Path
    lines: dict = None  # from line_coverage(), or None when left out (--no-line-coverage)
    mutation: dict = None  # the JSON of python -m nanochat_verify.mutation, or None when left out
    problems: list = field(default_factory=list)
    not_applicable: frozenset = frozenset()  # component keys the run's architecture card does not have
    card_how: str = ""  # how the run chose its card, in one sentence

    @property
    def checkout(self):
        """The folder the implementation's code references are relative to: its checkout (the folder above a
        package such as nanochat/), or the folder of a lone file."""
        folder = self.impl_path.parent
        return folder.parent if (folder / "__init__.py").is_file() else folder

    def code_path(self):
        return display(self.impl_path, self.checkout)


def read_json(path, what, regenerate, project):
    """The JSON object in `path`; Damaged (naming the file, what is wrong and the command that
    regenerates it) when it is empty, truncated or not an object; Refused when it is missing."""
    shown = project.display(path)
    try:
        text = Path(path).read_text()
    except FileNotFoundError:
        raise Refused(f"{shown}: no {what} there; {regenerate}") from None
    except (OSError, UnicodeDecodeError) as e:
        raise Damaged(f"{shown}: the {what} cannot be read ({e}); {regenerate}") from None
    if not text.strip():
        raise Damaged(f"{shown}: the {what} file is empty; {regenerate}")
    try:
        data = json.loads(text)
    except ValueError as e:
        raise Damaged(f"{shown}: the {what} is not valid JSON ({e.msg} at line {e.lineno}: truncated?); "
                      f"{regenerate}") from None
    if not isinstance(data, dict) or not data:
        raise Damaged(f"{shown}: the {what} holds no record ({text.strip()[:20]}); {regenerate}")
    return data


def read_outcomes(path, regenerate, project):
    """The RunRecord of a finished run; Damaged or Refused otherwise."""
    try:
        return read_record(path)
    except RecordError as e:
        kind = Damaged if e.kind == "damaged" else Refused
        raise kind(f"{project.display(path)}: {e}; {regenerate}") from None


def code_locations(source_file):
    """{qualified name: (first line, last line)} for the functions, classes and methods of a module."""
    tree = ast.parse(Path(source_file).read_text())
    spans = {}

    def visit(body, prefix=""):
        for node in body:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                start = min([node.lineno] + [d.lineno for d in node.decorator_list])
                spans[prefix + node.name] = (start, node.end_lineno)
                if isinstance(node, ast.ClassDef):
                    visit(node.body, prefix + node.name + ".")
    visit(tree.body)
    return spans


@contextlib.contextmanager
def _inside(folder):
    """Work inside `folder` for a while: coverage data with relative_files names its files relative
    to the project root, and coverage reads them (for the analysis) relative to the current folder."""
    before = os.getcwd()
    os.chdir(folder)
    try:
        yield
    finally:
        os.chdir(before)


def line_coverage(data_file, source_file, tests, root):
    """Overall line coverage of the implementation, and per component the share of its code's
    statements run by its own tests (or at import time, like `def` lines); None when the data does
    not measure that file."""
    import coverage

    with _inside(root):
        config = Path(root) / "pyproject.toml"
        cov = coverage.Coverage(data_file=str(Path(data_file).resolve()),
                                config_file=str(config) if config.is_file() else False)
        cov.load()
        data = cov.get_data()
        measured = {str(Path(f).resolve()): f for f in data.measured_files()}
        key = measured.get(str(Path(source_file).resolve()))
        if key is None:
            return None
        statements = set(cov.analysis2(key)[1])
        # the lines run come from the data itself: analysis2's "missing" looks the file up again under the
        # project's [tool.coverage] (relative_files), which misses a run recorded with absolute paths
        executed = statements & set(data.lines(key) or ())
        contexts = data.contexts_by_lineno(key)
    by_sub = {}
    for t in tests:
        for sub in t.components:
            by_sub.setdefault(sub, set()).add(_file_local(t.test_id))
    spans = code_locations(source_file)
    per_component = {}
    for component in table.ALL:
        code_lines = {n for name in component.code_names(spans) for n in range(spans[name][0], spans[name][1] + 1)}
        own_tests = set().union(*(by_sub.get(s.id, set()) for s in component.subcomponents))
        relevant = code_lines & statements
        if not relevant:
            continue
        covered = {n for n in relevant
                   if any(ctx == "" or _file_local(ctx.rsplit("|", 1)[0]) in own_tests for ctx in contexts.get(n, []))}
        per_component[component.key] = (len(covered), len(relevant))
    return {"overall": (len(executed), len(statements)), "per_component": per_component}


def _file_local(test_id):
    """A test id or a coverage context (the node id, from wherever the suite ran) as test_x.py::test_y[case]."""
    path, _, rest = test_id.partition("::")
    return f"{Path(path).name}::{rest}"


def read_line_coverage(data_file, record, impl_path, tests, regenerate, project):
    """Line coverage from `data_file`, after proving it is the file the outcomes' run wrote."""
    shown = project.display(data_file)
    if not Path(data_file).is_file():
        raise Refused(f"{shown}: no line coverage data there; {regenerate}")
    try:
        lines = line_coverage(data_file, impl_path, tests, project.root)
    except Exception as e:  # noqa: BLE001 - coverage raises DataError, sqlite3 errors... for a bad file
        raise Damaged(f"{shown}: not a readable coverage data file ({type(e).__name__}: "
                      f"{' '.join(str(e).split())[:120]}); {regenerate}") from None
    if file_sha256(data_file) != record["sha256"]:
        raise Refused(f"{shown} is not the line coverage of the pytest run that wrote the outcomes (another run "
                      f"replaced it); {regenerate}")
    if lines is None:
        raise Refused(f"{shown} has no line coverage of {project.display(impl_path)} (did --cov leave it out?); "
                      f"{regenerate}")
    return lines


def read_card(architecture, shown, regenerate):
    """The architecture card a run verified against, as its record names it."""
    from nanochat_verify.card import CardError, load_card
    try:
        return load_card(architecture.get("spec"), architecture.get("overrides") or None)
    except CardError as e:
        raise Refused(f"{shown}: the run's architecture card cannot be read ({e}); {regenerate}") from None


def read_mutation(path, fingerprint, regenerate, project):
    m = read_json(path, "mutation results", regenerate, project)
    shown = project.display(path)
    if not isinstance(m.get("mutants"), list) or "control" not in m:
        raise Damaged(f"{shown}: not a mutation result (no mutants or control); {regenerate}")
    if m.get("fingerprint") != fingerprint:
        raise Refused(f"{shown} is from other sources than the test outcomes (the tree changed between the pytest "
                      f"run and the mutation run); {regenerate}")
    return m


def load_inputs(outcomes_file, *, project, regenerate, coverage_file=None, mutation_file=None, expect_impl=None,
                expect_card=None, line_coverage_wanted=True, regenerate_mutation=None):
    """Every input of a report, checked: a finished and complete run of the implementation expected (and of
    the card expected, when one is named), of the sources as they are now; its own line coverage data;
    mutation results of the same sources. Raises Refused or Damaged with the one line that says why and what
    fixes it."""
    from nanochat_verify.report.status import index_tests
    shown = project.display(outcomes_file)
    record = read_outcomes(outcomes_file, regenerate, project)
    impl_path = Path(record.impl_path)
    impl_path = impl_path if impl_path.is_absolute() else (project.root / impl_path).resolve()
    if expect_impl is not None and impl_path.resolve() != Path(expect_impl).resolve():
        raise Refused(f"{shown} is a run of {project.display(impl_path)}, not of {project.display(expect_impl)}; "
                      f"{regenerate}")
    if not record.complete:
        why = "; ".join(record.incomplete) or "see its exit status"
        raise Refused(f"{shown} is from an incomplete run ({why}): it cannot speak for every component; {regenerate}")
    fingerprint = tree_fingerprint(implementation_files(impl_path), project.root)
    if record.fingerprint != fingerprint:
        raise Refused(f"{shown} is stale: the sources changed since that pytest run; {regenerate}")
    card = read_card(record.architecture, shown, regenerate)
    if expect_card is not None and expect_card.name != card.name:
        raise Refused(f"{shown} is a run under the card {card.name!r}, not {expect_card.name!r}; {regenerate}")
    inputs = Inputs(impl_path=impl_path, own_impl=record.own_impl, tests=list(record.tests.values()), card=card,
                    root=project.root, not_applicable=frozenset(record.not_applicable),
                    card_how=record.architecture.get("how", ""))

    if line_coverage_wanted:
        lines = record.line_coverage
        if lines is None:
            raise Refused(f"the pytest run of {shown} measured no line coverage (--no-cov, or pytest-cov missing); "
                          f"{regenerate}, or pass --no-line-coverage")
        if lines.get("appended"):
            raise Refused(f"the pytest run of {shown} appended its line coverage to an earlier run's (--cov-append); "
                          f"{regenerate}")
        data_file = coverage_file or (project.root / lines["data_file"])
        inputs.lines = read_line_coverage(data_file, lines, impl_path, inputs.tests, regenerate, project)

    if mutation_file is not None:
        regenerate_mutation = regenerate_mutation or (f"run `python -m nanochat_verify.mutation --json "
                                                      f"{project.display(mutation_file)}`, or pass --skip-mutation")
        inputs.mutation = read_mutation(mutation_file, fingerprint, regenerate_mutation, project)

    index_tests(inputs)
    if inputs.problems:
        raise Refused(f"the suite leaves gaps: {'; '.join(inputs.problems)}; give every sub-component a test "
                      f"(@pytest.mark.component) with a known ID")
    return inputs
