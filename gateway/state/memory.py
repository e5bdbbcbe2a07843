"""In-process state for the embedded default (one gateway process). Same semantics as RedisState."""

from __future__ import annotations

import bisect
import time
from collections.abc import Callable

from gateway.state.base import GateResult, attempts_key, cooldown_key, number_window_key

HOUR = 3600.0


class MemoryState:
    def __init__(self, clock: Callable[[], float] = time.time, max_keys: int = 1_000_000) -> None:
        self._clock = clock
        self._until: dict[str, float] = {}  # cooldown key -> until
        self._windows: dict[str, list[float]] = {}  # sorted send times within the last hour
        self._counters: dict[str, tuple[int, float]] = {}  # key -> (count, expires_at)
        self._max_keys = max_keys
        self._ops = 0

    def _gc(self, now: float) -> None:
        self._ops += 1
        if self._ops % 4096 and len(self._until) + len(self._windows) + len(self._counters) < self._max_keys:
            return
        self._until = {k: v for k, v in self._until.items() if v > now}
        self._windows = {k: v for k, v in self._windows.items() if v and v[-1] > now - HOUR}
        self._counters = {k: v for k, v in self._counters.items() if v[1] > now}

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
        if cooldown > 0:
            self._until[ck] = now + cooldown
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
            count, expires = 0, now + ttl
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
