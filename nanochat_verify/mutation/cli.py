"""
python -m nanochat_verify.mutation: run the mutant catalog against the suite (see runner.py for how, and
catalog/__init__.py for what it holds).
"""

import argparse
import importlib
import importlib.util
import sys
import time
from pathlib import Path

from nanochat_verify import options
from nanochat_verify.argtypes import positive_float, positive_int
from nanochat_verify.commandline import (OneLineParser, Terminated, project_root,
                                         resolve_implementation, terminate_like_interrupt, unwritable)
from nanochat_verify.components import expand
from nanochat_verify.exits import Exit
from nanochat_verify.mutation.catalog import MUTANTS
from nanochat_verify.findings import FindingsError, read_findings
from nanochat_verify.mutation.runner import (DEFAULT_CONTROL_LIMIT, BadOption, CatalogBug, ControlFailed, HarnessFailure, diff,
                                             exit_status, fingerprint_of, module_source, resolve_target, run_catalog,
                                             to_json, totals)
from nanochat_verify.paths import display, state_dir
from nanochat_verify.records import why_unwritable

def escape(text):
    """Node ids like test_x[2-None] and log lines are text, not rich markup."""
    from rich.markup import escape as rich_escape
    return rich_escape(text)


STYLE = {"killed": "green", "survived": "bold red", "equivalent": "dim", "harness_error": "bold yellow",
         "not_applicable": "dim", "stale": "bold yellow", "not_run": "dim"}


def results_table(results, title):
    from rich.table import Table
    table = Table(title=title, title_justify="left", show_lines=False)
    for col, kw in (("mutant", {"no_wrap": True}), ("component", {}), ("bug", {"ratio": 3}), ("status", {}),
                    ("killing test", {"ratio": 2}), ("s", {"justify": "right"})):
        table.add_column(col, **kw)
    for r in results:
        table.add_row(r.name, r.component, escape(r.description), f"[{STYLE[r.status]}]{r.status}[/]",
                      escape(r.killed_by or (r.detail.splitlines()[0] if r.detail else "")),
                      f"{r.seconds:.1f}" if r.seconds is not None else "")
    return table


def catalog_table(mutants):
    from rich.table import Table
    table = Table(title=f"{len(mutants)} mutants ({sum(not m.equivalent for m in mutants)} scored)",
                  title_justify="left")
    for col in ("mutant", "breaks", "how", "bug"):
        table.add_column(col, no_wrap=col == "mutant")
    for m in mutants:
        table.add_row(m.name, m.target, m.mechanism + (" (equivalent)" if m.equivalent else ""), escape(m.description))
    return table


def load_catalog(spec):
    """MUTANTS of another catalog module (a .py path or dotted name), e.g. a fork's own mutants;
    HarnessFailure in one line when it cannot be loaded."""
    from nanochat_verify.contract import is_path
    try:
        if is_path(spec):
            path = Path(spec).resolve()
            if not path.is_file():
                raise BadOption(f"--catalog {spec!r}: no such file")
            module_spec = importlib.util.spec_from_file_location("_mutation_catalog", path)
            module = importlib.util.module_from_spec(module_spec)
            module_spec.loader.exec_module(module)
        else:
            module = importlib.import_module(spec)
        return tuple(module.MUTANTS)
    except BadOption:
        raise
    except ModuleNotFoundError as e:
        raise BadOption(f"--catalog {spec!r}: no importable module of that name ({e}); "
                             "name a .py file or a dotted module that defines MUTANTS") from None
    except AttributeError:
        raise BadOption(f"--catalog {spec!r} defines no MUTANTS") from None
    except Exception as e:  # noqa: BLE001 - a user's catalog may raise anything at import
        raise BadOption(f"--catalog {spec!r}: importing it failed: {type(e).__name__}: {e}") from None


def check_catalog(mutants):
    """Fail before running anything on a catalog bug: a bad or duplicate name, an unknown component ID."""
    from nanochat_verify.mutation.mutant import NAME_PATTERN
    seen = set()
    for m in mutants:
        if not NAME_PATTERN.match(m.name) or m.name in seen:
            problem = "a duplicate" if m.name in seen else "not snake_case"
            raise CatalogBug(f"catalog bug: mutant name {m.name!r} is {problem}")
        seen.add(m.name)
        try:
            expand(m.target)
        except ValueError as e:
            raise CatalogBug(f"catalog bug: mutant {m.name}: {e}") from None
        if not m.description.strip() or "\n" in m.description:
            raise CatalogBug(f"catalog bug: mutant {m.name} needs a one-line description")


