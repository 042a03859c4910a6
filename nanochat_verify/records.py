"""
Where a checkout keeps the kit's records of its pytest runs, so that one run's never mix with another's:

    .nanochat-verify/
      runs/<run id>/outcomes.json   the run's own record (nanochat_verify/runrecord.py), from the run's start
      runs/<run id>/.coverage       the run's own line coverage data (xdist workers' parts are combined there)
      outcomes.json                 a copy of the record of the last complete run, replaced in one step at its end
      mutation.json                 where `python -m nanochat_verify.mutation --json` usually writes

Two runs in one checkout (a full run, and `pytest tests/test_rope.py` beside it) each write their own folder:
neither erases, combines or hashes the other's coverage data, and only a complete run replaces outcomes.json,
which names its own run's data. A run holds a lock on its folder while it lives; the folders of old runs are
pruned at the end of a run, never a live one nor the last complete run's.

A checkout that cannot be written (a read-only file system, another user's folder) keeps the same records in a
folder of the temporary directory named after the checkout; the tools say so in one line, and read them there.

Nothing heavy is imported here.
"""

import contextlib
import errno
import hashlib
import json
import os
import shutil
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from nanochat_verify.paths import state_dir

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: no locks; only finished runs are pruned
    fcntl = None

LAST_RUN = "outcomes.json"  # in the records folder: the last complete run
RUNS = "runs"
RECORD = "outcomes.json"  # in a run's folder
COVERAGE = ".coverage"  # in a run's folder
LOCK = ".lock"
KEEP = 4  # runs kept besides the last complete one, newest first
STALE_AFTER = 24 * 3600  # seconds after which an unfinished, unlocked run folder is pruned where there are no locks


def why_unwritable(folder):
    """Why the kit cannot keep records in `folder` (made on demand), or None."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        return f"{folder} is not a folder"
    existing = folder if folder.exists() else next((p for p in folder.parents if p.exists()), None)
    if existing is None or not os.access(existing, os.W_OK | os.X_OK):
        # access(2) answers EROFS on a read-only file system even for root
        return f"{existing or folder} cannot be written"
    return None


def fallback_dir(root):
    """The records folder of a checkout that cannot be written: one per checkout (and user) in the temp dir."""
    root = Path(root).resolve()
    digest = hashlib.sha256(str(root).encode()).hexdigest()[:12]
    user = os.getuid() if hasattr(os, "getuid") else os.environ.get("USERNAME", "user")
    return Path(tempfile.gettempdir()) / f"nanochat-verify-{user}" / f"{root.name or 'root'}-{digest}"


@dataclass(frozen=True)
class Records:
    """Where a checkout's records go: `folder`, and `moved` (why, when it is not the checkout's own)."""
    folder: Path
    moved: str | None = None

    @property
    def last_run(self):
        return self.folder / LAST_RUN

    def notice(self, root):
        """The one line that says where the records went, for a checkout that cannot be written."""
        return (f"nanochat-verify: {self.moved} (a read-only checkout?); this run's records and line coverage go "
                f"to {self.folder}, and pytest's cache is not kept") if self.moved else None


def records_for(root):
    """The Records of the checkout at `root`: its .nanochat-verify/ where it can be written, else a folder of the
    temporary directory (or, where neither can be written, the checkout's own, so that the error names it)."""
    own = state_dir(root)
    problem = why_unwritable(own)
    if problem is None:
        return Records(own)
    fallback = fallback_dir(root)
    if why_unwritable(fallback) is None:
        return Records(fallback, problem)
    return Records(own)


def reading_places(root):
    """Where a checkout's records may be, to read them: its own folder, then the temporary one."""
    return [state_dir(root), fallback_dir(root)]


def find(root, name):
    """The file `name` of the checkout's records (outcomes.json, mutation.json): where it is, or where it would be."""
    places = [folder / name for folder in reading_places(root)]
    return next((p for p in places if p.is_file()), places[0])


def last_run_file(root):
    """The record of the last complete run of the checkout at `root`; where there is none yet, the newest run's
    record (which says why it is not complete, or that it has not finished); else where it would be."""
    last = find(root, LAST_RUN)
    return last if last.is_file() else (newest_run_record(root) or last)


def newest_run_record(root):
    """The record file of the newest run of the checkout, complete or not, or None."""
    records = [f / RECORD for place in reading_places(root) if (place / RUNS).is_dir()
               for f in (place / RUNS).iterdir() if (f / RECORD).is_file()]
    return max(records, key=_mtime, default=None)


def _mtime(path):
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0


class RunFolder:
    """One run's own folder: made and locked at the start of the run, unlocked when the run ends."""

    def __init__(self, records, run_id):
        self.records, self.run_id = records, run_id
        self.path = records.folder / RUNS / run_id
        self._lock = None

    @property
    def record(self):
        return self.path / RECORD

    @property
    def coverage(self):
        return self.path / COVERAGE

    def create(self):
        """Make the folder and take its lock; OSError (with the folder's name) when it cannot be made."""
        self.path.mkdir(parents=True, exist_ok=False)
        if fcntl is not None:
            self._lock = open(self.path / LOCK, "w")  # noqa: SIM115 - held for the life of the run
            fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return self

    def release(self):
        if self._lock is not None:
            self._lock.close()  # closing the file drops the lock
            self._lock = None


def publish(text, target):
    """Replace `target` by `text` in one step: a reader sees the old file or the new one, never a part."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    temporary = target.with_name(f".{target.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}")
    try:
        with open(temporary, "x") as f:
            f.write(text)
        os.replace(temporary, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise


def _in_use(folder):
    """Whether a run may still be writing `folder`: its lock is held (or, without locks, it has not finished
    and is less than a day old)."""
    if fcntl is not None:
        if not (folder / LOCK).is_file():
            return time.time() - _mtime(folder) < 60  # a folder made a moment ago, before its lock
        try:
            with open(folder / LOCK) as lock:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return False
        except OSError as e:
            return e.errno in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK)
    record = folder / RECORD
    finished = record.is_file() and '"finished": true' in record.read_text(errors="replace")
    return not finished and time.time() - _mtime(folder) < STALE_AFTER


def referenced_run(last_run):
    """The name of the run folder whose coverage data the last complete run's record names, or None."""
    try:
        data_file = (json.loads(Path(last_run).read_text()).get("line_coverage") or {}).get("data_file", "")
    except (OSError, ValueError, AttributeError):
        return None
    parts = Path(str(data_file)).parts
    return parts[-2] if len(parts) >= 3 and parts[-3] == RUNS else None


def prune(records, keep=KEEP, current=None):
    """Remove the folders of old runs: every one but the `keep` newest, the last complete run's, `current` and
    any run still in progress. Only the kit's own folders under runs/ are touched."""
    runs = records.folder / RUNS
    if not runs.is_dir():
        return
    folders = sorted((f for f in runs.iterdir() if f.is_dir()), key=_mtime, reverse=True)
    for folder in folders[keep:]:
        if folder.name == current or _in_use(folder):
            continue
        if folder.name == referenced_run(records.last_run):  # read after the lock: a run publishes before unlocking
            continue
        shutil.rmtree(folder, ignore_errors=True)
