"""
Mutation testing: how strong is the suite? Each mutant of the catalog (nanochat/mutants.py) is a
copy of a contract implementation with one small, realistic bug; the suite runs against the copy
(`pytest --gpt-impl COPY`) and should fail. A mutant is *killed* when a test fails (or errors in
setup), and the first failing test is reported as its killer; it *survives* when the whole suite
passes: the property it breaks is untested.

Run it from anywhere: the runs happen in the project root, so paths after `--` are relative to it
(a --gpt-impl path is relative to where you are):

    python -m nanochat.mutation                      # the whole catalog against nanochat/gpt.py
    python -m nanochat.mutation --list               # print the catalog
    python -m nanochat.mutation --diff attn_unmasked # show one mutant as a diff of its target
    python -m nanochat.mutation --only softcap_30,mlp_relu --jobs 2 --json mutation.json
    python -m nanochat.mutation --gpt-impl path/to/other_gpt.py   # or a dotted module name
    python -m nanochat.mutation --only mlp_relu -- tests/test_mlp.py   # after --: extra pytest args
    python -m nanochat.mutation --only mlp_relu --workdir /tmp/m  # keep the copy, its log and outcomes

Statuses: `killed`, `survived`, `equivalent` (no test of the contract can detect it; not run, not
scored), `harness_error` (the copy failed to import, pytest could not run, crashed or timed out:
never a kill), `not_applicable` (the mutant's target text is not in another implementation),
`stale` (its target text is no longer in the project's own nanochat/gpt.py, e.g. after an
architecture change: the catalog entry needs updating; the other mutants still run) and `not_run`
(the control failed, so nothing was scored).
The score is killed / total, total = the mutants that were run (killed + survived + harness_error).
Exit status: 1 if any mutant survives, else 2 on a harness error, a failing control run or a usage
error, else 3 if a mutant is stale (the catalog needs attention), else 0.

How it runs: an unmutated copy (the *control*) must pass the suite, else nothing is scored (with
--json, the result then says `"control": "failed"` and why, so that the report can say so). Every
run is `pytest -x --gpt-impl COPY --prioritize-component ID`, so it stops at the first failure
and starts with the tests of the component the mutant breaks (then the rest of its table row, then
the oracle and validation tests, then the others). A copy of the project's own gpt.py also gets
`--with-extras`, so its `project_only` tests (ValueErrors, generate, estimate_flops) run too; another
implementation is verified on the contract alone, and the mutants of project-only features
(`own_only`) are not applicable to it. On Linux one parent process imports torch, pytest and hypothesis once and
forks a child per mutant (single-threaded when --jobs > 1); elsewhere, or once the parent has
threads that fork would not copy safely, each run is a fresh `python -m pytest` subprocess.

`--json PATH` writes the deterministic result for the generated COVERAGE.md (sorted by name, no
timings, no temporary paths): {"fingerprint", "target", "control": "passed" or "failed",
"control_failure", "pytest_args", "mutants": [{"name", "component", "description", "status",
"killed_by"}], "totals": {each status, "total"}}. The fingerprint is that of the sources the run
started from (nanochat.cli.tree_fingerprint); a run during which they changed writes nothing.

Adding a mutant: append an entry to MUTANTS in nanochat/mutants.py with a short snake_case name,
the component key or sub-component ID (nanochat/components.py) it breaks, a one-line description
of the bug, and either exact-text `edits` ("old", "new") of nanochat/gpt.py (each `old` must occur
exactly once, or the catalog test fails) or an `append`ed override that rebinds a contract name
(`norm`, `apply_rotary_emb`, `GPT.forward`, `GPT.__init__`), which also applies to other
implementations. Check it with `--diff NAME`, then `--only NAME`. Mark it `equivalent=True` only
with an argument, in the description, that no test of the contract could ever detect it.
"""

import argparse
import difflib
import gc
import importlib
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass
from pathlib import Path

