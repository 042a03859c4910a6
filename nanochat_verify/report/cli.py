"""
COVERAGE.md, generated from real test outcomes: a row says ✅ only when every one of its tests ran and passed.

    python -m nanochat_verify.report                  run the whole suite and the mutation catalog, write COVERAGE.md
    python -m nanochat_verify.report --check          the same, but compare with COVERAGE.md and print a diff
    python -m nanochat_verify.report --from-last-run  use the last complete `pytest` run instead
                                                      (.nanochat-verify/outcomes.json, the line coverage of that run
                                                      in .nanochat-verify/runs/, .nanochat-verify/mutation.json)
    python -m nanochat_verify.report --gpt-impl other.py --output /tmp/OTHER.md
                                                      the report for another implementation of the contract

Run from a fork's root (the kit installed), it verifies the fork's own nanochat/ and writes the fork's
COVERAGE.md, with code paths relative to the fork.

A report is written only from a complete run of the whole suite for that implementation (no -k, -m,
--deselect or narrower paths, no --collect-only, no -x stop, no interruption), whose outcomes, line
coverage and mutation results are proven to come from that same run and the sources as they are
now: the outcomes carry a run id, a source fingerprint and the hash of the .coverage file that
pytest-cov wrote in the same run; the mutation results carry the fingerprint. Otherwise nothing is
written, and one line says why and which command fixes it. Exit statuses: nanochat_verify/exits.py.
"""

import difflib
import sys
import tempfile
from pathlib import Path

from nanochat_verify import options, records
from nanochat_verify.argtypes import positive_float
from nanochat_verify.commandline import (OneLineParser, Terminated, project_root, resolve_implementation,
                                         terminate_like_interrupt, unwritable)
from nanochat_verify.exits import Exit
from nanochat_verify.findings import FindingsError, read_findings, verdict
from nanochat_verify.paths import checkout_model
from nanochat_verify.report.inputs import Project, Refused, load_inputs
from nanochat_verify.report.render import FIX_COMMAND, render, splice, stale_mutants
from nanochat_verify.report.run import pytest_subprocess, run_mutation, run_suite
from nanochat_verify.report.status import failing_components, index_tests

DEFAULT_TIMEOUT = 3600.0  # seconds for each run the generator starts (the suite, the mutation catalog)


