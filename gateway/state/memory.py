"""In-process state for the embedded default (one gateway process). Same semantics as RedisState."""

from __future__ import annotations

import bisect
import time
from collections import deque
from collections.abc import Callable
from typing import TypeVar

from gateway.state.base import GateResult, attempts_key, cooldown_key, number_window_key

HOUR = 3600.0
V = TypeVar("V")


def _expire(
    d: dict[str, V], q: deque[tuple[float, str]], now: float, cap: int, last: Callable[[V, float], bool]
) -> None:
    """Pop ``q``'s due entries (and, while ``d`` holds ``cap`` keys, its oldest): a key goes when the
    entry is its ``last`` (no later write queued a later expiry), or to make room."""
    while q and (q[0][0] <= now or len(d) >= cap):
        at, k = q.popleft()
        v = d.get(k)
        if v is not None and (len(d) >= cap or last(v, at)):
            del d[k]


class MemoryState:
    """Cooldowns, hourly windows and verify attempts in dicts, each with an expiry queue beside it.

    Every write appends ``(expires_at, key)`` to its dict's queue, so a queue is in expiry order (up to
    the clock's small steps back and a changed cooldown setting, whose entries then leave a little
    late: reads check expiry themselves). Expired keys leave from the queue's front on every call,
    each queue entry once: O(1) amortised per request, however many numbers are live. (The sweep
    this replaces rebuilt all three dicts every 4 096 calls, and on every call once a million keys
    were live: at 2 000 OTP/s to fresh numbers the hour's windows pass a million in about eight
    minutes, and then each request paid a pass over all of them.)

    Beyond ``max_keys`` live keys in one dict, its oldest go first: a number whose last send is the
    oldest of them forgets its hourly count early (anti-fraud's own per-number limit still holds).
    """

    def __init__(self, clock: Callable[[], float] = time.time, max_keys: int = 1_000_000) -> None:
        self._clock = clock
        self._until: dict[str, float] = {}  # cooldown key -> until
        self._windows: dict[str, list[float]] = {}  # sorted send times within the last hour
        self._counters: dict[str, tuple[int, float]] = {}  # key -> (count, expires_at)
        self._until_q: deque[tuple[float, str]] = deque()
        self._windows_q: deque[tuple[float, str]] = deque()
        self._counters_q: deque[tuple[float, str]] = deque()
        self._max_keys = max_keys

    def _gc(self, now: float) -> None:
        cap = self._max_keys
        _expire(self._until, self._until_q, now, cap, lambda until, at: until == at)
        # a window goes with no send in its last hour (a later send queued a later entry)
        _expire(self._windows, self._windows_q, now, cap, lambda w, at: not w or w[-1] + HOUR <= at)
        _expire(self._counters, self._counters_q, now, cap, lambda c, at: c[1] == at)

    async def send_gate(
        self, tenant_id: str, phone_key: str, *, cooldown: float, hourly_limit: int, now: float, member: str
    ) -> GateResult:
        self._gc(now)
        ck = cooldown_key(tenant_id, phone_key)
        until = self._until.get(ck, 0.0)
        if until > now:
            return GateResult(False, until - now, "cooldown")
        wk = number_window_key(tenant_id, phone_key)
        window = self._windows.setdefault(wk, [])
        del window[: bisect.bisect_right(window, now - HOUR)]
        if len(window) >= hourly_limit:
            return GateResult(False, window[0] + HOUR - now, "number_hourly")
        bisect.insort(window, now)
        self._windows_q.append((window[-1] + HOUR, wk))
        if cooldown > 0:
            self._until[ck] = now + cooldown
            self._until_q.append((now + cooldown, ck))
        return GateResult(True)

    async def release_gate(
        self, tenant_id: str, phone_key: str, *, cooldown: float, now: float, member: str
    ) -> None:
        ck = cooldown_key(tenant_id, phone_key)
        if cooldown > 0 and self._until.get(ck) == now + cooldown:
            del self._until[ck]
        window = self._windows.get(number_window_key(tenant_id, phone_key))
        if window:
            i = bisect.bisect_left(window, now)
            if i < len(window) and window[i] == now:
                del window[i]

    async def verify_attempt(self, otp_id: str, *, ttl: float) -> int:
        now = self._clock()
        key = attempts_key(otp_id)
        count, expires = self._counters.get(key, (0, 0.0))
        if expires <= now:
            self._gc(now)
            count, expires = 0, now + ttl
            self._counters_q.append((expires, key))
        count += 1
        self._counters[key] = (count, expires)
        return count

    async def forget(self, tenant_id: str, phone_key: str) -> int:
        cd = self._until.pop(cooldown_key(tenant_id, phone_key), None)
        window = self._windows.pop(number_window_key(tenant_id, phone_key), None)
        return (cd is not None) + (window is not None)

    async def ping(self) -> bool:
        return True

    async def close(self) -> None:
        return None