from nanochat.cli import PROJECT_ROOT, OneLineParser, positive_float, source_checkout_problem, tree_fingerprint, unwritable
from nanochat.components import expand
from nanochat.mutants import MUTANTS, NotApplicable

OWN_IMPL = PROJECT_ROOT / "nanochat" / "gpt.py"
STATUSES = ("killed", "survived", "equivalent", "harness_error", "not_applicable", "stale", "not_run")
DEFAULT_CONTROL_LIMIT = 900  # seconds for the control run when no --timeout is given
EXIT_NAMES = {0: "all tests passed", 1: "tests failed", 2: "interrupted (a collection error?)",
              3: "pytest internal error", 4: "pytest usage error (did the copy import?)", 5: "no tests collected"}
TIMED_OUT = "timeout"  # the exit "code" of a run that was killed for running too long
CONTROL = "_control"  # the unmutated copy (mutant names start with a letter, so never this)


class HarnessFailure(Exception):
    """The runner cannot produce a meaningful result (bad target, catalog bug, failing control)."""


@dataclass
class Result:
    name: str
    component: str
    description: str
    status: str
    killed_by: str | None = None
    detail: str = ""  # console only: why a run was a harness error, or not applicable
    seconds: float | None = None  # console only: timings stay out of the JSON

    def as_json(self):
        return {"name": self.name, "component": self.component, "description": self.description,
                "status": self.status, "killed_by": self.killed_by}


# ---- the target and its mutated copies ----------------------------------------------------------

def resolve_target(spec):
    """(source path, is the project's own gpt.py) for a .py path, a nanochat checkout or a dotted module name."""
    from nanochat.contract import ContractError, is_path, resolve_path
    if is_path(spec):
        try:
            path = resolve_path(spec)
        except ContractError as e:
            raise HarnessFailure(str(e)) from None
    else:
        try:
            found = importlib.util.find_spec(spec)
        except (ImportError, ValueError) as e:
            raise HarnessFailure(f"--gpt-impl {spec!r}: no importable module of that name ({e})") from e
        if found is None or not found.origin or not found.origin.endswith(".py"):
            raise HarnessFailure(f"--gpt-impl {spec!r}: no Python source file for that module")
        path = Path(found.origin).resolve()
    if not path.is_file():
        raise HarnessFailure(f"--gpt-impl {spec!r}: no such file")
    return path, path == OWN_IMPL


def apply_mutant(mutant, source, card=None):
    """The one place a catalog entry is applied to a source text, with the architecture card its
    texts are written for (None: the project's)."""
    return mutant.apply(source, card)


def write_copy(workdir, name, text, source_path):
    """The file a mutated (or the control) source runs from. A source inside a package folder (a
    nanochat checkout's nanochat/gpt.py) gets a package folder of its own, in which every other module
    is a link to the original, so that its `from nanochat.X import ...` still resolve. A copy of this
    project's own gpt.py stays a plain file: its imports are of the installed package."""
    package = source_path.parent
    if source_path == OWN_IMPL or not (package / "__init__.py").is_file():
        copy = workdir / f"{name}.py"  # this project's gpt.py imports its package as installed
    else:
        folder = workdir / name / package.name
        folder.mkdir(parents=True, exist_ok=True)
        for module in package.glob("*.py"):
            if module.name != source_path.name:
                (folder / module.name).symlink_to(module.resolve())
        copy = folder / source_path.name
    copy.write_text(text)
    return copy


# verified by project_only tests alone (generate, the ValueErrors), which do not run against another implementation
PROJECT_ONLY_TARGETS = ("inference.generate", "contract.validation")


