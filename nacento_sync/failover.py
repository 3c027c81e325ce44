"""Database failover: a run that loses its connection (server restart, `KILL`, network drop) reconnects.

The pure part is the policy: the back-off schedule within `database.retry_seconds`, whether an old server
thread may be killed, and whether a batch whose connection dropped during COMMIT took effect. The shell is
`Reconnector`, which owns the run's connections: it opens them (noting each one's server thread id),
replaces a lost one with back-off, and kills the lost one's thread so its locks go before the batch is redone.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

import pymysql

from nacento_sync import magento
from nacento_sync.asyncmode.decisions import reconnect_backoff
from nacento_sync.config import DatabaseConfig
from nacento_sync.plan import ProductPlan, ProductState

log = logging.getLogger("nacento_sync")

#: First wait before reconnecting, and the longest one (seconds; the worker's back-off, other bounds).
FIRST_DELAY, MAX_DELAY = 0.25, 4.0
#: Two readings of one server's start time (Unix seconds, each ±1) differ by at most this much.
SAME_BOOT = 2.5


def next_wait(delay: float, elapsed: float, budget: float) -> float | None:
    """The wait before the next attempt, `elapsed` seconds into an outage allowed `budget` seconds:
    the back-off's `delay`, shortened to end at the deadline; None once the deadline has passed."""
    left = budget - elapsed
    return None if left <= 0 else min(delay, left)


def same_server(boot_then: float, boot_now: float) -> bool:
    """Both readings come from one server process: a restarted server starts thread ids afresh, so an
    old id there may name someone else's connection and must never be killed."""
    return abs(boot_now - boot_then) <= SAME_BOOT


def commit_took_effect(before: Sequence[ProductState], now: Sequence[ProductState | None],
                       replanned: Sequence[ProductPlan]) -> bool | None:
    """Did a batch whose connection dropped during COMMIT commit? Read under the products' locks once the
    old thread is gone: True when the products changed and planning again finds nothing left to write
    (the server committed), False when they are exactly as before the batch (it rolled back), None when
    neither (another writer changed them meanwhile: what this run wrote cannot be told apart)."""
    if list(now) == list(before):
        return False
    return True if not any(plan.ops for plan in replanned) else None


class DatabaseGone(magento.DatabaseAccessError):
    """The database stayed away longer than `database.retry_seconds` (exit code 3)."""


@dataclass
class _Session:
    """A connection we opened: its server thread id and the server's start time."""

    thread_id: int
    boot: float


class Reconnector:
    """Opens the run's database connections and replaces a lost one within `database.retry_seconds`.

    An outage starts at the first loss and ends when a batch commits (`progressed`): a server that
    accepts connections but loses every batch still ends the run after `retry_seconds`. Concurrent
    callers (the writing and the look-up connection) reconnect one at a time."""

    def __init__(self, cfg: DatabaseConfig, *, budget: float | None = None,
                 connect: Callable[[DatabaseConfig], Awaitable[magento.Connection]] = magento.connect,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.cfg, self._connect, self._clock = cfg, connect, clock
        #: Seconds an outage may last: `database.retry_seconds`, or `math.inf` (the worker, a service).
        self.budget = cfg.retry_seconds if budget is None else budget
        self._sessions: dict[int, _Session] = {}  # id(connection) → its session
        self._lock = asyncio.Lock()
        self._outage_started: float | None = None
        #: Connections replaced after a loss.
        self.reconnects = 0
        self._seconds_down = 0.0

    async def open(self) -> magento.Connection:
        """A new connection, its thread id noted (raises DatabaseAccessError, or MySQLError when it drops
        at once)."""
        conn = await self._connect(self.cfg)
        try:
            return await self.adopt(conn)
        except BaseException:
            conn.close()
            raise

    async def adopt(self, conn: magento.Connection) -> magento.Connection:
        """Note the thread id of a connection opened elsewhere, so it can be replaced like ours."""
        thread_id, boot = await magento.server_session(conn)
        self._sessions[id(conn)] = _Session(thread_id, boot)
        return conn

    @property
    def seconds_down(self) -> float:
        """Seconds from a loss to the next commit, summed over the run (an outage not over included)."""
        ongoing = 0.0 if self._outage_started is None else self._clock() - self._outage_started
        return self._seconds_down + ongoing

    def progressed(self) -> None:
        """A batch committed: the outage, if any, is over."""
        if self._outage_started is not None:
            self._seconds_down += self._clock() - self._outage_started
            self._outage_started = None

    async def replace(self, lost: magento.Connection, error: BaseException) -> magento.Connection:
        """A working connection in place of `lost` (closed here), its old thread killed if that server
        still runs; raises DatabaseGone once the outage has lasted `retry_seconds`."""
        async with self._lock:
            with contextlib.suppress(Exception):  # a broken connection may fail to close: it is gone anyway
                lost.close()
            if self._outage_started is None:
                self._outage_started = self._clock()
            started = self._outage_started  # a commit on the other connection may end the outage meanwhile
            session = self._sessions.pop(id(lost), None)
            budget = self.budget
            log.warning("lost the database connection (%s); reconnecting%s", error,
                        f" for up to {budget:g} s (database.retry_seconds)" if budget < math.inf else "")
            last: BaseException = error
            for attempt, delay in enumerate(reconnect_backoff(FIRST_DELAY, MAX_DELAY), start=1):
                if next_wait(delay, self._clock() - started, budget) is None:
                    tail = "" if last is error else f"; last attempt: {last}"
                    raise DatabaseGone(f"lost the database connection ({error}) and had none that worked for "
                                       f"{budget:g} s (database.retry_seconds){tail}") from None
                try:
                    conn = await self.open()
                except (magento.DatabaseAccessError, pymysql.err.MySQLError) as e:
                    last = e
                    wait = next_wait(delay, self._clock() - started, budget)
                    log.info("reconnect attempt %d failed (%s)%s", attempt, e,
                             f"; next in {wait:.2f} s" if wait else "")
                    await asyncio.sleep(wait or 0)
                    continue
                self.reconnects += 1
                await self._end(conn, session)
                log.warning("reconnected to the database after %.1f s (%d attempt(s)); redoing the work in flight",
                            self._clock() - started, attempt)
                return conn
            raise AssertionError("unreachable: reconnect_backoff() never ends")

    async def _end(self, conn: magento.Connection, old: _Session | None) -> None:
        """Kill the lost connection's server thread (a network drop can leave it holding its locks)."""
        if old is None:
            return
        now = self._sessions[id(conn)]
        if not same_server(old.boot, now.boot):
            return  # the server restarted: the old thread died with it
        try:
            if await magento.kill_connection(conn, old.thread_id):
                log.info("killed the lost connection's thread %d", old.thread_id)
        except pymysql.err.MySQLError as e:  # not ours to kill, or no right to: its locks time out on their own
            log.warning("could not kill the lost connection's thread %d: %s", old.thread_id, e)
