"""Carry out the worker's verdicts: write the operation's status, send the retry or parking copy, ack.

The order makes a crash harmless: a message is acked only after its operation's status is committed
and its copy (if any) confirmed; otherwise the broker redelivers it.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from nacento_sync.asyncmode import bulk, queue
from nacento_sync.asyncmode.batcher import Held
from nacento_sync.asyncmode.bulk import ErrorCode, Status
from nacento_sync.asyncmode.decisions import Action, Verdict, status_message
from nacento_sync.asyncmode.session import BrokerSession
from nacento_sync.codes import Code

log = logging.getLogger("nacento_sync")


@dataclass(frozen=True)
class Decided:
    """A held message, what to do with it, and (for a final status) its operation's result."""

    held: Held
    verdict: Verdict
    result: str | None = None


def error_code(code: Code) -> ErrorCode:
    """`magento_operation.error_code` of a failure code: the members share their names."""
    return ErrorCode[code.name]


class Recorder:
    """Writes verdicts to `magento_operation` (on `db`, which the worker replaces after reconnecting)
    and settles each message; counts them in `stats`."""

    def __init__(self, session: BrokerSession, prefix: str, stats: Any) -> None:
        self.session = session
        self.topo = session.topo
        self.prefix = prefix
        self.stats = stats
        self.db: Any = None
        #: When the last retry this worker scheduled comes back (monotonic seconds).
        self.retry_due = 0.0

    async def record(self, decided: Sequence[Decided]) -> None:
        """Not retriable first (status 3), then retries, then parkings."""
        by_action = {action: [d for d in decided if d.verdict.action is action]
                     for action in (Action.FAIL, Action.RETRY, Action.PARK)}
        await self._fail(by_action[Action.FAIL])
        await self._retry(by_action[Action.RETRY])
        await self._park(by_action[Action.PARK])

    async def ack(self, h: Held) -> None:
        h.settled = True
        try:
            await h.message.ack()
        except Exception as e:  # the channel was replaced: the broker redelivers it, harmlessly
            log.debug("ack failed (%s): the message will be redelivered", e)

    async def give_back(self, held: Sequence[Held]) -> None:
        """Unsettled messages go back to the queue (nack), to be redelivered."""
        for h in held:
            if not h.settled:
                h.settled = True
                with contextlib.suppress(Exception):
                    await h.message.nack(requeue=True)

    async def park_poison(self, poisoned: Sequence[tuple[Held, str]]) -> None:
        """Messages no operation can record: to the parking queue with their reason, then acked."""
        sent = await self._republish([(h, self.topo.failed_queue, h.attempt, reason) for h, reason in poisoned])
        for h, reason in sent:
            self.stats.parked += 1
            log.warning("parked a message in %s: %s", self.topo.failed_queue, reason)
            await self.ack(h)

    def _message(self, d: Decided) -> str:
        return status_message(d.verdict, d.held.attempt, self.topo.retry_delays)

    async def _fail(self, decided: Sequence[Decided]) -> None:
        if not decided:
            return
        await bulk.record_failures(self.db, self.prefix, [
            bulk.Failure(d.held.operation.id, Status.NOT_RETRIABLY_FAILED, error_code(d.verdict.why.code),
                         self._message(d), d.result) for d in decided])
        for d in decided:
            self.stats.failed += 1
            await self.ack(d.held)

    async def _retry(self, decided: Sequence[Decided]) -> None:
        """Status stays 4 with no code, the message says which retry; the copy waits in its retry queue."""
        if not decided:
            return
        await bulk.record_failures(self.db, self.prefix, [
            bulk.Failure(d.held.operation.id, Status.OPEN, None, self._message(d)) for d in decided])
        by_held = {id(d.held): d for d in decided}
        sent = await self._republish([(d.held, self.topo.retry_queue(d.verdict.wait), d.held.attempt + 1,
                                       str(d.verdict.failure)) for d in decided])
        for h, _ in sent:
            self.stats.retried += 1
            self.retry_due = max(self.retry_due, time.monotonic() + by_held[id(h)].verdict.wait)
            await self.ack(h)

    async def _park(self, decided: Sequence[Decided]) -> None:
        """Retries used up: to the parking queue, then status 2."""
        by_held = {id(d.held): d for d in decided}
        sent = await self._republish([(d.held, self.topo.failed_queue, d.held.attempt, str(d.verdict.failure))
                                      for d in decided])
        if sent:
            await bulk.record_failures(self.db, self.prefix, [
                bulk.Failure(h.operation.id, Status.RETRIABLY_FAILED, error_code(by_held[id(h)].verdict.why.code),
                             self._message(by_held[id(h)]), by_held[id(h)].result) for h, _ in sent])
        for h, reason in sent:
            self.stats.parked += 1
            log.warning("parked %s in %s: %s", h.source, self.topo.failed_queue, reason)
            await self.ack(h)

    async def _republish(self, copies: Sequence[tuple[Held, str, int, str]]) -> list[tuple[Held, str]]:
        """(held, routing key, attempt, reason) copies; returns the (held, reason) the broker took. The
        others are settled: they come back from the broker."""
        taken = await self.session.republish([
            (h.message, routing_key, {queue.ATTEMPT_HEADER: attempt, queue.ERROR_HEADER: bulk.fit_message(reason)})
            for h, routing_key, attempt, reason in copies])
        sent = []
        for (h, _, _, reason), ok in zip(copies, taken, strict=True):
            if ok:
                sent.append((h, reason))
            else:
                h.settled = True
        return sent
