"""The one stop-signal helper `sync` and `worker` share: first signal asks to stop, second cancels once."""

from __future__ import annotations

import asyncio
import signal

from nacento_sync import signals


async def _run(count: int) -> tuple[list[signal.Signals], list[signal.Signals], bool]:
    asked: list[signal.Signals] = []
    received = signals.install(asked.append)
    cancelled = False
    try:
        for _ in range(count):
            signal.raise_signal(signal.SIGTERM)
            await asyncio.sleep(0.01)  # the handler runs on the loop
        await asyncio.sleep(0.01)
    except asyncio.CancelledError:
        cancelled = True
        asyncio.current_task().uncancel()
        for _ in range(count - 2):  # later signals must not interrupt the clean-up
            signal.raise_signal(signal.SIGTERM)
            await asyncio.sleep(0.01)
    return received, asked, cancelled


def test_the_first_signal_asks_to_stop_and_cancels_nothing():
    received, asked, cancelled = asyncio.run(_run(1))
    assert received == asked == [signal.SIGTERM] and not cancelled


def test_the_second_signal_cancels_the_task_that_installed_the_handlers():
    received, asked, cancelled = asyncio.run(_run(2))
    assert received == asked == [signal.SIGTERM] * 2 and cancelled


def test_a_third_signal_does_not_cancel_again():
    received, asked, cancelled = asyncio.run(_run(3))
    assert len(received) == len(asked) == 3 and cancelled


def test_signals_append_to_the_callers_list():
    mine: list[signal.Signals] = []

    async def main() -> list[signal.Signals]:
        returned = signals.install(lambda _sig: None, mine)
        signal.raise_signal(signal.SIGINT)
        await asyncio.sleep(0.01)
        return returned

    assert asyncio.run(main()) is mine and mine == [signal.SIGINT]
