"""
Each run's own records (nanochat_verify/records.py). A run that records its outcomes (--outcomes) gets a folder
of its own, made before pytest-cov starts: pytest-cov writes that run's line coverage there (COVERAGE_FILE, set
for the controller and the xdist workers it starts, then given back), and the record of a run of the project's
last-run file (`.nanochat-verify/outcomes.json`, the ini's --outcomes) lives there too until a complete run
publishes it (record.py). A checkout that cannot be written keeps these records in the temporary directory,
said in one line.
"""

import os
import sys
import uuid
from dataclasses import dataclass, field

import pytest

from nanochat_verify import records
from nanochat_verify.paths import state_dir
from nanochat_verify.plugin.options import resolve_option_path

RUN_KEY = pytest.StashKey()
WORKER_KEY = pytest.StashKey()  # in an xdist worker: the id of the run it belongs to
# set by a run's controller while it starts its xdist workers, which belong to that run and make no folder
WORKER_ENV = "NANOCHAT_VERIFY_RUN_ID"


@dataclass
class Run:
    run_id: str
    records: records.Records
    folder: records.RunFolder | None  # None: the run needs no folder of its own
    last_run: bool  # the run records into the project's last-run file
    saved_env: dict = field(default_factory=dict)  # what COVERAGE_FILE and WORKER_ENV were before the run

    def give_back_env(self):
        for name, value in self.saved_env.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        self.saved_env = {}


def is_last_run_path(config, value):
    """Whether an --outcomes value names the project's last-run file (the ini's default)."""
    path = resolve_option_path(config, "--outcomes", value)
    return path.resolve() == (state_dir(config.rootpath) / records.LAST_RUN).resolve()


def _coverage_wanted(namespace):
    """Whether pytest-cov will measure this run (it starts after this, in the same hook)."""
    return bool(getattr(namespace, "cov_source", None)) and not getattr(namespace, "no_cov", False)


def start(config, namespace, *, early):
    """The Run of a controller (or a plain run) that records outcomes; None for anything else. `early`: before
    pytest-cov starts, so that its data file can still be chosen."""
    if early and os.environ.get(WORKER_ENV):
        # an xdist worker of that run (its coverage goes to the run's folder: COVERAGE_FILE is inherited); the
        # name is taken out of its environment, so that a pytest that one of its tests runs is a run of its own
        config.stash[WORKER_KEY] = os.environ.pop(WORKER_ENV)
        return None
    outcomes = getattr(namespace, "outcomes", None)
    if not outcomes or hasattr(config, "workerinput"):
        return None
    last_run = is_last_run_path(config, outcomes)
    redirect = early and _coverage_wanted(namespace) and "COVERAGE_FILE" not in os.environ
    run = Run(uuid.uuid4().hex, records.records_for(config.rootpath), None, last_run)
    if last_run or redirect:
        folder = records.RunFolder(run.records, run.run_id)
        try:
            run.folder = folder.create()
        except OSError as e:
            raise pytest.UsageError(f"cannot make this run's records folder {folder.path}: {e.strerror or e}; "
                                    f"make {run.records.folder} writable") from None
    if early:
        run.saved_env = {name: os.environ.get(name) for name in ("COVERAGE_FILE", WORKER_ENV)}
        os.environ[WORKER_ENV] = run.run_id
        if redirect:
            os.environ["COVERAGE_FILE"] = str(run.folder.coverage)
    if run.records.moved:
        # pytest's own cache (.pytest_cache, --lf) cannot be kept either: pytest warns about that, which a
        # project's filterwarnings = error would turn into an INTERNALERROR at the end of the run
        config.addinivalue_line("filterwarnings", "ignore::pytest.PytestCacheWarning")
    config.stash[RUN_KEY] = run
    return run


def run_of(config):
    """This run's Run; made now (too late to choose pytest-cov's data file) when the plugin was loaded after
    pytest-cov started, e.g. by a conftest."""
    run = config.stash.get(RUN_KEY, None)
    if run is None:
        run = start(config, config.option, early=False)
    return run


@pytest.hookimpl(wrapper=True)
def pytest_sessionstart(session):
    """xdist starts its workers in this hook (they inherit COVERAGE_FILE): then the environment is given back,
    so that nothing else started during the run (a test's own pytest) writes into this run's folder."""
    try:
        return (yield)
    finally:
        worker_of = session.config.stash.get(WORKER_KEY, None)
        if worker_of is not None and os.environ.get("COVERAGE_FILE", "").endswith(
                os.path.join(records.RUNS, worker_of, records.COVERAGE)):
            del os.environ["COVERAGE_FILE"]  # pytest-cov has started: the worker's tests get the environment back
        run = session.config.stash.get(RUN_KEY, None)
        if run is not None:
            run.give_back_env()
            notice = run.records.notice(session.config.rootpath)
            if notice:
                reporter = session.config.pluginmanager.get_plugin("terminalreporter")
                reporter.write_line(notice) if reporter else print(notice, file=sys.stderr)


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config):
    run = config.stash.get(RUN_KEY, None)
    if run is not None:
        run.give_back_env()
        if run.folder is not None:
            run.folder.release()
            records.prune(run.records, current=run.run_id)
