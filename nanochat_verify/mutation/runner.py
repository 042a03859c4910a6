"""
Mutation testing: how strong is the suite? Each mutant of the catalog (nanochat_verify/mutation/catalog/) is a
copy of a contract implementation with one small, realistic bug; the suite runs against the copy
(`pytest --gpt-impl COPY`) and should fail. A mutant is *killed* when a test fails (or errors in
setup), and the first failing test is reported as its killer; it *survives* when the whole suite
passes: the property it breaks is untested.

The runs happen in the project root (the checkout you are in: this project, or a fork with the kit
installed), so paths after `--` are relative to it (a --gpt-impl path is relative to where you are):

    python -m nanochat_verify.mutation                      # the whole catalog against the project's nanochat/gpt.py
    python -m nanochat_verify.mutation --list               # print the catalog
    python -m nanochat_verify.mutation --diff attn_unmasked # show one mutant as a diff of its target
    python -m nanochat_verify.mutation --only softcap_30,mlp_relu --jobs 2 --json mutation.json
    python -m nanochat_verify.mutation --gpt-impl path/to/other_gpt.py   # or a dotted module name
    python -m nanochat_verify.mutation --only mlp_relu -- tests/test_mlp.py   # after --: extra pytest args
    python -m nanochat_verify.mutation --only mlp_relu --workdir /tmp/m  # keep the copy, its log and outcomes

Statuses: `killed`, `survived`, `equivalent` (no test of the contract can detect it; not run, not
scored), `harness_error` (the copy failed to import, pytest could not run, crashed or timed out:
never a kill), `not_applicable` (the mutant's target text is not in another implementation),
`stale` (its target text is no longer in the project's own nanochat/gpt.py, e.g. after an
architecture change: the catalog entry needs updating; the other mutants still run) and `not_run`
(the control failed, so nothing was scored).
The score is killed / total, total = the mutants that were run (killed + survived + harness_error).
Exit status (nanochat_verify/exits.py): 1 if any mutant survives, else 5 on a harness error or a failing
control run, else 4 if a mutant is stale (the catalog needs attention), else 0; 2 a usage error.

How it runs: an unmutated copy (the *control*) must pass the suite, else nothing is scored (with
--json, the result then says `"control": "failed"` and why, so that the report can say so). Every
run is `pytest -x --gpt-impl COPY --prioritize-component ID`, so it stops at the first failure
and starts with the tests of the component the mutant breaks (then the rest of its table row, then
the oracle and validation tests, then the others). A copy of the project's own gpt.py also gets
`--with-extras`, so its `project_only` tests (its ValueErrors) run too; another
implementation is verified on the contract alone, and the mutants of project-only features
(`own_only`) are not applicable to it. On Linux one parent process imports torch, pytest and hypothesis once and
forks a child per mutant (single-threaded when --jobs > 1); elsewhere, or once the parent has
threads that fork would not copy safely, each run is a fresh `python -m pytest` subprocess.

`--json PATH` writes the deterministic result for the generated COVERAGE.md (sorted by name, no
timings, no temporary paths): {"fingerprint", "target", "control": "passed" or "failed",
"control_failure", "pytest_args", "mutants": [{"name", "component", "description", "status",
"killed_by"}], "totals": {each status, "total"}}. The fingerprint is that of the sources the run
started from (nanochat_verify.fingerprint.tree_fingerprint); a run during which they changed writes nothing.

Adding a mutant: see nanochat_verify/mutation/catalog/__init__.py.
"""

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

from nanochat_verify.commandline import default_signals, terminate_like_interrupt
from nanochat_verify.exits import Exit
from nanochat_verify.fingerprint import implementation_files, tree_fingerprint
from nanochat_verify.mutation.mutant import NotApplicable
from nanochat_verify.paths import SUITE_DIR, is_own_model


STATUSES = ("killed", "survived", "equivalent", "harness_error", "not_applicable", "stale", "not_run")
DEFAULT_CONTROL_LIMIT = 900  # seconds for the control run when no --timeout is given
EXIT_NAMES = {0: "all tests passed", 1: "tests failed", 2: "interrupted (a collection error?)",
              3: "pytest internal error", 4: "pytest usage error (did the copy import?)", 5: "no tests collected"}
TIMED_OUT = "timeout"  # the exit "code" of a run that was killed for running too long
CONTROL = "_control"  # the unmutated copy (mutant names start with a letter, so never this)


class HarnessFailure(Exception):
    """The runner cannot produce a meaningful result (bad target, failing control)."""
    exit_status = Exit.HARNESS


