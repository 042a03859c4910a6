"""
The runs a fresh report starts: the whole suite once (with line coverage and the run record), and the
mutation catalog, each in the project root, each within a time limit, each in a process group of its own
that is stopped with the report.
"""

import contextlib
import os
import signal
import subprocess
import sys

from nanochat_verify.commandline import terminate_like_interrupt
from nanochat_verify.paths import SUITE_DIR, is_own_model
from nanochat_verify.report.inputs import Refused

# the project's [tool.coverage] would name a checkout's nanochat/gpt.py "nanochat/gpt.py" (relative_files), the
# name of this project's own file: the runs the report starts record absolute paths instead
COVERAGE_RC = "[run]\nbranch = False\nrelative_files = False\ndisable_warnings = module-not-measured\n"


GRACE = 10.0  # seconds a stopped run gets to clean up (the mutation run removes its copies) before SIGKILL


def run_with_limit(cmd, *, cwd, env, timeout, what):
    """Run `cmd` (its output to our stderr) within `timeout` seconds; Refused when it overruns. The
    child gets its own process group, so that the xdist workers it starts are stopped with it: on an
    overrun, Ctrl-C or SIGTERM, the group gets SIGTERM, then SIGKILL what is left after GRACE seconds."""
    with terminate_like_interrupt():
        proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=sys.stderr, stdin=subprocess.DEVNULL,
                                start_new_session=True)
        try:
            return proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise Refused(f"{what} took longer than {timeout:g} s and was stopped; fix the hang, or allow more "
                          f"time with --timeout SECONDS") from None
        finally:
            stop_group(proc)


def stop_group(proc):
    """Leave no process of `proc`'s group behind: SIGTERM first (a tool it started can remove its temporary
    folders), SIGKILL for whatever is still there."""
    if proc.poll() is not None:
        return  # it ended by itself (and stopped its own workers)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=GRACE)
    except subprocess.TimeoutExpired:
        pass
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)  # what is left of the group: xdist workers, a mutation run's children
    proc.wait()


def pytest_subprocess(args, *, cwd, env, timeout):
    """The default way to run the suite: `python -m pytest ARGS` in the project root."""
    return run_with_limit([sys.executable, "-m", "pytest", *args], cwd=cwd, env={**os.environ, **env},
                          timeout=timeout, what="the test run")


def suite_arguments(args, project, outcomes, coverage_rc, suite=None):
    """The whole suite (`suite`: its paths; default the kit's, wherever it is installed), with the kit's plugin,
    in the project root."""
    suite = [str(SUITE_DIR)] if suite is None else list(suite)
    out = [*suite, f"--rootdir={project.root}", "-p", "nanochat_verify.plugin", "-q", "-p", "no:randomly",
           "-p", "no:cacheprovider", f"--gpt-impl={args.gpt_impl}", f"--outcomes={outcomes}"]
    out += [f"--{name.replace('_', '-')}={getattr(args, name)}"
            for name in ("architecture", "expect_failures", "import_timeout") if getattr(args, name)]
    if args.no_line_coverage:
        out.append("--no-cov")
    else:
        package = args.impl_file.parent
        out += [f"--cov={package}", f"--cov-config={coverage_rc}", "--cov-context=test", "--cov-report="]
        if is_own_model(args.impl_file):
            out.append("--cov=nanochat")
    return out + list(args.pytest_args)


def run_suite(args, project, workdir, run_pytest, suite=None):
    """Run the whole suite once; return the path of its outcomes (its coverage data is named in them)."""
    outcomes = workdir / "outcomes.json"
    rc = workdir / "coveragerc"
    rc.write_text(COVERAGE_RC)
    run_pytest(suite_arguments(args, project, outcomes, rc, suite), cwd=project.root,
               env={"COVERAGE_FILE": str(workdir / ".coverage")}, timeout=args.timeout)
    if not outcomes.exists():
        raise Refused(f"the test run wrote no outcomes (see its output above); run `pytest --gpt-impl={args.gpt_impl}` "
                      "to see why")
    return outcomes


def run_mutation(args, project, workdir):
    out = workdir / "mutation.json"
    # the catalog limits each of its own runs; this limits the whole of it
    cmd = [sys.executable, "-m", "nanochat_verify.mutation", f"--gpt-impl={args.gpt_impl}", f"--json={out}"]
    cmd += [f"--{name.replace('_', '-')}={getattr(args, name)}"
            for name in ("architecture", "expect_failures", "import_timeout") if getattr(args, name)]
    run_with_limit(cmd, cwd=project.root, env=dict(os.environ), timeout=args.timeout, what="the mutation run")
    if not out.exists():
        raise Refused(f"the mutation run wrote no results (see its output above); run `{' '.join(cmd[2:])}` to see why")
    return out