def parse_args(argv, project):
    p = OneLineParser(prog="python -m nanochat_verify.report", description=__doc__.split("\n\n")[0].strip())
    p.add_argument("--check", action="store_true", help="compare with the file instead of writing it; exit 1 on a difference")
    p.add_argument("--from-last-run", action="store_true",
                   help="use the last complete pytest run (.nanochat-verify/outcomes.json, the line coverage of "
                        "that run, .nanochat-verify/mutation.json) instead of running the suite")
    p.add_argument("--outcomes", type=Path, help="use this outcomes JSON (from pytest --outcomes) instead of running the suite")
    p.add_argument("--coverage-data", type=Path, help="with --outcomes: the coverage data file of that run "
                                                      "(default: the one its outcomes name)")
    p.add_argument("--mutation", type=Path, help="use this mutation JSON (python -m nanochat_verify.mutation --json) instead of running it")
    p.add_argument("--skip-mutation", action="store_true", help="leave the mutation catalog out of the report")
    p.add_argument("--no-line-coverage", action="store_true", help="leave line coverage out (and run the suite without pytest-cov)")
    options.add_to_argparse(p, options.GPT_IMPL, options.ARCHITECTURE, options.EXPECT_FAILURES, options.IMPORT_TIMEOUT)
    p.add_argument("--output", type=Path, help="file to write or check (default: COVERAGE.md of the project, for the "
                                               "project's own nanochat; required for another implementation)")
    p.add_argument("--timeout", type=positive_float, default=DEFAULT_TIMEOUT, metavar="SECONDS",
                   help=f"time limit of each run the generator starts: the suite, the mutation catalog "
                        f"(default {DEFAULT_TIMEOUT:g})")
    p.add_argument("pytest_args", nargs="*", help="extra arguments for the test run, after --")
    args = p.parse_args(argv)

    if args.from_last_run and args.outcomes:
        p.error("--from-last-run and --outcomes exclude each other")
    if args.pytest_args and (args.from_last_run or args.outcomes):
        p.error("arguments after -- are for the test run this command starts; --from-last-run and --outcomes run none")
    if args.coverage_data and not args.outcomes:
        p.error("--coverage-data goes with --outcomes")
    resolve_implementation(p, args, project.root)
    args.import_timeout = options.import_timeout(args.import_timeout, args.settings)
    # within the report's own --timeout too: `--timeout 10` never waits a minute for an import
    args.impl_file = implementation_file(p, args.gpt_impl, args.import_timeout, args.timeout)
    args.card = None
    if args.architecture is not None:
        from nanochat_verify.card import CardError, project_card
        try:
            args.card = project_card(args.settings, args.architecture)
        except CardError as e:
            p.error(str(e))
    if args.expect_failures is not None:
        try:
            read_findings(args.expect_failures)
        except FindingsError as e:
            p.error(f"--expect-failures: {e}")
        args.expect_failures = str(Path(args.expect_failures).resolve())
    own_output = args.output is None or args.output.resolve() == project.default_output.resolve()
    if own_output and args.impl_file != checkout_model(project.root):
        p.error(f"a report for an implementation outside this project needs --output PATH "
                f"({project.display(project.default_output)} is the report of {project.display(project.root)}'s own "
                f"nanochat)")
    args.output = args.output or project.default_output
    if not args.check:
        problem = unwritable(args.output)
        if problem:
            p.error(f"--output {args.output}: {problem}")
    return args


def implementation_file(parser, spec, import_timeout, timeout):
    """The source file of the implementation (importing it checks the contract before any long run), imported
    within the shorter of the two limits."""
    from nanochat_verify.contract import ContractError, load_implementation, source_path
    limit, option = (import_timeout, "--import-timeout") if import_timeout <= timeout else (timeout, "--timeout")
    try:
        return source_path(load_implementation(spec, limit, option))
    except ContractError as e:
        parser.error(str(e))
    except Exception as e:  # noqa: BLE001 - whatever importing a user's module raises is a usage error
        parser.error(f"--gpt-impl {spec!r}: loading it failed: {type(e).__name__}: {e}")


def gather(args, project, workdir, run_pytest, suite=None):
    """The checked Inputs for this command line: from the last run, given files, or a fresh run."""
    own = args.impl_file == checkout_model(project.root)
    impl_option = "" if own else f" --gpt-impl {args.gpt_impl}"
    if args.from_last_run:
        outcomes = records.last_run_file(project.root)
        mutation = None if args.skip_mutation else (args.mutation or records.find(project.root, "mutation.json"))
        regenerate = (f"run the whole suite with `pytest{impl_option}` (no -k, -m, --deselect, -x or paths), "
                      f"then this command again, or run `{FIX_COMMAND}{impl_option}`")
        data_file = None
    elif args.outcomes:
        outcomes, data_file = args.outcomes, args.coverage_data
        mutation = None if args.skip_mutation else args.mutation
        regenerate = f"run the whole suite again with `pytest{impl_option} --outcomes {args.outcomes}`"
    else:
        outcomes, data_file = run_suite(args, project, workdir, run_pytest, suite), None
        mutation = None if args.skip_mutation else (args.mutation or run_mutation(args, project, workdir))
        regenerate = (f"run `{FIX_COMMAND}{impl_option}` without pytest arguments that narrow or stop the run"
                      if args.pytest_args else f"run `{FIX_COMMAND}{impl_option}` again")
    return load_inputs(outcomes, project=project, coverage_file=data_file, mutation_file=mutation,
                       expect_impl=args.impl_file, expect_card=args.card,
                       line_coverage_wanted=not args.no_line_coverage, regenerate=regenerate)


