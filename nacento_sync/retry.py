"""The storage retry policy: which answers are worth another attempt, how long to back off before it, and how
many requests a run keeps in flight while the endpoint throttles it.

No I/O and no clock of its own: the caller passes the sleep and the random draw, so tests run it on a fake
clock. botocore's own retries are off (its retry quota runs dry under a steady fault rate, and a HEAD's 503
has no body to mark it as throttling); `with_retries` is the one retry loop around every storage request.
"""

from __future__ import annotations

import asyncio
import enum
import random
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

T = TypeVar("T")


class Verdict(enum.Enum):
    """What a failed attempt says about the next one."""

    #: The endpoint asks us to slow down (429, 503, SlowDown…): retry, and send fewer requests at once.
    THROTTLED = "throttled"
    #: No answer in time: retry, and send fewer requests at once, as when throttled. An endpoint that
    #: cannot answer within `storage.read_timeout` is most often overloaded (a LIST of a large folder on a
    #: small server), and a retry at the same concurrency adds to the load it is still working off.
    SLOW = "slow"
    #: A passing fault (5xx, connection reset): retry.
    TRANSIENT = "transient"
    #: The answer stands (403, 404, a bad request): never retried.
    FINAL = "final"


#: Error codes that mean "too many requests" whatever the status (S3, R2, MinIO, and AWS's generic ones).
THROTTLING_CODES = frozenset({
    "SlowDown", "Throttling", "ThrottlingException", "ThrottledException", "RequestThrottled",
    "RequestThrottledException", "TooManyRequests", "TooManyRequestsException", "RequestLimitExceeded",
    "BandwidthLimitExceeded", "ProvisionedThroughputExceededException",
})
#: Error codes of a passing fault answered with a 4xx status (S3's idle-connection RequestTimeout is a 400).
TRANSIENT_CODES = frozenset({"RequestTimeout", "RequestTimeoutException", "InternalError", "ServiceUnavailable"})


def classify_answer(status: int, code: str) -> Verdict:
    """An HTTP error answer's verdict. A 503 is throttling even without a body (a HEAD's never has one)."""
    if status in (429, 503) or code in THROTTLING_CODES:
        return Verdict.THROTTLED
    if status >= 500 or code in TRANSIENT_CODES:
        return Verdict.TRANSIENT
    return Verdict.FINAL


@dataclass(frozen=True)
class RetryPolicy:
    """Per-request budget: `attempts` in all (the first included); before retry i (1-based) a random wait of
    up to min(`cap`, `base` × 2^(i-1)) seconds ("full jitter": concurrent requests spread out instead of
    retrying in step)."""

    attempts: int = 12
    base: float = 0.1
    cap: float = 5.0

    def ceiling(self, retry: int) -> float:
        """The longest wait before retry `retry` (1-based)."""
        return min(self.cap, self.base * 2 ** (retry - 1))

    def delay(self, retry: int, draw: float) -> float:
        """The wait before retry `retry`, for a uniform `draw` in [0, 1)."""
        return draw * self.ceiling(retry)

    def longest_backoff(self) -> float:
        """All the waits of one request at their longest: what a request adds to its attempts' timeouts."""
        return sum(self.ceiling(i) for i in range(1, self.attempts))

    def bound(self, attempt_seconds: float) -> float:
        """The longest one request can take when each attempt takes at most `attempt_seconds`."""
        return self.attempts * attempt_seconds + self.longest_backoff()


