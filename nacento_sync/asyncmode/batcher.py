"""The worker's buffer: delivered messages wait here, and leave in batches of up to `sync.batch_size`.

A batch leaves at once when full, else after a short linger for more; messages delivered on a
connection since lost are dropped (the broker redelivers them). `sub_batches` splits a batch into the
engine's batches: one mode each, distinct SKUs.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass

from aio_pika.abc import AbstractIncomingMessage

from nacento_sync.asyncmode import bulk
from nacento_sync.asyncmode.decisions import Envelope
from nacento_sync.models import Item, sku_key

#: How long to wait for more messages once the first of a batch has arrived.
LINGER = 0.05


@dataclass(eq=False)
class Held:
    """One delivered message while the worker holds it."""

    message: AbstractIncomingMessage
    #: The broker connection it came on (`BrokerSession.generation`).
    generation: int
    ordinal: int
    envelope: Envelope | None = None
    op: bulk.Operation | None = None
    item: Item | None = None
    mode: str = "merge"
    #: Acked, or given back: nothing more to do with it.
    settled: bool = False

    # Filled in stages (decoded, its operation found, validated); these read them once they must be there.
    @property
    def env(self) -> Envelope:
        assert self.envelope is not None, "message not decoded yet"
        return self.envelope

    @property
    def operation(self) -> bulk.Operation:
        assert self.op is not None, "operation not found yet"
        return self.op

    @property
    def desired(self) -> Item:
        assert self.item is not None, "operation data not validated yet"
        return self.item

    @property
    def source(self) -> str:
        return self.envelope.source if self.envelope else "a message"

    @property
    def attempt(self) -> int:
        return self.envelope.attempt if self.envelope else 0


def sub_batches(held: list[Held]) -> list[list[Held]]:
    """Engine batches: one mode each, distinct SKUs (a repeated SKU goes to a later batch, in order)."""
    out: list[list[Held]] = []
    by_mode: dict[str, list[Held]] = {}
    for h in held:
        by_mode.setdefault(h.mode, []).append(h)
    for group in by_mode.values():
        batches: list[tuple[set[str], list[Held]]] = []
        for h in group:
            key = sku_key(h.desired.sku)
            target = next((b for b in batches if key not in b[0]), None)
            if target is None:
                target = (set(), [])
                batches.append(target)
            target[0].add(key)
            target[1].append(h)
        out += [b for _, b in batches]
    return out


class Batcher:
    """Buffers delivered messages and hands them out in batches."""

    def __init__(self, batch_size: int) -> None:
        self.batch_size = batch_size
        self.buffer: list[Held] = []
        self.arrived = asyncio.Event()
        self.last_arrival = time.monotonic()
        self._ordinal = 0

    def add(self, message: AbstractIncomingMessage, generation: int) -> None:
        self.last_arrival = time.monotonic()
        self._ordinal += 1
        self.buffer.append(Held(message, generation, self._ordinal))
        self.arrived.set()

    def wake(self) -> None:
        self.arrived.set()

    def drop(self) -> None:
        """The connection was lost: the broker redelivers what it had sent."""
        self.buffer.clear()

    async def next_batch(self, generation: int, *, linger: bool) -> list[Held]:
        """Up to `batch_size` messages of the current connection; empty when none is waiting. A batch
        not yet full waits LINGER seconds for more when `linger`."""
        self.buffer = [h for h in self.buffer if h.generation == generation]  # stale: redelivered
        if not self.buffer:
            return []
        if len(self.buffer) < self.batch_size and linger:
            await asyncio.sleep(LINGER)
        batch, self.buffer = self.buffer[: self.batch_size], self.buffer[self.batch_size :]
        return batch

    async def wait(self, seconds: float) -> None:
        """Until a message arrives (or `wake`), at most `seconds`."""
        self.arrived.clear()
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self.arrived.wait(), seconds)

    def quiet_for(self, seconds: float) -> bool:
        """Nothing buffered and no message for `seconds`."""
        return not self.buffer and time.monotonic() - self.last_arrival >= seconds
