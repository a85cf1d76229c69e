"""What fits in memory: a request that cannot is refused before anything is allocated."""

from __future__ import annotations

import os

from .errors import ConfigError


def available_memory() -> int | None:
    """Bytes this machine can give a process now (Linux's MemAvailable: free memory plus the
    page cache it can reclaim), or None where it cannot say."""
    try:
        with open("/proc/meminfo") as info:
            for line in info:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def check_memory(needed: int, what: str, fix: str) -> None:
    """Refuse, before allocating, what cannot fit in the memory free now: minutes of swapping
    and an out-of-memory kill are no error message."""
    free = available_memory()
    if free is not None and needed > free:
        raise ConfigError(f"{what} need about {needed / 2 ** 30:.1f} GiB and this machine has {free / 2 ** 30:.1f} GiB "
                          f"free; {fix}")
