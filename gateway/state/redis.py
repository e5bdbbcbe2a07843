"""Redis state: one atomic Lua script per operation, loaded once and called by EVALSHA."""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import RedisError

from gateway.state.base import (
    GateResult,
    StateBackend,
    StateUnavailable,
    attempts_key,
    cooldown_key,
    number_window_key,
)
from gateway.state.memory import MemoryState

log = logging.getLogger("smsgw.state")
T = TypeVar("T")

# KEYS: cooldown, hourly window. ARGV: now_ms, cooldown_ms, hourly_limit, member
SEND_GATE = """
local now = tonumber(ARGV[1])
local until_ms = tonumber(redis.call('GET', KEYS[1]) or '0')
if until_ms > now then return {0, until_ms - now, 'cooldown'} end
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now - 3600000)
local n = redis.call('ZCARD', KEYS[2])
if n >= tonumber(ARGV[3]) then
  local oldest = redis.call('ZRANGE', KEYS[2], 0, 0, 'WITHSCORES')
  return {0, tonumber(oldest[2]) + 3600000 - now, 'number_hourly'}
end
redis.call('ZADD', KEYS[2], now, ARGV[4])
redis.call('PEXPIRE', KEYS[2], 3600000)
local cd = tonumber(ARGV[2])
if cd > 0 then redis.call('SET', KEYS[1], now + cd, 'PX', cd) end
return {1, 0, ''}
"""

# KEYS: cooldown, hourly window. ARGV: now_ms, cooldown_ms, member
RELEASE_GATE = """
redis.call('ZREM', KEYS[2], ARGV[3])
local cd = tonumber(ARGV[2])
if cd > 0 and tonumber(redis.call('GET', KEYS[1]) or '0') == tonumber(ARGV[1]) + cd then
  redis.call('DEL', KEYS[1])
end
return 1
"""

# KEYS: attempts. ARGV: ttl_ms
VERIFY_ATTEMPT = """
local n = redis.call('INCR', KEYS[1])
if n == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
return n
"""


class RedisState:
    def __init__(self, client: Client) -> None:
        self.client = client
        self._send_gate = client.register_script(SEND_GATE)
        self._verify_attempt = client.register_script(VERIFY_ATTEMPT)
        self._release_gate = client.register_script(RELEASE_GATE)

    async def send_gate(
        self, tenant_id: str, phone_key: str, *, cooldown: float, hourly_limit: int, now: float, member: str
    ) -> GateResult:
        res = await self._send_gate(
            keys=[cooldown_key(tenant_id, phone_key), number_window_key(tenant_id, phone_key)],
            args=[int(now * 1000), int(cooldown * 1000), hourly_limit, member],
        )
        allowed, retry_ms, reason = int(res[0]), float(res[1]), res[2]
        if isinstance(reason, bytes):
            reason = reason.decode()
        return GateResult(bool(allowed), retry_ms / 1000.0, str(reason))

    async def release_gate(
        self, tenant_id: str, phone_key: str, *, cooldown: float, now: float, member: str
    ) -> None:
        await self._release_gate(
            keys=[cooldown_key(tenant_id, phone_key), number_window_key(tenant_id, phone_key)],
            args=[int(now * 1000), int(cooldown * 1000), member],
        )

    async def verify_attempt(self, otp_id: str, *, ttl: float) -> int:
        return int(await self._verify_attempt(keys=[attempts_key(otp_id)], args=[int(ttl * 1000)]))

    async def forget(self, tenant_id: str, phone_key: str) -> int:
        keys = cooldown_key(tenant_id, phone_key), number_window_key(tenant_id, phone_key)
        return int(await self.client.delete(*keys))

    async def ping(self) -> bool:
        try:
            return bool(await self.client.ping())
        except RedisError:
            return False

    async def close(self) -> None:
        await self.client.aclose()


Client = aioredis.Redis | aioredis.RedisCluster

_FAIL_FAST: dict[str, object] = {"socket_timeout": 1.0, "socket_connect_timeout": 1.0}


def redis_client(url: str) -> aioredis.Redis:
    """A client that fails fast: one quick retry, short timeouts (FallbackState takes over on failure).

    The retry is the asyncio one (``redis.asyncio.retry.Retry``): the synchronous class is accepted
    too but never retries an awaited command. It matters after a Redis restart, when every pooled
    connection is dead: the retry reconnects, so the first command after the restart succeeds."""
    retry = Retry(ExponentialBackoff(cap=0.05, base=0.01), retries=1)
    return aioredis.Redis.from_url(url, retry=retry, **_FAIL_FAST)  # type: ignore[arg-type]


async def connect_redis(url: str) -> Client:
    """The client for ``REDIS_URL``: a Redis Cluster when the node it names runs in cluster mode (asked
    once, at start: ``INFO cluster``), else a plain client. Every multi-key script of ours keeps its
    keys under one hash tag, so it runs unchanged on a cluster. An unreachable Redis gives the plain
    client: the fallback covers the outage, and a cluster is found at the next start."""
    plain = redis_client(url)
    try:
        info = await plain.info("cluster")
    except RedisError:
        return plain
    if not int(info.get("cluster_enabled", 0)):
        return plain
    await plain.aclose()
    cluster = aioredis.RedisCluster.from_url(url, **_FAIL_FAST)  # type: ignore[arg-type]
    await cluster.initialize()
    log.info("Redis runs as a cluster", extra={"nodes": len(cluster.get_nodes())})
    return cluster


