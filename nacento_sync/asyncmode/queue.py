"""The RabbitMQ side of asynchronous mode: topology, Magento-compatible messages, confirmed publishing.

Magento publishes to the durable topic exchange `magento` with routing key = topic, persistent messages
that carry a `message_id`, to durable queues it declares *without arguments* — and a redeclaration
with other arguments fails. So retries are not a dead-letter policy on the work queue: a failed message
is republished to `<queue>.retry.<seconds>` (a plain queue per delay whose message TTL dead-letters
through the default exchange back to the work queue), and parked in `<queue>.failed` when the delays
are used up. Nothing is dropped: every publish waits for the broker's confirm and is `mandatory`.
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import aio_pika
import aiormq
from aio_pika.abc import AbstractChannel, AbstractConnection, AbstractExchange, AbstractQueue
from pydantic import SecretStr

from nacento_sync.asyncmode.decisions import ATTEMPT_HEADER, ERROR_HEADER  # noqa: F401  (re-exported)
from nacento_sync.config import QueueConfig, redact_url, scrub
from nacento_sync.errors import AccessError

log = logging.getLogger("nacento_sync")

#: Headers of retried and parked messages.
#: Publishes awaiting their confirm at once.
IN_FLIGHT = 500
#: Seconds to connect to RabbitMQ, the AMQP handshake and login included: a broker that accepts the
#: connection and never answers fails the command within this.
CONNECT_TIMEOUT = 10.0


class BrokerUnreachable(AccessError):
    """RabbitMQ cannot be reached or refuses us (exit code 3)."""


#: What a lost or refused broker connection raises.
BROKER_ERRORS: tuple[type[BaseException], ...] = (
    *aio_pika.exceptions.CONNECTION_EXCEPTIONS, aio_pika.exceptions.AMQPException, asyncio.TimeoutError,
)


@dataclass(frozen=True)
class Topology:
    """Exchange, topic and queue names; retry and parking queues derive from the queue's name."""

    exchange: str
    topic: str
    queue: str
    retry_delays: tuple[int, ...]

    @classmethod
    def from_config(cls, cfg: QueueConfig) -> Topology:
        return cls(cfg.exchange, cfg.topic, cfg.queue, tuple(cfg.retry_delays))

    def retry_queue(self, delay: int) -> str:
        return f"{self.queue}.retry.{delay}"

    @property
    def retry_queues(self) -> list[str]:
        return [self.retry_queue(d) for d in dict.fromkeys(self.retry_delays)]

    @property
    def failed_queue(self) -> str:
        return f"{self.queue}.failed"


def startup_bound() -> float:
    """How long `connect` may take at most."""
    return CONNECT_TIMEOUT


async def connect(target: QueueConfig | SecretStr, *, timeout: float = CONNECT_TIMEOUT) -> AbstractConnection:
    """A plain (not robust) connection; the worker reconnects by itself.

    `target` is the queue section (preferred: the error then says when no config file was found) or
    its URL. A URL a client library cannot parse raises ConfigError naming `queue.url`, quoting none of
    it; an unreachable, refusing or silent broker raises BrokerUnreachable within `timeout` seconds.
    """
    section = target if isinstance(target, QueueConfig) else QueueConfig(url=target)
    url = section.checked_url()
    try:
        async with asyncio.timeout(timeout):  # aio-pika bounds the handshake too; this also covers DNS
            return await aio_pika.connect(url.get_secret_value(), timeout=timeout)
    except BROKER_ERRORS as e:
        reason = f"no answer within {timeout:g} s" if isinstance(e, TimeoutError) else \
            f"{type(e).__name__}: {scrub(str(e), url)}"
        raise BrokerUnreachable(section.explain(f"cannot connect to RabbitMQ at {redact_url(url)}: "
                                                f"{reason}")) from None


async def open_channel(conn: AbstractConnection, prefetch: int | None = None) -> AbstractChannel:
    """A channel with publisher confirms whose returned (unroutable) messages fail their publish."""
    channel = await conn.channel(publisher_confirms=True, on_return_raises=True)
    if prefetch:
        await channel.set_qos(prefetch_count=prefetch)
    return channel