class BadOption(HarnessFailure):
    """An option names nothing usable (a target, a catalog, a mutant)."""
    exit_status = Exit.USAGE


class CatalogBug(HarnessFailure):
    """The catalog itself is wrong: a bad or duplicate name, an unknown component, a two-line description."""
    exit_status = Exit.CATALOG


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
    from nanochat_verify.contract import ContractError, is_path, resolve_path
    if is_path(spec):
        try:
            path = resolve_path(spec)
        except ContractError as e:
            raise BadOption(str(e)) from None
    else:
        try:
            found = importlib.util.find_spec(spec)
        except (ImportError, ValueError) as e:
            raise BadOption(f"--gpt-impl {spec!r}: no importable module of that name ({e})") from e
        if found is None or not found.origin or not found.origin.endswith(".py"):
            raise BadOption(f"--gpt-impl {spec!r}: no Python source file for that module")
        path = Path(found.origin).resolve()
    if not path.is_file():
        raise BadOption(f"--gpt-impl {spec!r}: no such file")
    return path, is_own_model(path)


def apply_mutant(mutant, source, card=None):
    """The one place a catalog entry is applied to a source text, with the architecture card its
    texts are written for (None: the project's)."""
    return mutant.apply(source, card)


def write_copy(workdir, name, text, source_path, module_file=None):
    """The file a mutated (or the control) source runs from. A source inside a package folder (a
    nanochat checkout's nanochat/gpt.py, this project's included) gets a package folder of its own, in
    which every other module is a link to the original, so that its `from nanochat.X import ...` still
    resolve to its own package. With `module_file` (a mutant of the package's engine.py), `text` is that
    module's and the implementation itself is copied as it is (a link would resolve to the original package)."""
    package = source_path.parent
    if not (package / "__init__.py").is_file():
        copy = workdir / f"{name}.py"
        copy.write_text(text)
        return copy
    folder = workdir / name / package.name
    folder.mkdir(parents=True, exist_ok=True)
    written = {module_file or source_path.name: text}
    if module_file:
        written[source_path.name] = source_path.read_text()
    for module in package.glob("*.py"):
        if module.name not in written:
            (folder / module.name).symlink_to(module.resolve())
    for file_name, content in written.items():
        (folder / file_name).write_text(content)
    return folder / source_path.name


def module_source(mutant, source, source_path):
    """The text a mutant edits: the implementation's own (module "gpt"), or that of the module of its package it
    names (engine.py beside gpt.py); None when the implementation has no such module."""
    if mutant.module == "gpt":
        return source
    path = source_path.parent / mutant.file_name
    if not (source_path.parent / "__init__.py").is_file() or not path.is_file():
        return None
    return path.read_text()


# verified by project_only tests alone (the ValueErrors), which do not run against another implementation
PROJECT_ONLY_TARGETS = ("contract.validation",)


def mutate(mutant, source, own_target, card=None):
    """(the mutant's source, "") or (None, the reason) when it does not apply to this implementation.
    Not applying to another implementation is expected; to the project's own gpt.py it means the
    catalog entry is stale (the code it targets was changed), which `catalog_status` reports."""
    if not own_target and (mutant.own_only or mutant.target in PROJECT_ONLY_TARGETS):
        return None, (f"mutant {mutant.name} breaks an extra of this project's nanochat/{mutant.file_name}, not part "
                      f"of the contract")
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
    """The mutant as a diff of `source`, the text of the module it edits (`target_name` names that file)."""
    mutated, reason = mutate(mutant, source, own_target, card)
    if mutated is None:
        return f"{mutant.name}: not applicable to {target_name}: {reason}\n"
    return "".join(difflib.unified_diff(source.splitlines(keepends=True), mutated.splitlines(keepends=True),
                                        f"{target_name}", f"{target_name} ({mutant.name})"))


# ---- one pytest run -----------------------------------------------------------------------------

