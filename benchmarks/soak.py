"""The served default repository's memory: once warm, and after a soak of whole patients at concurrency 4.

Memory is the PSS of tritonserver and its Python-backend stubs (``GroupMemory``: shared pages counted once);
the RSS sum is reported beside it. The warm-up runs at the soak's concurrency, so that every instance has run
and the Python backend's shared-memory regions hold as many requests' tensors as the soak will: growth after it
is what the soak adds, not the first touch of pages a concurrent load needs.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from collat_client import CollatClient


def measure(repository: Path, infer: Callable[[CollatClient], None], log_file: Path, *, warmup: int = 8,
            requests: int = 200, concurrency: int = 4) -> dict[str, float]:
    from collat_ensemble.server.launcher import TritonServer

    with TritonServer(repository, log_file=log_file) as server, CollatClient(server.http_url, timeout=900) as client:
        with ThreadPoolExecutor(concurrency) as pool:
            list(pool.map(lambda _: infer(client), range(warmup)))
        warm = server.memory()
        started = time.perf_counter()
        with ThreadPoolExecutor(concurrency) as pool:
            list(pool.map(lambda _: infer(client), range(requests)))
        seconds = time.perf_counter() - started
        after = server.memory()
    return {"warmup": warmup, "requests": requests, "concurrency": concurrency, "seconds": seconds,
            "processes": warm.processes, "warm_pss_mb": warm.pss_mb, "warm_rss_mb": warm.rss_mb,
            "after_pss_mb": after.pss_mb, "after_rss_mb": after.rss_mb, "growth": after.pss_mb / warm.pss_mb - 1.0}
