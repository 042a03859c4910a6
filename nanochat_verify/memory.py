"""
How much memory this machine can give a run, read before a tool builds anything large: a model that cannot fit
is refused in one line, instead of a machine run out of memory (the kernel's OOM killer: exit 137, nothing
printed). Nothing heavy is imported here.
"""

import os
from pathlib import Path


def _meminfo_available():
    """MemAvailable of /proc/meminfo (Linux): what can be allocated without swapping."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def _cgroup_available():
    """What the process's cgroup (a container's memory limit) still allows, or None where it sets no limit."""
    try:
        lines = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        hierarchy, controllers, path = (line.split(":", 2) + ["", ""])[:3]
        if hierarchy == "0" and controllers == "":  # cgroup v2
            folder = Path("/sys/fs/cgroup") / path.lstrip("/")
            limit, used = folder / "memory.max", folder / "memory.current"
        elif "memory" in controllers.split(","):  # cgroup v1
            folder = Path("/sys/fs/cgroup/memory") / path.lstrip("/")
            limit, used = folder / "memory.limit_in_bytes", folder / "memory.usage_in_bytes"
        else:
            continue
        try:
            text = limit.read_text().strip()
            if text == "max" or int(text) >= 2 ** 60:  # no limit
                return None
            return max(int(text) - int(used.read_text().strip()), 0)
        except (OSError, ValueError):
            continue  # not visible from here (a container): the next hierarchy may be
    return None


def _sysconf_available():
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):
        return None


def available_bytes():
    """The bytes a new allocation can get now (the least of the machine's available memory and its cgroup's
    limit), or None where the system does not say."""
    machine = _meminfo_available() or _sysconf_available()
    found = [b for b in (machine, _cgroup_available()) if b is not None]
    return min(found) if found else None


def gb(n_bytes):
    """Bytes as a short reading: 2.1 GB, 11.6 GB, 196,608 GB."""
    value = n_bytes / 1e9
    return f"{value:,.0f} GB" if value >= 100 else f"{value:.1f} GB"
