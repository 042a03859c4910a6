"""Watching the processes a tool under test starts (Linux: process states come from /proc)."""

import contextlib
import os
import signal
import subprocess
import time
from pathlib import Path


def alive(pid):
    """Whether a process runs (a zombie, dead but not yet reaped by whoever adopted it, does not)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError):
        return False


def children_started(proc, pids, log, count=2, limit=60):
    """The pids a tool wrote to the file `pids` once there are `count` of them (proc must still run meanwhile)."""
    deadline = time.monotonic() + limit
    while not (pids.exists() and len(pids.read_text().split()) == count) and time.monotonic() < deadline:
        assert proc.poll() is None, log.read_text()
        time.sleep(0.02)
    return [int(pid) for pid in pids.read_text().split()]


def terminate(proc, children, limit=10):
    """SIGTERM to proc; wait for it, then (up to `limit` seconds) for its children to be gone."""
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=60)
    deadline = time.monotonic() + limit
    while any(alive(pid) for pid in children) and time.monotonic() < deadline:
        time.sleep(0.02)


def terminate_while_running(args, *, pids, log, temp, folder_prefix):
    """Start `args` (TMPDIR `temp`, stderr to `log`), wait for the two children it reports in `pids` and for its
    temporary folder (named `folder_prefix`...), then SIGTERM it: (its exit status, the children still alive, what
    is left in `temp`, the log). Whatever a failing run leaves behind is killed."""
    children = []
    with open(log, "w") as stderr:
        proc = subprocess.Popen(args, env={**os.environ, "TMPDIR": str(temp)}, stderr=stderr)
    try:
        children = children_started(proc, pids, log)
        assert [p.name for p in temp.iterdir()][0].startswith(folder_prefix)
        terminate(proc, children)
        return proc.returncode, [pid for pid in children if alive(pid)], list(temp.iterdir()), log.read_text()
    finally:
        proc.kill()
        for pid in children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
