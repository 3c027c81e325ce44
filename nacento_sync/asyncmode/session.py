"""The worker's RabbitMQ session: connect, consume, reconnect (backing off), republish copies, ack.

A plain connection (not aio-pika's robust one), so a lost connection is seen and its unacked messages
are known to come back: each connection has a `generation`, and a message is only worth processing
while its generation is current.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from aio_pika.abc import AbstractChannel, AbstractConnection, AbstractIncomingMessage, AbstractQueue

from nacento_sync.asyncmode import queue
from nacento_sync.asyncmode.decisions import reconnect_backoff
from nacento_sync.config import QueueConfig, redact_url, scrub

log = logging.getLogger("nacento_sync")

Deliver = Callable[[AbstractIncomingMessage, int], Awaitable[None]]


class BrokerSession:
    """One worker's connection and consumer. `deliver(message, generation)` receives each message."""

    def __init__(self, cfg: QueueConfig, prefetch: int, deliver: Deliver, stopping: asyncio.Event) -> None:
        self.cfg = cfg
        self.topo = queue.Topology.from_config(cfg)
        self.prefetch = prefetch
        self.deliver = deliver
        self.stopping = stopping
        self.generation = 0
        self.conn: AbstractConnection | None = None
        self.channel: AbstractChannel | None = None
        self.work_queue: AbstractQueue | None = None
        self.consuming = False
        self._consumer_tag: str | None = None
        self._lost = asyncio.Event()
        self._redeclare = False

    @property
    def ready(self) -> bool:
        """Connected and consuming."""
        return self.conn is not None and self.consuming

    async def open(self) -> None:
        """Connect, open a channel and declare the topology; BrokerUnreachable when it cannot."""
        conn = await queue.connect(self.cfg)
        try:
            async with asyncio.timeout(queue.CONNECT_TIMEOUT):  # a broker gone silent after the handshake
                channel = await queue.open_channel(conn, prefetch=self.prefetch)
                _, work = await queue.declare(channel, self.topo)
        except queue.BROKER_ERRORS as e:
            with contextlib.suppress(BaseException):
                await conn.close()
            reason = (f"no answer within {queue.CONNECT_TIMEOUT:g} s" if isinstance(e, TimeoutError)
                      else scrub(str(e), self.cfg.url))
            raise queue.BrokerUnreachable(f"RabbitMQ at {redact_url(self.cfg.url)}: {reason}") from None
        self.generation += 1
        self.conn, self.channel, self.work_queue = conn, channel, work
        lost = asyncio.Event()
        conn.close_callbacks.add(lambda *_: lost.set())
        channel.close_callbacks.add(lambda *_: lost.set())
        self._lost = lost

    async def keep(self, on_lost: Callable[[], None]) -> None:
        """Keep a connection and a consumer until `stopping`; reconnect (backing off) when the broker goes
        away, calling `on_lost` first (what was delivered on the lost channel comes back)."""
        backoff = reconnect_backoff()
        while True:
            if self.conn is None:
                try:
                    await self.open()
                    log.info("reconnected to RabbitMQ")
                    backoff = reconnect_backoff()
                except queue.BrokerUnreachable as e:
                    delay = next(backoff)
                    log.warning("%s; retrying in %.1fs", e, delay)
                    await self._sleep_unless_stopped(delay)
                    if self.stopping.is_set():
                        return
                    continue
            with contextlib.suppress(*queue.BROKER_ERRORS):
                await self._start_consuming()
            stop = asyncio.ensure_future(self.stopping.wait())
            lost = asyncio.ensure_future(self._lost.wait())
            done, pending = await asyncio.wait({stop, lost}, return_when=asyncio.FIRST_COMPLETED)
            for task in pending:
                task.cancel()
            if lost not in done:
                await self._cancel_consumer()
                return
            log.warning("lost the connection to RabbitMQ; held messages will be redelivered; reconnecting")
            self.consuming = False
            old = self.conn
            self.conn = self.channel = self.work_queue = None
            on_lost()
            with contextlib.suppress(BaseException):
                if old is not None:
                    await old.close()

    async def _start_consuming(self) -> None:
        if self.stopping.is_set() or self.work_queue is None:
            return
        generation = self.generation

        async def on_message(message: AbstractIncomingMessage) -> None:
            await self.deliver(message, generation)

        self._consumer_tag = await self.work_queue.consume(on_message)
        self.consuming = True

    async def _cancel_consumer(self) -> None:
        if self.consuming and self.work_queue is not None and self._consumer_tag:
            with contextlib.suppress(*queue.BROKER_ERRORS):
                await self.work_queue.cancel(self._consumer_tag)
        self.consuming = False

    async def close(self) -> None:
        if self.conn is not None:
            with contextlib.suppress(BaseException):
                await self.conn.close()
        self.conn = self.channel = self.work_queue = None

    async def _sleep_unless_stopped(self, seconds: float) -> None:
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self.stopping.wait(), seconds)

    async def depths(self, names: Sequence[str]) -> dict[str, tuple[int, int] | None]:
        assert self.conn is not None
        return await queue.queue_depths(self.conn, names)

    async def redeclare_if_needed(self) -> None:
        """After a copy was refused (someone deleted a retry queue, say), declare the topology again."""
        if self._redeclare and self.channel is not None:
            await asyncio.sleep(1)  # no hot loop when the broker keeps refusing
            with contextlib.suppress(*queue.BROKER_ERRORS):
                await queue.declare(self.channel, self.topo)
                self._redeclare = False

    async def republish(self, copies: Sequence[tuple[AbstractIncomingMessage, str, dict[str, Any]]]) -> list[bool]:
        """Copies of (message, routing key, headers to set) through the default exchange, confirmed;
        returns which the broker took. A refused one is given back (nack) and comes back later; without
        a connection, nothing is sent and the messages come back when it is replaced."""
        if not copies:
            return []
        channel = self.channel
        if channel is None or channel.is_closed:
            log.warning("no broker connection: %d messages will be redelivered", len(copies))
            return [False] * len(copies)
        batch = []
        for n, (source, routing_key, extra) in enumerate(copies):
            headers = {k: v for k, v in (source.headers or {}).items() if not k.startswith("x-death")}
            headers.update(extra)
            batch.append((n, routing_key, queue.message(source.body, message_id=source.message_id, headers=headers)))
        results = await queue.publish_all(channel.default_exchange, batch)
        for n, (source, routing_key, _) in enumerate(copies):
            if results[n] is not None:
                log.warning("could not publish to %s (%s): the message goes back to the queue", routing_key,
                            results[n])
                self._redeclare = True
                with contextlib.suppress(Exception):
                    await source.nack(requeue=True)
        return [results[n] is None for n in range(len(copies))]