def mutate(mutant, source, own_target, card=None):
    """(the mutant's source, "") or (None, the reason) when it does not apply to this implementation.
    Not applying to another implementation is expected; to the project's own gpt.py it means the
    catalog entry is stale (the code it targets was changed), which `catalog_status` reports."""
    if not own_target and (mutant.own_only or mutant.target in PROJECT_ONLY_TARGETS):
        return None, f"mutant {mutant.name} breaks an extra of this project's nanochat/gpt.py, not part of the contract"
    reason = unobservable_here(mutant, card)
    if reason:
        return None, reason
    missing = mutant.missing_names(source)
    if missing:
        return None, f"mutant {mutant.name} overrides {', '.join(missing)}, which this implementation does not define"
    try:
        mutated = apply_mutant(mutant, source, card)
        if mutated == source:
            raise NotApplicable(f"mutant {mutant.name} leaves the source unchanged")
        compile(mutated, f"<mutant {mutant.name}>", "exec")
        return mutated, ""
    except (NotApplicable, SyntaxError) as e:
        return None, str(e)


def unobservable_here(mutant, card=None):
    """Why the mutant cannot show on this machine or under this card ("" when it can): not applicable
    here, though the catalog entry is not stale."""
    if mutant.needs_bf16_tables and card is not None and card.rotary_dtype != "bfloat16":
        return (f"mutant {mutant.name} computes in the rotary tables' dtype, which this card keeps "
                f"{card.rotary_dtype!r}, not bfloat16: no change there")
    if mutant.needs_cuda and not _cuda_available():
        return f"mutant {mutant.name} only shows on a CUDA device, and this machine has none"
    return ""


def _cuda_available():
    import torch
    return torch.cuda.is_available()


def catalog_status(own_target):
    """The status of a mutant that does not apply: stale in the project's own model, whose catalog
    it is; simply not applicable to another implementation."""
    return "stale" if own_target else "not_applicable"


def diff(mutant, source, target_name, own_target=False, card=None):
    mutated, reason = mutate(mutant, source, own_target, card)
    if mutated is None:
        return f"{mutant.name}: not applicable to {target_name}: {reason}\n"
    return "".join(difflib.unified_diff(source.splitlines(keepends=True), mutated.splitlines(keepends=True),
                                        f"{target_name}", f"{target_name} ({mutant.name})"))


# ---- one pytest run -----------------------------------------------------------------------------

def pytest_args(impl_path, outcomes_path, prioritize=None, extra=()):
    """Stop at the first failure, no cache, no coverage, no random order; the run's own outcomes file.

    --assert=plain: a kill needs only pass or fail, and rewriting the asserts of every test module
    again in every run (nothing is cached under PYTHONDONTWRITEBYTECODE) costs more than the tests
    that kill most mutants."""
    args = ["-x", "-q", "--tb=short", "-p", "no:cacheprovider", "--no-cov", "-p", "no:randomly",
            "--assert=plain", "-W", "ignore::pytest.PytestAssertRewriteWarning",
            f"--gpt-impl={impl_path}", f"--outcomes={outcomes_path}"]
    if prioritize:
        args.append(f"--prioritize-component={prioritize}")
    return args + list(extra)


def classify(exit_code, outcomes, seconds=None):
    """(status, killed_by, detail) of a finished run from its exit code and its --outcomes JSON (or None).

    Only a run in which pytest itself ran and reported a failing (or erroring) test is a kill;
    everything else that is not a clean pass is the harness's fault, never the suite's credit."""
    if exit_code == TIMED_OUT:
        return "harness_error", None, f"timed out after {seconds:.0f} s"
    if exit_code < 0:
        return "harness_error", None, f"the run died of signal {-exit_code}"
    if exit_code not in (0, 1):
        return "harness_error", None, f"pytest exit code {exit_code}: {EXIT_NAMES.get(exit_code, 'crashed')}"
    if outcomes is None:
        return "harness_error", None, f"pytest exit code {exit_code} but no outcomes were recorded"
    tests = outcomes.get("tests", {})
    if exit_code == 0:
        if not any(t["outcome"] == "passed" for t in tests.values()):
            return "harness_error", None, "no test passed (every test skipped?)"
        return "survived", None, ""
    failing = sorted(node for node, t in tests.items() if t["outcome"] in ("failed", "error"))
    if not failing:
        return "harness_error", None, "pytest reported failures but no test failed (a session-level error?)"
    return "killed", failing[0], ""  # with -x there is exactly one