def pytest_args(impl_path, outcomes_path, root, prioritize=None, extra=()):
    """A run of the suite (`extra` starts with its path: the kit's tests/, wherever it is installed) with the
    kit's plugin, in the project root; stop at the first failure, no cache, no coverage, no random order;
    the run's own outcomes file.

    --assert=plain: a kill needs only pass or fail, and rewriting the asserts of every test module
    again in every run (nothing is cached under PYTHONDONTWRITEBYTECODE) costs more than the tests
    that kill most mutants."""
    args = [f"--rootdir={root}", "-p", "nanochat_verify.plugin",
            "-x", "-q", "--tb=short", "-p", "no:cacheprovider", "--no-cov", "-p", "no:randomly",
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

    def __init__(self, args, log_path, threads, root):
        for stream in (sys.stdout, sys.stderr):
            stream.flush()  # or the child would print the parent's buffered output a second time
        self.pid = os.fork()
        if self.pid == 0:
            self._child(args, log_path, threads, root)  # never returns

    @staticmethod
    def _child(args, log_path, threads, root):
        code = 70  # EX_SOFTWARE: the harness itself broke before pytest reported
        default_signals()  # the parent's SIGTERM handler cleans up the parent's things, not a child's
        try:
            fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            os.dup2(fd, 1)
            os.dup2(fd, 2)
            os.close(fd)
            os.chdir(root)
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

    def __init__(self, args, log_path, threads, root):
        env = dict(os.environ)
        if threads:
            env.update(OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
        with open(log_path, "wb") as log:
            self.proc = subprocess.Popen([sys.executable, "-m", "pytest", *args], cwd=root,
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
                 "xdist.looponfail", "nanochat_verify.components", "nanochat_verify.contract", "nanochat_verify.trace.hooks",
                 "nanochat_verify.plugin"):
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


def run_tasks(tasks, workdir, jobs, extra, timeout, control_limit, on_done, use_fork=None, root=None):
    """Run every task's pytest in the project at `root`, at most `jobs` at a time; call
    on_done(task, exit_code, outcomes, seconds).

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
                args = pytest_args(task.copy, workdir / f"{task.name}.outcomes.json", root, task.prioritize, extra)
                log = workdir / f"{task.name}.log"
                kind = _Forked if use_fork and _single_threaded() else _Subprocess
                running[task.name] = (task, kind(args, log, threads, root), time.monotonic())
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


# SIGTERM takes the way of Ctrl-C: the runs are stopped (run_tasks) and the mutated copies removed (below)
@terminate_like_interrupt()
def run_catalog(mutants, target_spec, *, card, root, jobs=2, extra=(), timeout=None,
                control_limit=DEFAULT_CONTROL_LIMIT, workdir=None, progress=None, use_fork=None, runner=None,
                architecture=None, suite=None):
    """Run the control and every mutant in the project at `root`, verified against `card` (named by
    `architecture` on the runs' command lines); return the Results in catalog order. Raises HarnessFailure
    for a bad target, ControlFailed if the unmutated copy does not pass the suite.
    `suite`: the test paths to run (default: the kit's suite); `runner` replaces run_tasks (the tests use
    both to run a fixture suite, or to script outcomes without running pytest)."""
    source_path, own = resolve_target(target_spec)
    source = source_path.read_text()
    if (runner is None or runner is run_tasks) and use_fork is not False:
        # first: a CUDA check below imports torch, and numpy with it, whose OpenBLAS would start a
        # thread pool; a parent with threads cannot fork, and every run would pay a fresh interpreter
        _preload()
    keep = workdir is not None
    workdir = Path(workdir) if keep else Path(tempfile.mkdtemp(prefix="nanochat-verify-mutants-"))
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
            text = module_source(m, source, source_path)
            if text is None:
                result.status = catalog_status(own)
                result.detail = f"mutant {m.name} edits {m.file_name}, which {target_spec} has not beside it"
                continue
            mutated, reason = mutate(m, text, own, card)
            if mutated is None:
                status = "not_applicable" if unobservable_here(m, card) else catalog_status(own)
                result.status, result.detail = status, reason
                continue
            module_file = None if m.module == "gpt" else m.file_name
            tasks.append(Task(m.name, write_copy(workdir, m.name, mutated, source_path, module_file), m.target))

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

        # a copy of the project's own model keeps its project_only tests (its ValueErrors)
        arch_args = [f"--architecture={architecture}"] if architecture else []
        suite = [str(SUITE_DIR)] if suite is None else list(suite)
        runner(tasks, workdir, jobs, suite + (["--with-extras"] if own else []) + arch_args + list(extra), timeout,
               control_limit, done, use_fork, root)
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
        return Exit.NOT_VERIFIED
    if any(r.status == "harness_error" for r in results):
        return Exit.HARNESS
    return Exit.CATALOG if any(r.status == "stale" for r in results) else Exit.OK


def fingerprint_of(path, root):
    """The sources a mutation result speaks for (the same hash as the plugin's outcomes carry)."""
    return tree_fingerprint(implementation_files(path), root)