def main(argv=None, *, root=None, run_pytest=pytest_subprocess, suite=None):
    """The command line. `root`, `run_pytest` and `suite` (test paths; [] for the project's own testpaths) let the
    tests point the generator at a small fixture project and run its suite in-process; the checks are the same."""
    project = Project(Path(root) if root is not None else project_root())
    args = parse_args(sys.argv[1:] if argv is None else argv, project)
    try:
        # SIGTERM takes the way of Ctrl-C: the runs it started are stopped, the temporary folder removed
        with terminate_like_interrupt(), tempfile.TemporaryDirectory(prefix="nanochat-verify-report-") as tmp:
            inputs = gather(args, project, Path(tmp), run_pytest, suite)
        block = render(inputs)
        existing = args.output.read_text() if args.output.exists() else None
        if args.check:
            return check(args, project, existing, block)
        text = splice(existing, block)
    except Refused as e:
        print(f"report: {e}", file=sys.stderr)
        return e.exit_status
    except KeyboardInterrupt as e:
        print(f"report: {'terminated' if isinstance(e, Terminated) else 'interrupted'}; nothing was written",
              file=sys.stderr)
        return Exit.INTERRUPTED
    try:
        args.output.write_text(text)
    except OSError as e:
        print(f"report: cannot write {args.output}: {e.strerror}", file=sys.stderr)
        return Exit.USAGE
    print(f"wrote {project.display(args.output)}", file=sys.stderr)
    return summary_status(inputs)


def check(args, project, existing, block):
    try:
        expected = splice(existing, block)
    except Refused as e:
        print(f"report: {project.display(args.output)}: {e}", file=sys.stderr)
        expected = None
    if existing is not None and expected == existing:
        print(f"{project.display(args.output)} is up to date.", file=sys.stderr)
        return Exit.OK
    shown = project.display(args.output)
    sys.stdout.writelines(difflib.unified_diff((existing or "").splitlines(keepends=True),
                                               (expected or block).splitlines(keepends=True),
                                               fromfile=f"{shown} (on disk)", tofile=f"{shown} (generated now)"))
    own = args.impl_file == checkout_model(project.root)
    fix = FIX_COMMAND + ("" if own else f" --gpt-impl {args.gpt_impl} --output {args.output}")
    print(f"\n{shown} is stale. Regenerate it with:\n\n    {fix}\n", file=sys.stderr)
    return Exit.NOT_VERIFIED


def summary_status(inputs):
    """After writing: say what is not verified, and what in the catalog needs attention. With the
    implementation's known findings, failing rows are fine when exactly those tests failed."""
    failing = failing_components(inputs, index_tests(inputs))
    if failing:
        print(f"report: not every component is verified: {', '.join(failing)}", file=sys.stderr)
    expected = {t.test_id: t.expected_finding for t in inputs.tests if t.expected_finding is not None}
    if expected:
        result = verdict(expected, [t.test_id for t in inputs.tests if t.outcome in ("failed", "error")])
        for test_id in result.unexpected:
            print(f"report: unexpected failure {test_id}", file=sys.stderr)
        for test_id in result.gone:
            print(f"report: the expected finding {test_id} did not fail", file=sys.stderr)
        print(f"report: {result.line()}", file=sys.stderr)
        if not result.ok:
            return Exit.NOT_VERIFIED
        failing = []
    stale = stale_mutants(inputs.mutation)
    if stale:
        print(f"report: the mutation catalog needs attention: {', '.join(stale)} no longer apply to "
              f"{Project(inputs.root).display(inputs.impl_path)} (target text gone); update "
              f"nanochat_verify/mutation/catalog/", file=sys.stderr)
        return Exit.CATALOG
    return Exit.NOT_VERIFIED if failing else Exit.OK


if __name__ == "__main__":
    sys.exit(main())