def _names(text):
    """An --only list: comma-separated mutant names, at least one."""
    names = [n.strip() for n in text.split(",") if n.strip()]
    if not names:
        raise argparse.ArgumentTypeError(f"names no mutant ({text!r}); give NAME[,NAME...], see --list")
    return names


def parse_args(argv):
    argv = list(argv)
    extra = []
    if "--" in argv:  # everything after -- goes to pytest unchanged
        i = argv.index("--")
        argv, extra = argv[:i], argv[i + 1:]
    parser = OneLineParser(prog="python -m nanochat_verify.mutation",
                           description="Run the mutant catalog against the test suite. Arguments after -- are "
                                       "passed to pytest (run in the project root).")
    options.add_to_argparse(parser, options.GPT_IMPL, options.ARCHITECTURE, options.EXPECT_FAILURES,
                            options.IMPORT_TIMEOUT)
    parser.add_argument("--list", action="store_true", help="print the catalog and exit")
    parser.add_argument("--diff", metavar="NAME", help="print one mutant as a diff of the target and exit")
    parser.add_argument("--only", type=_names, metavar="NAME[,NAME]", help="run only these mutants")
    parser.add_argument("--jobs", type=positive_int, default=2, metavar="N", help="parallel runs (default 2)")
    parser.add_argument("--json", metavar="PATH", help="write the deterministic result here")
    parser.add_argument("--timeout", type=positive_float, default=None, metavar="S",
                        help="limit in seconds for each run, the control's included (default: "
                             f"{DEFAULT_CONTROL_LIMIT} s for the control, then 3 x its run time + 30 per mutant)")
    parser.add_argument("--catalog", metavar="PATH_OR_MODULE", help="use the MUTANTS of another catalog module")
    parser.add_argument("--workdir", metavar="DIR", help="keep the mutated copies, logs and outcomes here")
    parser.add_argument("--no-fork", action="store_true",
                        help="run each mutant in a fresh `python -m pytest` process "
                             "(the fallback where fork is unsafe)")
    args = parser.parse_args(argv)
    args.root = project_root()
    resolve_implementation(parser, args, args.root)
    if args.catalog is not None and not args.catalog.strip():
        parser.error("--catalog is empty: name a .py file or a dotted module that defines MUTANTS")
    if args.json is not None:
        problem = unwritable(args.json)
        made_on_demand = Path(args.json).resolve().parent == state_dir(args.root).resolve()
        if made_on_demand and not Path(args.json).is_dir():
            # the project's state folder, made on demand where it can be (not in a read-only checkout)
            problem = why_unwritable(state_dir(args.root))
        if problem:
            parser.error(f"--json {args.json}: {problem}")
    if args.workdir is not None:
        workdir = Path(args.workdir)
        if workdir.exists() and not workdir.is_dir():
            parser.error(f"--workdir {args.workdir}: not a directory")
        if not workdir.exists() and not (workdir.parent if str(workdir.parent) else Path(".")).is_dir():
            parser.error(f"--workdir {args.workdir}: the folder {str(workdir.parent)!r} does not exist")
    if args.import_timeout is not None:  # for every run; without it, the runs read the project's setting
        extra = [f"--import-timeout={args.import_timeout:g}"] + list(extra)
    if args.expect_failures is not None:
        try:
            read_findings(args.expect_failures)
        except FindingsError as e:
            parser.error(f"--expect-failures: {e}")
        # the known findings fail in every run (strict xfails): a kill is a new failure
        extra = [f"--expect-failures={Path(args.expect_failures).resolve()}"] + list(extra)
    return args, extra


def select(mutants, only):
    """The mutants named by `only` (a list of names, or a comma-separated string), or all of them."""
    if only is None:
        return tuple(mutants)
    names = _names(only) if isinstance(only, str) else list(only)
    by_name = {m.name: m for m in mutants}
    unknown = [n for n in names if n not in by_name]
    if unknown:
        raise BadOption(f"unknown mutant(s) {', '.join(unknown)}; see --list")
    return tuple(by_name[n] for n in names)


def main(argv=None):
    from rich.console import Console
    args, extra = parse_args(sys.argv[1:] if argv is None else argv)
    # wide enough, when piped to a log, for a killing test's node id on one line
    console = Console(highlight=False, width=None if sys.stdout.isatty() else 200)
    try:
        # SIGTERM takes the way of Ctrl-C: the runs are stopped, the mutated copies removed
        with terminate_like_interrupt():
            return _main(args, extra, console)
    except KeyboardInterrupt as e:
        console.print(f"[bold red]{'terminated' if isinstance(e, Terminated) else 'interrupted'}[/]")
        return Exit.INTERRUPTED