class FallbackState:
    """Redis first; while Redis cannot be reached, the API stays up without loosening what must hold.

    - **Resend gate** (``send_gate``/``release_gate``): process-local state, so sends keep being
      accepted; each process then enforces the cooldown and hourly limit on its own (documented in
      docs/reliability.md: with N processes a number may get up to N times the limit meanwhile).
    - **Verify attempts** fail closed: :class:`StateUnavailable`, which the API answers 503
      ``unavailable`` with ``Retry-After``. A process-local counter would hand out ``max_attempts``
      guesses per process.

    Transitions, as a table (``down`` is this process's view of Redis)::

        state  event                              next   effect
        up     a call fails (RedisError/OSError)  down   log ERROR once, on_change("down")
        down   call within hold_off               down   local (or StateUnavailable); Redis untouched
        down   first call after hold_off          down   that call alone probes Redis; the others stay
                                                         local meanwhile (a hung Redis delays one call
                                                         per hold-off by the client's timeouts, not all)
        down   the probe fails                    down   hold off again, no new log line
        down   the probe succeeds                 up     log WARNING once, on_change("up")

    ``on_error(op)`` is told of every call served without Redis (a metric per operation)."""

    def __init__(
        self,
        primary: RedisState,
        on_error: Callable[[str], None],
        *,
        on_change: Callable[[str], None] | None = None,
        hold_off: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.primary = primary
        self.local = MemoryState()
        self._on_error = on_error
        self._on_change = on_change or (lambda _transition: None)
        self._hold_off = hold_off
        self._clock = clock
        self._down = False
        self._down_since = 0.0
        self._down_until = 0.0

    @property
    def down(self) -> bool:
        """True while this process serves without Redis (since a failure, until a probe succeeds)."""
        return self._down

    def _skip(self) -> bool:
        """True: leave Redis alone for this call (held off, or another call is probing it now)."""
        if not self._down:
            return False
        now = self._clock()
        if now < self._down_until:
            return True
        self._down_until = now + self._hold_off  # this call probes; calls meanwhile stay local
        return False

    def _failed(self, op: str, e: Exception) -> None:
        now = self._clock()
        self._down_until = now + self._hold_off
        if not self._down:
            self._down, self._down_since = True, now
            log.error(
                "redis unavailable: resend gates use process-local state, verify attempts answer 503, "
                "until it is back",
                extra={"operation": op, "error": f"{type(e).__name__}: {e}", "hold_off_s": self._hold_off},
            )
            self._on_change("down")
        self._on_error(op)

    def _ok(self) -> None:
        if self._down:
            self._down = False
            log.warning(
                "redis is back: shared state again",
                extra={"down_s": round(self._clock() - self._down_since, 1)},
            )
            self._on_change("up")

    async def _either(self, op: str, call: Callable[[StateBackend], Awaitable[T]]) -> T:
        """``call`` on Redis; on the local state while Redis is held off or when it fails now."""
        if self._skip():
            self._on_error(op)
        else:
            try:
                result = await call(self.primary)
            except (RedisError, OSError) as e:
                self._failed(op, e)
            else:
                self._ok()
                return result
        return await call(self.local)

    async def send_gate(
        self, tenant_id: str, phone_key: str, *, cooldown: float, hourly_limit: int, now: float, member: str
    ) -> GateResult:
        return await self._either(
            "send_gate",
            lambda b: b.send_gate(
                tenant_id, phone_key, cooldown=cooldown, hourly_limit=hourly_limit, now=now, member=member
            ),
        )

    async def release_gate(
        self, tenant_id: str, phone_key: str, *, cooldown: float, now: float, member: str
    ) -> None:
        """Where the gate was taken: Redis, or the local fallback while Redis is held off (releasing in
        the place that did not take it changes nothing)."""
        await self._either(
            "release_gate",
            lambda b: b.release_gate(tenant_id, phone_key, cooldown=cooldown, now=now, member=member),
        )

    async def verify_attempt(self, otp_id: str, *, ttl: float) -> int:
        """On Redis only: fails closed with :class:`StateUnavailable` (``retry_after`` = the hold-off)
        while Redis is held off or when it fails now."""
        if self._skip():
            self._on_error("verify_attempt")
            raise StateUnavailable("verify_attempt", self._hold_off)
        try:
            n = await self.primary.verify_attempt(otp_id, ttl=ttl)
        except (RedisError, OSError) as e:
            self._failed("verify_attempt", e)
            raise StateUnavailable("verify_attempt", self._hold_off) from e
        self._ok()
        return n

    async def forget(self, tenant_id: str, phone_key: str) -> int:
        """Both places: what the process-local fallback holds, and Redis. A Redis error is raised, not
        hidden: an erasure must not report success for state it could not reach."""
        local = await self.local.forget(tenant_id, phone_key)
        return local + await self.primary.forget(tenant_id, phone_key)

    async def ping(self) -> bool:
        return await self.primary.ping()

    async def close(self) -> None:
        await self.primary.close()


_check: type[StateBackend] = MemoryState
_check2: type[StateBackend] = FallbackState