async def declare(channel: AbstractChannel, topo: Topology) -> tuple[AbstractExchange, AbstractQueue]:
    """The exchange, the plain work queue and its binding, the retry queues and the parking queue."""
    exchange = await channel.declare_exchange(topo.exchange, aio_pika.ExchangeType.TOPIC, durable=True)
    queue = await channel.declare_queue(topo.queue, durable=True)
    await queue.bind(exchange, routing_key=topo.topic)
    for delay in dict.fromkeys(topo.retry_delays):
        await channel.declare_queue(topo.retry_queue(delay), durable=True, arguments={
            "x-message-ttl": delay * 1000,
            "x-dead-letter-exchange": "",
            "x-dead-letter-routing-key": topo.queue,
        })
    await channel.declare_queue(topo.failed_queue, durable=True)
    return exchange, queue


def operation_body(bulk_uuid: str, topic: str, serialized_data: str, key: int | None) -> bytes:
    """Magento's operation message: `serialized_data` is a JSON *string*; `id` is the operation_key."""
    body: dict[str, Any] = {"bulk_uuid": bulk_uuid, "topic_name": topic, "serialized_data": serialized_data,
                            "status": 4}
    if key is not None:
        body["id"] = key
    return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()


def message(body: bytes, *, message_id: str | None = None, headers: dict[str, Any] | None = None) -> aio_pika.Message:
    """Persistent, with a unique `message_id` (Magento's consumers require one)."""
    # The timestamp lets a worker reuse a bucket listing taken after it (decisions.listings_fresh_for).
    return aio_pika.Message(body, delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                            message_id=message_id or uuid.uuid4().hex, headers=headers or None,
                            timestamp=datetime.now(UTC))


def _reason(exc: BaseException) -> str:
    if isinstance(exc, aiormq.exceptions.PublishError):
        ret = getattr(exc, "message", None)
        text = getattr(getattr(ret, "delivery", None), "reply_text", None)
        return f"returned by the broker ({text or 'unroutable'})"
    if isinstance(exc, aiormq.exceptions.DeliveryError):
        return "refused by the broker (nack)"
    return f"{type(exc).__name__}: {exc}"


async def publish_all(exchange: AbstractExchange, items: Sequence[tuple[Any, str, aio_pika.Message]],
                      in_flight: int = IN_FLIGHT) -> dict[Any, str | None]:
    """Publish (key, routing_key, message) items, mandatory, each awaiting its confirm; returns per key
    None (confirmed and not returned) or why it was not published."""
    sem = asyncio.Semaphore(in_flight)

    async def one(routing_key: str, msg: aio_pika.Message) -> str | None:
        async with sem:
            try:
                await exchange.publish(msg, routing_key=routing_key, mandatory=True)
            except BROKER_ERRORS as e:
                return _reason(e)
        return None

    results = await asyncio.gather(*(one(rk, msg) for _, rk, msg in items))
    return {key: res for (key, _, _), res in zip(items, results, strict=True)}


async def queue_depths(conn: AbstractConnection, names: Sequence[str]) -> dict[str, tuple[int, int] | None]:
    """(ready messages, consumers) of each queue, None when it does not exist. Needs a plain connection:
    on a robust one a passive declare answers a cached count."""
    out: dict[str, tuple[int, int] | None] = {}
    for name in names:
        channel = await conn.channel(publisher_confirms=False)
        try:
            q = await channel.declare_queue(name, passive=True)
            res = q.declaration_result
            out[name] = (int(res.message_count or 0), int(res.consumer_count or 0))
        except aiormq.exceptions.ChannelNotFoundEntity:
            out[name] = None
        finally:
            if not channel.is_closed:
                await channel.close()
    return out


async def remove_bulk_copies(channel: AbstractChannel, queue_name: str, bulk_uuid: str) -> int:
    """Take the bulk's messages out of a queue (the parking queue); others go back. Returns how many."""
    queue = await channel.get_queue(queue_name, ensure=True)
    keep = []
    removed = 0
    try:
        while (msg := await queue.get(no_ack=False, fail=False, timeout=10)) is not None:
            if envelope_bulk(msg.body) == bulk_uuid:
                await msg.ack()
                removed += 1
            else:
                keep.append(msg)
    finally:
        for msg in keep:
            await msg.nack(requeue=True)
    return removed


def envelope_bulk(body: bytes) -> str | None:
    try:
        obj = json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return None
    value = obj.get("bulk_uuid") if isinstance(obj, dict) else None
    return value if isinstance(value, str) else None
