"""`nacento-sync worker` with stage timers: the real CLI, plus where its time goes.

    python bench/worker_probe.py FIGURES.json --config CFG worker --idle-exit 1

Wraps a few of the worker's own coroutines with timers (per batch, not per message, so the cost is
negligible), runs the CLI's `main()` with the remaining arguments, and writes the totals to FIGURES.json
when the process exits. Wall-clock timestamps (`time.time()`) so the parent can line them up with its own.
"""

from __future__ import annotations

import atexit
import functools
import json
import sys
import time
from collections import defaultdict
from collections.abc import Callable
from typing import Any

STARTED = time.time()
seconds: dict[str, float] = defaultdict(float)
calls: dict[str, int] = defaultdict(int)
marks: dict[str, float] = {"started": STARTED}
storages: list[Any] = []


def timed(owner: Any, name: str, stage: str) -> None:
    """Replace the coroutine function `owner.name` by one that adds its duration to `stage`."""
    original: Callable[..., Any] = getattr(owner, name)

    @functools.wraps(original)
    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        begun = time.perf_counter()
        try:
            return await original(*args, **kwargs)
        finally:
            seconds[stage] += time.perf_counter() - begun
            calls[stage] += 1

    setattr(owner, name, wrapper)


def install() -> None:
    from nacento_sync import magento
    from nacento_sync.asyncmode import bulk, process, worker
    from nacento_sync.asyncmode.batcher import Batcher
    from nacento_sync.asyncmode.recorder import Recorder
    from nacento_sync.engine import Engine
    from nacento_sync.storage import Storage

    marks["imported"] = time.time()
    timed(process.BatchProcessor, "process", "processing")
    timed(process, "find_operations", "operation look-up")
    timed(bulk, "mark_started", "mark started")
    timed(Engine, "lookup", "engine look-ups (products, ETags)")
    timed(Engine, "write", "engine transaction")
    timed(bulk, "complete", "operation statuses (in the transaction)")
    timed(Recorder, "ack", "acks")
    timed(Batcher, "next_batch", "waiting for messages")
    timed(magento, "find_products", "products")
    timed(Storage, "head_etags", "HEAD calls")  # one call HEADs a batch's images concurrently
    timed(Storage, "list_etags", "LIST calls")  # one folder each; calls overlap, so their sum can exceed wall time

    original_enter = Storage.__aenter__

    async def enter(self: Any) -> Any:
        storages.append(self)  # its request counts are written at exit
        return await original_enter(self)

    Storage.__aenter__ = enter  # type: ignore[method-assign]

    original_log_queue = worker.Worker._log_queue

    async def log_queue(self: Any) -> None:
        marks["ready"] = time.time()  # database, bucket and broker checked, consumer about to start
        await original_log_queue(self)

    worker.Worker._log_queue = log_queue  # type: ignore[method-assign]

    original_process = process.BatchProcessor.process

    async def process_marked(self: Any, batch: list[Any]) -> None:
        marks.setdefault("first_batch", time.time())
        try:
            await original_process(self, batch)
        finally:
            marks["last_batch_done"] = time.time()

    process.BatchProcessor.process = process_marked  # type: ignore[method-assign]


def main() -> None:
    figures_file = sys.argv.pop(1)

    def write() -> None:
        marks["exit"] = time.time()
        with open(figures_file, "w") as f:
            requests: dict[str, int] = defaultdict(int)
            for storage in storages:
                for kind, n in storage.requests.items():
                    requests[kind] += n
            json.dump({"marks": marks, "seconds": dict(seconds), "calls": dict(calls), "s3_requests": requests}, f)

    atexit.register(write)
    install()
    from nacento_sync.cli import main as cli_main

    cli_main()


if __name__ == "__main__":
    main()