def _main(args, extra, console):
    control_failure = None
    try:
        catalog = load_catalog(args.catalog) if args.catalog else MUTANTS
        check_catalog(catalog)
        mutants = select(catalog, args.only)
        if args.list:
            console.print(catalog_table(mutants))
            return Exit.OK
        card = _card(args)
        if args.diff:
            path, own = resolve_target(args.gpt_impl)
            (m,) = select(catalog, [args.diff])
            source = module_source(m, path.read_text(), path)
            if source is None:
                sys.stdout.write(f"{m.name}: not applicable to {display(path, args.root)}: it has no "
                                 f"{m.file_name} beside it\n")
                return Exit.OK
            shown = path if m.module == "gpt" else path.parent / m.file_name
            sys.stdout.write(diff(m, source, display(shown, args.root), own, card))
            return Exit.OK

        path, _ = resolve_target(args.gpt_impl)
        target = display(path, args.root)
        fingerprint = fingerprint_of(path, args.root)
        console.print(f"mutating {target}: {len(mutants)} mutants, {args.jobs} jobs"
                      + (f", pytest {' '.join(extra)}" if extra else ""))
        done = [0]

        def progress(result, seconds, n_runs):
            if result is None:
                console.print(f"  control passed the suite in {seconds:.1f} s", soft_wrap=True)
                return
            done[0] += 1
            who = result.killed_by or (result.detail.splitlines() or [""])[0]
            console.print(f"  [{done[0]}/{n_runs}] {result.name}: [{STYLE[result.status]}]{result.status}[/] "
                          f"{escape(who)} ({seconds:.1f} s)", soft_wrap=True)

        started = time.monotonic()
        try:
            # every run names the card: a copy of the implementation in a temporary folder must not find its own
            results = run_catalog(mutants, args.gpt_impl, card=card, root=args.root, jobs=args.jobs, extra=extra,
                                  timeout=args.timeout, workdir=args.workdir, progress=progress,
                                  use_fork=False if args.no_fork else None, architecture=str(card.path))
        except ControlFailed as e:
            # nothing can be scored, but the report still needs to say so, and which mutants are stale
            console.print(f"[bold red]harness failure:[/] {escape(str(e))}")
            results, control_failure = e.results, e.reason or "the control run failed"
        elapsed = time.monotonic() - started
        if fingerprint_of(path, args.root) != fingerprint:
            raise HarnessFailure("the sources changed during the run: its results belong to no single tree; "
                                 "run it again without editing")
    except HarnessFailure as e:
        kind = {Exit.USAGE: "error", Exit.CATALOG: "catalog bug"}.get(e.exit_status, "harness failure")
        console.print(f"[bold red]{kind}:[/] {escape(str(e))}")
        return e.exit_status
    except KeyboardInterrupt as e:
        console.print(f"[bold red]{'terminated' if isinstance(e, Terminated) else 'interrupted'}[/]")
        return Exit.INTERRUPTED

    if control_failure is None:
        report(console, results, target, elapsed, args.jobs)
    for r in results:
        if r.status == "stale":
            console.print(f"[bold yellow]{r.name}[/]: stale, the catalog needs attention: {escape(r.detail)}")
    if args.json:
        Path(args.json).parent.mkdir(exist_ok=True)  # the project's state folder, checked by parse_args
        Path(args.json).write_text(to_json(results, target, extra, fingerprint, control_failure))
    return Exit.HARNESS if control_failure else exit_status(results)


def report(console, results, target, elapsed, jobs):
    t = totals(results)
    console.print(results_table(results, f"mutants of {target}"))
    for r in results:
        if r.status == "harness_error":
            console.print(f"[bold yellow]{r.name}[/]: {escape(r.detail)}")
    score = f"{t['killed']}/{t['total']} killed" + (f" ({100 * t['killed'] / t['total']:.0f}%)" if t["total"] else "")
    others = ", ".join(f"{t[s]} {s}" for s in ("survived", "harness_error", "equivalent", "not_applicable", "stale")
                       if t[s])
    console.print(f"{score}; {others or 'nothing else'}; {elapsed:.1f} s with {jobs} jobs")


def _card(args):
    """The card the runs verify against, chosen as pytest would choose it (nanochat_verify/base.py)."""
    from nanochat_verify.base import choose_card
    from nanochat_verify.card import CardError
    from nanochat_verify.settings import default_implementation_file
    path, _ = resolve_target(args.gpt_impl)
    try:
        return choose_card(args.settings, path, args.architecture, default_implementation_file(args.settings))[0]
    except CardError as e:
        raise BadOption(str(e)) from None


if __name__ == "__main__":
    sys.exit(main())