class _Forked:
    """A child forked from this process that runs pytest.main; shares the parent's imports."""

    def __init__(self, args, log_path, threads):
        for stream in (sys.stdout, sys.stderr):
            stream.flush()  # or the child would print the parent's buffered output a second time
        self.pid = os.fork()
        if self.pid == 0:
            self._child(args, log_path, threads)  # never returns

    @staticmethod
    def _child(args, log_path, threads):
        code = 70  # EX_SOFTWARE: the harness itself broke before pytest reported
        try:
            fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            os.dup2(fd, 1)
            os.dup2(fd, 2)
            os.close(fd)
            os.chdir(PROJECT_ROOT)
            if threads:
                import torch
                torch.set_num_threads(threads)
            import pytest
            code = int(pytest.main(args))
        except BaseException:  # noqa: BLE001 - report anything, then leave through os._exit
            traceback.print_exc()
        finally:
            try:
                sys.stdout.flush()
                sys.stderr.flush()
            finally:
                os._exit(code)  # never run the parent's cleanup (atexit, tempdirs) in the child

    def poll(self):
        pid, status = os.waitpid(self.pid, os.WNOHANG)
        return None if pid == 0 else os.waitstatus_to_exitcode(status)

    def kill(self):
        try:
            os.kill(self.pid, 9)
            os.waitpid(self.pid, 0)
        except (ProcessLookupError, ChildProcessError):
            pass


