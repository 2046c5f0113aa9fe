"""The open-files limit (RLIMIT_NOFILE): thousands of sockets need more than the usual 1024."""

from __future__ import annotations

import contextlib
import resource

NOFILE_TARGET = 65536


def raise_nofile_limit(target: int = NOFILE_TARGET) -> int:
    """Raise RLIMIT_NOFILE of this process as far as allowed, up to ``target``.

    Root may raise the hard limit too; others only the soft limit up to the hard one.
    Returns the soft limit in force afterwards.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or soft >= target:
        return soft
    try:
        new_hard = hard if hard == resource.RLIM_INFINITY else max(hard, target)
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, new_hard))
    except (ValueError, OSError):
        capped = target if hard == resource.RLIM_INFINITY else min(target, hard)
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (capped, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]