class AimdLimit:
    """How many requests may be in flight (additive increase, multiplicative decrease, as TCP does).

    Throttling halves the limit, at most once per round: a request sent before the last halving already
    counted in it (`epoch` tells them apart), so one burst of 503s is one halving, not a collapse. The limit
    stays at or above `floor` (default an eighth of the ceiling): under a steady fault rate that no slowing
    down cures, the run still moves (the throttled requests' back-off slows it further). Each `limit`
    successes (a round) raise it by one, up to `ceiling`."""

    def __init__(self, ceiling: int, floor: int | None = None) -> None:
        self.ceiling = max(1, ceiling)
        self.floor = max(1, min(self.ceiling // 8 if floor is None else floor, self.ceiling))
        self.limit = self.ceiling
        self.epoch = 0
        self.lowest = self.ceiling
        self._successes = 0

    def throttled(self, epoch: int) -> None:
        """A request sent during `epoch` was throttled."""
        if epoch != self.epoch:
            return
        self.limit = max(self.floor, self.limit // 2)
        self.lowest = min(self.lowest, self.limit)
        self.epoch += 1
        self._successes = 0

    def succeeded(self) -> None:
        """A request was answered (a final error answer included: the endpoint is keeping up)."""
        if self.limit >= self.ceiling:
            return
        self._successes += 1
        if self._successes >= self.limit:
            self.limit += 1
            self._successes = 0


class Limiter:
    """Slots for requests in flight, as many as the run-wide `AimdLimit` allows at the moment; and for how
    long the endpoint has answered nothing but faults (`silent_for`)."""

    def __init__(self, ceiling: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.aimd = AimdLimit(ceiling)
        self.in_flight = 0
        self.clock = clock
        #: When the current run of faults began (None: the last attempt got an answer). Idle time never counts.
        self.faulty_since: float | None = None
        self._last_answer = float("-inf")
        self._waiters: deque[asyncio.Future[None]] = deque()

    def answered(self) -> None:
        """An attempt got an answer that stands (a success, or a final error such as 404)."""
        self.aimd.succeeded()
        self.faulty_since = None
        self._last_answer = self.clock()

    def faulted(self, sent: float) -> None:
        """An attempt sent at `sent` failed with a throttled or transient fault."""
        if self.faulty_since is None:
            self.faulty_since = max(sent, self._last_answer)  # sent earlier, but the endpoint answered since

    def silent_for(self) -> float:
        """Seconds since the first attempt that failed after the endpoint's last answer was sent."""
        return 0.0 if self.faulty_since is None else self.clock() - self.faulty_since

    async def acquire(self) -> int:
        """Wait for a free slot; returns the epoch the request is sent in."""
        while self.in_flight >= self.aimd.limit:
            waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            try:
                await waiter
            except asyncio.CancelledError:
                if waiter in self._waiters:
                    self._waiters.remove(waiter)
                else:
                    self._wake()  # pass on the wake-up this waiter was given
                raise
        self.in_flight += 1
        return self.aimd.epoch

    def release(self) -> None:
        self.in_flight -= 1
        self._wake()

    def _wake(self) -> None:
        free = self.aimd.limit - self.in_flight
        while free > 0 and self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                free -= 1


async def with_retries(
    call: Callable[[], Awaitable[T]],
    classify: Callable[[Exception], Verdict],
    policy: RetryPolicy,
    limiter: Limiter,
    *,
    on_retry: Callable[[Verdict], None] = lambda _v: None,
    sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
    draw: Callable[[], float] = random.random,
    down_after: float | None = None,
) -> T:
    """`call()` until it answers, a final error, or the budget is spent (the last error is raised).

    A slot is held only while an attempt runs, never while backing off, so a throttled run keeps few
    requests in flight without stalling the requests that are waiting out their back-off. Once the endpoint
    has answered nothing but faults for `down_after` seconds (one request's whole budget), a request stops
    after its first attempt: a dead bucket fails the rest of the run's SKUs at one attempt each, and the
    first answer from a revived one restores the full budget."""
    retry = 0
    while True:
        epoch = await limiter.acquire()
        sent = limiter.clock()
        try:
            result = await call()
        except Exception as e:
            verdict = classify(e)
            if verdict is Verdict.FINAL:
                limiter.answered()
            else:
                limiter.faulted(sent)
                if verdict is Verdict.THROTTLED or verdict is Verdict.SLOW:
                    limiter.aimd.throttled(epoch)
            if verdict is Verdict.FINAL or retry + 1 >= policy.attempts:
                raise
            if down_after is not None and limiter.silent_for() > down_after:
                raise
        else:
            limiter.answered()
            return result
        finally:
            limiter.release()
        retry += 1
        on_retry(verdict)
        await sleep(policy.delay(retry, draw()))