class _Subprocess:
    """A fresh `python -m pytest` process: the portable fallback (pays the torch import every time)."""

    def __init__(self, args, log_path, threads):
        env = dict(os.environ)
        if threads:
            env.update(OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
        with open(log_path, "wb") as log:
            self.proc = subprocess.Popen([sys.executable, "-m", "pytest", *args], cwd=PROJECT_ROOT,
                                         stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env)

    def poll(self):
        return self.proc.poll()

    def kill(self):
        self.proc.kill()
        self.proc.wait()


def _single_threaded():
    """Linux only: fork copies only the calling thread, so fork only while there is no other thread
    (a torch or BLAS thread pool in the parent could hold a lock the child then waits on forever)."""
    try:
        return len(os.listdir("/proc/self/task")) == 1
    except OSError:
        return False


def _preload():
    """Import once in the parent what every run needs, before any torch op has run (no thread pool yet)."""
    if "numpy" not in sys.modules:
        os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # else OpenBLAS starts a thread pool at import
    # hypothesis and the pytest plugins are the bulk of a run's start-up, and torch.testing.assert_close
    # imports torch.distributed.tensor (and sympy) on its first call, over a second. pytest cannot
    # rewrite the asserts of plugins imported before it starts: harmless under --assert=plain, and
    # the warning about it is silenced by the -W of pytest_args.
    for name in ("torch", "numpy", "torch.testing", "torch.distributed.tensor", "pytest", "_pytest.python",
                 "hypothesis", "_hypothesis_pytestplugin", "coverage", "pytest_cov.plugin", "xdist.plugin",
                 "xdist.looponfail", "nanochat.components", "nanochat.contract", "nanochat.engine", "nanochat.tracer"):
        try:
            importlib.import_module(name)
        except ImportError:
            pass
    # everything imported so far lives as long as the process: keep it out of the children's garbage
    # collections (pytest collects twice at exit, which otherwise walks torch's and sympy's objects)
    gc.collect()
    gc.freeze()


@dataclass
class Task:
    name: str
    copy: Path
    prioritize: str | None


def run_tasks(tasks, workdir, jobs, extra, timeout, control_limit, on_done, use_fork=None):
    """Run every task's pytest, at most `jobs` at a time; call on_done(task, exit_code, outcomes, seconds).

    The first task is the control, limited by `timeout` if given, else by control_limit. Until it
    finishes, the other runs are limited by the same; afterwards by `timeout` or, if None, 3 x the
    control's time + 30 s."""
    threads = 1 if jobs > 1 else None
    if use_fork is None:
        use_fork = hasattr(os, "fork") and sys.platform.startswith("linux")
    pending, running = list(tasks), {}
    control_limit = timeout or control_limit
    limit = control_limit
    try:
        while pending or running:
            while pending and len(running) < jobs:
                task = pending.pop(0)
                args = pytest_args(task.copy, workdir / f"{task.name}.outcomes.json", task.prioritize, extra)
                log = workdir / f"{task.name}.log"
                kind = _Forked if use_fork and _single_threaded() else _Subprocess
                running[task.name] = (task, kind(args, log, threads), time.monotonic())
            for name, (task, child, started) in list(running.items()):
                code, seconds = child.poll(), time.monotonic() - started
                if code is None and seconds > (control_limit if task is tasks[0] else limit):
                    child.kill()
                    code = TIMED_OUT
                if code is None:
                    continue
                del running[name]
                if task is tasks[0] and timeout is None:
                    limit = 3 * seconds + 30
                on_done(task, code, _read_outcomes(workdir / f"{task.name}.outcomes.json"), seconds)
            time.sleep(0.01)
    finally:
        for _, child, _ in running.values():  # interrupted (Ctrl-C or a failing control): leave no orphans
            child.kill()


def _read_outcomes(path):
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def log_tail(path, lines=15):
    try:
        return "\n".join(path.read_text(errors="replace").rstrip().splitlines()[-lines:])
    except OSError:
        return "(no log)"


class ControlFailed(HarnessFailure):
    """The unmutated copy does not pass the suite. `results`: every mutant, `not_run` unless it is
    equivalent, stale or not applicable; `reason`: the failing test or what went wrong, in one line."""

    def __init__(self, message, results=(), reason=""):
        super().__init__(message)
        self.results, self.reason = list(results), reason


def run_catalog(mutants, target_spec, *, jobs=2, extra=(), timeout=None, control_limit=DEFAULT_CONTROL_LIMIT,
                workdir=None, progress=None, use_fork=None, runner=None, architecture=None):
    """Run the control and every mutant; return the Results in catalog order. Raises HarnessFailure
    for a bad target, ControlFailed if the unmutated copy does not pass the suite.
    `runner` replaces run_tasks (the tests use it to script outcomes without running pytest)."""
    from nanochat.architecture import CardError, load_card
    source_path, own = resolve_target(target_spec)
    source = source_path.read_text()
    try:
        card = load_card(architecture)
    except CardError as e:
        raise HarnessFailure(str(e)) from None
    if (runner is None or runner is run_tasks) and use_fork is not False:
        # first: a CUDA check below imports torch, and numpy with it, whose OpenBLAS would start a
        # thread pool; a parent with threads cannot fork, and every run would pay a fresh interpreter
        _preload()
    keep = workdir is not None
    workdir = Path(workdir) if keep else Path(tempfile.mkdtemp(prefix="nanochat-mutants-"))
    workdir.mkdir(parents=True, exist_ok=True)
    try:
        results, tasks = {}, []
        tasks.append(Task(CONTROL, write_copy(workdir, "control", source, source_path), None))
        for m in mutants:
            result = Result(m.name, m.component, m.description, "")
            results[m.name] = result
            if m.equivalent:
                result.status = "equivalent"
                continue
            mutated, reason = mutate(m, source, own, card)
            if mutated is None:
                status = "not_applicable" if unobservable_here(m, card) else catalog_status(own)
                result.status, result.detail = status, reason
                continue
            tasks.append(Task(m.name, write_copy(workdir, m.name, mutated, source_path), m.target))

        runner = runner or run_tasks

        def done(task, code, outcomes, seconds):
            if task.name == CONTROL:
                status, killed_by, detail = classify(code, outcomes, seconds)
                if status != "survived":
                    why = f"the failing test is {killed_by}" if killed_by else detail
                    for r in results.values():
                        r.status = r.status or "not_run"
                    raise ControlFailed(f"the unmutated copy of {target_spec} does not pass the suite: {why}\n"
                                        f"{log_tail(workdir / f'{task.name}.log')}",
                                        [results[m.name] for m in mutants], why.splitlines()[0])
                if progress:
                    progress(None, seconds, len(tasks) - 1)
                return
            r = results[task.name]
            r.status, r.killed_by, r.detail = classify(code, outcomes, seconds)
            r.seconds = seconds
            if r.status == "harness_error":
                r.detail += "\n" + log_tail(workdir / f"{task.name}.log", 8)
            if progress:
                progress(r, seconds, len(tasks) - 1)

        # a copy of the project's own model keeps its project_only tests (ValueErrors, generate, flops)
        arch_args = [f"--architecture={architecture}"] if architecture else []
        runner(tasks, workdir, jobs, (["--with-extras"] if own else []) + arch_args + list(extra), timeout,
               control_limit, done, use_fork)
        return [results[m.name] for m in mutants]
    finally:
        if not keep:
            shutil.rmtree(workdir, ignore_errors=True)


# ---- reporting ----------------------------------------------------------------------------------

def totals(results):
    counts = {s: sum(r.status == s for r in results) for s in STATUSES}
    return {**counts, "total": counts["killed"] + counts["survived"] + counts["harness_error"]}


def to_json(results, target, extra=(), fingerprint=None, control_failure=None):
    """The machine-readable result: deterministic (sorted by name, no timings, no temp paths).
    `fingerprint` identifies the sources it was run on, so a report can refuse stale results;
    `control_failure` says why the unmutated copy failed the suite (then nothing is scored)."""
    data = {
        "fingerprint": fingerprint,
        "target": target,
        "control": "failed" if control_failure else "passed",
        "control_failure": control_failure,
        "pytest_args": list(extra),
        "mutants": [r.as_json() for r in sorted(results, key=lambda r: r.name)],
        "totals": totals(results),
    }
    return json.dumps(data, indent=1, sort_keys=True) + "\n"


def exit_status(results):
    if any(r.status == "survived" for r in results):
        return 1
    if any(r.status == "harness_error" for r in results):
        return 2
    return 3 if any(r.status == "stale" for r in results) else 0


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


# ---- command line -------------------------------------------------------------------------------

def load_catalog(spec):
    """MUTANTS of another catalog module (a .py path or dotted name), e.g. a fork's own mutants;
    HarnessFailure in one line when it cannot be loaded."""
    from nanochat.contract import is_path
    try:
        if is_path(spec):
            path = Path(spec).resolve()
            if not path.is_file():
                raise HarnessFailure(f"--catalog {spec!r}: no such file")
            module_spec = importlib.util.spec_from_file_location("_mutation_catalog", path)
            module = importlib.util.module_from_spec(module_spec)
            module_spec.loader.exec_module(module)
        else:
            module = importlib.import_module(spec)
        return tuple(module.MUTANTS)
    except HarnessFailure:
        raise
    except ModuleNotFoundError as e:
        raise HarnessFailure(f"--catalog {spec!r}: no importable module of that name ({e}); "
                             "name a .py file or a dotted module that defines MUTANTS") from None
    except AttributeError:
        raise HarnessFailure(f"--catalog {spec!r} defines no MUTANTS") from None
    except Exception as e:  # noqa: BLE001 - a user's catalog may raise anything at import
        raise HarnessFailure(f"--catalog {spec!r}: importing it failed: {type(e).__name__}: {e}") from None


def check_catalog(mutants):
    """Fail before running anything on a catalog bug: a bad or duplicate name, an unknown component ID."""
    from nanochat.mutants import NAME_PATTERN
    seen = set()
    for m in mutants:
        if not NAME_PATTERN.match(m.name) or m.name in seen:
            problem = "a duplicate" if m.name in seen else "not snake_case"
            raise HarnessFailure(f"catalog bug: mutant name {m.name!r} is {problem}")
        seen.add(m.name)
        try:
            expand(m.target)
        except ValueError as e:
            raise HarnessFailure(f"catalog bug: mutant {m.name}: {e}") from None
        if not m.description.strip() or "\n" in m.description:
            raise HarnessFailure(f"catalog bug: mutant {m.name} needs a one-line description")


def _names(text):
    """An --only list: comma-separated mutant names, at least one."""
    names = [n.strip() for n in text.split(",") if n.strip()]
    if not names:
        raise argparse.ArgumentTypeError(f"names no mutant ({text!r}); give NAME[,NAME...], see --list")
    return names


def _jobs(text):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {text!r}")
    return value


def parse_args(argv):
    argv = list(argv)
    extra = []
    if "--" in argv:  # everything after -- goes to pytest unchanged
        i = argv.index("--")
        argv, extra = argv[:i], argv[i + 1:]
    parser = OneLineParser(prog="python -m nanochat.mutation",
                           description="Run the mutant catalog against the test suite.",
                           epilog="Arguments after -- are passed to pytest (run in the project root). Exit status: "
                                  "0 every mutant killed, 1 a survivor, 2 a harness error, failing control or usage "
                                  "error, 3 a stale mutant (the catalog needs attention), 130 interrupted.")
    parser.add_argument("--gpt-impl", default="nanochat.gpt", metavar="PATH_OR_MODULE",
                        help="implementation to mutate (default: nanochat.gpt)")
    parser.add_argument("--architecture", default=None, metavar="NAME_OR_PATH",
                        help="architecture card the suite verifies against, and the mutants' texts are written for "
                             "(default: the project's)")
    parser.add_argument("--expect-failures", default=None, metavar="PATH",
                        help="the known findings of the implementation (see pytest --expect-failures): left out of "
                             "every run, so that the control passes and a kill is a new failure")
    parser.add_argument("--list", action="store_true", help="print the catalog and exit")
    parser.add_argument("--diff", metavar="NAME", help="print one mutant as a diff of the target and exit")
    parser.add_argument("--only", type=_names, metavar="NAME[,NAME]", help="run only these mutants")
    parser.add_argument("--jobs", type=_jobs, default=2, metavar="N", help="parallel runs (default 2)")
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
    if not args.gpt_impl.strip():
        parser.error("--gpt-impl is empty: name a .py file or a dotted module (default nanochat.gpt)")
    if args.catalog is not None and not args.catalog.strip():
        parser.error("--catalog is empty: name a .py file or a dotted module that defines MUTANTS")
    if args.json is not None:
        problem = unwritable(args.json)
        project_cache = Path(args.json).resolve().parent == PROJECT_ROOT / ".nanochat"  # made on demand
        if problem and not (project_cache and not Path(args.json).is_dir()):
            parser.error(f"--json {args.json}: {problem}")
    if args.workdir is not None:
        workdir = Path(args.workdir)
        if workdir.exists() and not workdir.is_dir():
            parser.error(f"--workdir {args.workdir}: not a directory")
        if not workdir.exists() and not (workdir.parent if str(workdir.parent) else Path(".")).is_dir():
            parser.error(f"--workdir {args.workdir}: the folder {str(workdir.parent)!r} does not exist")
    if not (args.list or args.diff):
        problem = source_checkout_problem(parser.prog, PROJECT_ROOT)
        if problem:
            parser.error(problem)
    if args.expect_failures is not None:
        from nanochat.cli import read_expected_failures
        try:
            expected = read_expected_failures(args.expect_failures)
        except OSError as e:
            parser.error(f"--expect-failures {args.expect_failures}: {e.strerror or e}")
        except ValueError as e:
            parser.error(f"--expect-failures: {e}")
        extra = [f"--deselect={nodeid}" for nodeid in expected] + list(extra)
    return args, extra


def select(mutants, only):
    """The mutants named by `only` (a list of names, or a comma-separated string), or all of them."""
    if only is None:
        return tuple(mutants)
    names = _names(only) if isinstance(only, str) else list(only)
    by_name = {m.name: m for m in mutants}
    unknown = [n for n in names if n not in by_name]
    if unknown:
        raise HarnessFailure(f"unknown mutant(s) {', '.join(unknown)}; see --list")
    return tuple(by_name[n] for n in names)


def fingerprint_of(path):
    """The sources a mutation result speaks for (the same hash as the plugin's outcomes carry)."""
    return tree_fingerprint(PROJECT_ROOT, extra=() if path == OWN_IMPL else (path,))


def main(argv=None):
    from rich.console import Console
    args, extra = parse_args(sys.argv[1:] if argv is None else argv)
    # wide enough, when piped to a log, for a killing test's node id on one line
    console = Console(highlight=False, width=None if sys.stdout.isatty() else 200)
    control_failure = None
    try:
        catalog = load_catalog(args.catalog) if args.catalog else MUTANTS
        check_catalog(catalog)
        mutants = select(catalog, args.only)
        if args.list:
            console.print(catalog_table(mutants))
            return 0
        if args.diff:
            path, _ = resolve_target(args.gpt_impl)
            (m,) = select(catalog, [args.diff])
            sys.stdout.write(diff(m, path.read_text(), _display_target(args.gpt_impl, path), path == OWN_IMPL,
                                  _card(args.architecture)))
            return 0

        path, _ = resolve_target(args.gpt_impl)
        target = _display_target(args.gpt_impl, path)
        fingerprint = fingerprint_of(path)
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
            results = run_catalog(mutants, args.gpt_impl, jobs=args.jobs, extra=extra, timeout=args.timeout,
                                  workdir=args.workdir, progress=progress, use_fork=False if args.no_fork else None,
                                  architecture=args.architecture)
        except ControlFailed as e:
            # nothing can be scored, but the report still needs to say so, and which mutants are stale
            console.print(f"[bold red]harness failure:[/] {escape(str(e))}")
            results, control_failure = e.results, e.reason or "the control run failed"
        elapsed = time.monotonic() - started
        if fingerprint_of(path) != fingerprint:
            raise HarnessFailure("the sources changed during the run: its results belong to no single tree; "
                                 "run it again without editing")
    except HarnessFailure as e:
        console.print(f"[bold red]harness failure:[/] {escape(str(e))}")
        return 2
    except KeyboardInterrupt:
        console.print("[bold red]interrupted[/]")
        return 130

    if control_failure is None:
        report(console, results, target, elapsed, args.jobs)
    for r in results:
        if r.status == "stale":
            console.print(f"[bold yellow]{r.name}[/]: stale, the catalog needs attention: {escape(r.detail)}")
    if args.json:
        Path(args.json).parent.mkdir(exist_ok=True)  # the project's .nanochat/, checked by parse_args
        Path(args.json).write_text(to_json(results, target, extra, fingerprint, control_failure))
    return 2 if control_failure else exit_status(results)


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


def _card(architecture):
    from nanochat.architecture import CardError, load_card
    try:
        return load_card(architecture)
    except CardError as e:
        raise HarnessFailure(str(e)) from None


def _display_target(spec, path):
    """How the target appears in reports: project-relative for the project's own files, else as given."""
    try:
        return str(path.relative_to(PROJECT_ROOT))
    except ValueError:
        return spec


if __name__ == "__main__":
    sys.exit(main())
