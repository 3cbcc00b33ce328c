"""CPU counts and BLAS thread limits, one place for both."""

from __future__ import annotations

import contextlib
import os
from typing import Iterator


def available_cpus() -> int:
    """The CPUs this process may run on (its affinity where the OS tells it)."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return os.cpu_count() or 1


@contextlib.contextmanager
def blas_threads(n: int) -> Iterator[None]:
    """At most `n` BLAS threads inside the block (threadpoolctl, which scikit-learn
    brings; without it the block runs unchanged)."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        yield
        return
    with threadpool_limits(limits=n, user_api="blas"):
        yield
