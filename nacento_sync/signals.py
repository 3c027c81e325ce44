"""SIGINT / SIGTERM for `sync` and `worker`: the first asks to stop gracefully, the second stops at once."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Callable

#: The signals that stop a run.
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def install(on_signal: Callable[[signal.Signals], None],
            received: list[signal.Signals] | None = None) -> list[signal.Signals]:
    """Handle the stop signals on the running loop; returns the list of signals received.

    Each signal is appended, then `on_signal(sig)` is called (ask to stop: finish what is in hand). The
    second also cancels the task that called `install` — once: a third must not interrupt its clean-up.
    The caller tells a stop at once by `len(received) >= 2` when that task sees CancelledError."""
    received = [] if received is None else received
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()

    def handler(sig: signal.Signals) -> None:
        received.append(sig)
        if len(received) == 2 and task is not None:
            task.cancel()
        on_signal(sig)

    for sig in STOP_SIGNALS:
        loop.add_signal_handler(sig, handler, sig)
    return received
