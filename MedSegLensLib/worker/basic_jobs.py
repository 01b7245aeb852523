"""Jobs every worker has: `ping` (is it alive, what can it do) and `cache`."""

from __future__ import annotations

import os
import platform
import sys
from typing import Any

from .registry import JobContext, JobRegistry


def ping(params: dict[str, Any], ctx: JobContext) -> dict[str, Any]:
    """Liveness check; also tells the caller which Python the worker runs."""
    cache = ctx.cache
    return {
        "pid": os.getpid(),
        "python": sys.executable,
        "platform": platform.platform(),
        "cache": cache.kinds(),
        "cache_hits": dict(cache.hits),
        "cache_misses": dict(cache.misses),
    }


def clear_cache(params: dict[str, Any], ctx: JobContext) -> dict[str, Any]:
    """Drop cached models, cases and activations (frees memory without a restart)."""
    before = ctx.cache.kinds()
    ctx.cache.clear()
    return {"cleared": before}


def register(registry: JobRegistry) -> None:
    registry.add("ping", ping)
    registry.add("clear_cache", clear_cache)
