"""The shared backend: one Lua script (``lua/check.lua``), loaded once, one EVALSHA per fraud check.

All limits, counters, lists and flags of a request go in a single call, the plan as one MessagePack
argument and the answer as one MessagePack reply (redis-py's per-argument encoding and RESP parsing,
not Redis, would otherwise dominate the cost); corrections queued by
:meth:`RedisFraudBackend.settle` ride along with the next call, so a check never costs a second
round trip. ``NOSCRIPT`` (Redis restarted or flushed its script cache) reloads the script and
retries once.

**Outage.** When Redis cannot be reached (connection refused, timeout, any ``RedisError``), the check
is answered by a local :class:`~antifraud.limits_memory.MemoryFraudBackend` (local limits, local
counters), the failure is logged at ERROR (at most every ``log_every`` seconds) and counted in
``stats.shared_errors`` / ``stats.fallback_checks`` for the gateway to export. For
``retry_seconds`` after a failure, checks go straight to the fallback so a dead server does not add
a connect timeout to every request; then Redis is tried again. Corrections for checks Redis counted
stay queued (bounded) until it is back.

Give the client short timeouts (e.g. ``socket_timeout=0.25, socket_connect_timeout=0.25``): the
fraud check sits on the request path.
"""

from __future__ import annotations

import logging
import time
from importlib import resources
from typing import Any

import msgspec
import redis.asyncio as aioredis
from redis.exceptions import NoScriptError, RedisError

from antifraud.limits import BackendStats, HashAdd, LimitHit, ListPush, Plan, Settle, Snapshot
from antifraud.limits_memory import MemoryFraudBackend

log = logging.getLogger("smsgw.antifraud")

SCRIPT = resources.files("antifraud").joinpath("lua/check.lua").read_text("utf-8")


def encode(plan: Plan, pending: list[Settle]) -> tuple[list[str], bytes]:
    """KEYS (deduplicated) and the one MessagePack argument of ``lua/check.lua``."""
    keys: list[str] = []
    index: dict[str, int] = {}

    def key(k: str) -> int:
        i = index.get(k)
        if i is None:
            keys.append(k)
            i = index[k] = len(keys)
        return i

    def adds(ops: list[HashAdd] | tuple[HashAdd, ...]) -> list[Any]:
        return [[key(a.key), a.schema, a.at, a.ttl, [v for pd in a.deltas for v in pd]] for a in ops]

    def pushes(ops: list[ListPush] | tuple[ListPush, ...]) -> list[Any]:
        return [[key(q.key), q.value, q.maxlen, q.ttl] for q in ops]

    body = [
        plan.now,
        plan.count,
        plan.schemas,
        adds([a for s in pending for a in s.adds]),
        [[key(u.key), u.windows, u.at] for s in pending for u in s.undos],
        pushes([q for s in pending for q in s.pushes]),
        [[key(lim.key), [x for wl in lim.windows for x in wl], lim.ttl] for lim in plan.limits],
        [[key(r.key), r.schema] for r in plan.reads],
        [[key(k), n] for k, n in plan.lists],
        [[key(f.key), f.fields] for f in plan.flags],
        adds(plan.writes),
        pushes(plan.pushes),
    ]
    return keys, _encoder.encode(body)


def _text(x: Any) -> str:
    return x.decode() if isinstance(x, bytes) else str(x)


def decode(plan: Plan, raw: bytes) -> Snapshot:
    hits_, reads_, lists_, flags_ = _decoder.decode(raw)
    if hits_:
        return Snapshot(hits=tuple(LimitHit(int(i), int(w), int(n), float(r)) for i, w, n, r in hits_))
    return Snapshot(
        reads=tuple(tuple(float(v) for v in row) for row in reads_),
        lists=tuple(tuple(_text(v) for v in row) for row in lists_),
        flags=tuple(tuple(_text(v) for v in row) for row in flags_),
        counted=plan.count,
        shared=True,
    )


_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder()


class RedisFraudBackend:
    def __init__(
        self,
        client: aioredis.Redis,
        *,
        fallback: MemoryFraudBackend | None = None,
        retry_seconds: float = 1.0,
        max_pending: int = 10_000,
        log_every: float = 10.0,
        monotonic: Any = time.monotonic,
    ) -> None:
        if client.get_connection_kwargs().get("decode_responses"):  # type: ignore[no-untyped-call]
            raise ValueError("RedisFraudBackend needs a client with decode_responses=False (binary replies)")
        self.client = client
        self.fallback = fallback if fallback is not None else MemoryFraudBackend()
        self.stats = BackendStats()
        self._sha: str | None = None
        self._pending: list[Settle] = []
        self._retry_seconds = retry_seconds
        self._max_pending = max_pending
        self._log_every = log_every
        self._monotonic = monotonic
        self._down_until = 0.0
        self._last_log = -1e18
        self._down = False

    async def load(self) -> str:
        """SCRIPT LOAD; called once at start (and again after NOSCRIPT)."""
        sha = await self.client.script_load(SCRIPT)
        self._sha = _text(sha)
        return self._sha

    async def _call(self, keys: list[str], argv: bytes) -> bytes:
        if self._sha is None:
            await self.load()
        assert self._sha is not None
        try:
            res = await self.client.evalsha(self._sha, len(keys), *keys, argv)  # type: ignore[no-untyped-call]
        except NoScriptError:
            await self.load()
            res = await self.client.evalsha(self._sha, len(keys), *keys, argv)  # type: ignore[no-untyped-call]
        if not isinstance(res, bytes):
            raise RedisError(f"unexpected reply from the fraud script: {type(res).__name__}")
        return res

    def _failed(self, err: BaseException) -> None:
        self.stats.shared_errors += 1
        self.stats.last_error = type(err).__name__
        mono = self._monotonic()
        self._down_until = mono + self._retry_seconds
        if not self._down or mono - self._last_log >= self._log_every:
            log.error(
                "antifraud: Redis unreachable (%s); fraud checks use LOCAL per-process limits and "
                "counters until it is back (%d failures so far)",
                type(err).__name__,
                self.stats.shared_errors,
            )
            self._last_log = mono
        self._down = True

    def _recovered(self) -> None:
        if self._down:
            log.warning("antifraud: Redis is back; fraud checks use shared state again")
            self._down = False

    async def check(self, plan: Plan) -> Snapshot:
        self.stats.checks += 1
        if self._monotonic() < self._down_until:
            self.stats.fallback_checks += 1
            return _local(self.fallback.execute(plan))
        # take the queued corrections: a concurrent check must not send them a second time
        pending, self._pending = self._pending, []
        keys, argv = encode(plan, pending)
        try:
            res = await self._call(keys, argv)
        except (RedisError, OSError) as err:
            self._requeue(pending)
            self._failed(err)
            self.stats.fallback_checks += 1
            return _local(self.fallback.execute(plan))
        self._recovered()
        self.stats.pending = len(self._pending)
        return decode(plan, res)

    def _requeue(self, pending: list[Settle]) -> None:
        self._pending = pending + self._pending
        if len(self._pending) > self._max_pending:
            drop = len(self._pending) - self._max_pending
            del self._pending[:drop]
            self.stats.dropped += drop
        self.stats.pending = len(self._pending)

    def settle(self, ops: Settle, *, shared: bool = True) -> None:
        if not ops:
            return
        self.stats.settles += 1
        if not shared:
            self.fallback.settle(ops)
            return
        self._pending.append(ops)
        self._requeue([])

    async def flush(self, now: float, schemas: tuple[tuple[float, ...], ...]) -> None:
        await self.fallback.flush(now, schemas)
        if not self._pending:
            return
        pending, self._pending = self._pending, []
        keys, argv = encode(Plan(now=now, schemas=schemas, count=False), pending)
        try:
            await self._call(keys, argv)
        except (RedisError, OSError) as err:
            self._requeue(pending)
            self._failed(err)
            return
        self._recovered()
        self.stats.pending = len(self._pending)

    # ---- admin (plain commands, off the hot path) --------------------------------------------------

    async def hset(self, key: str, mapping: dict[str, str]) -> None:
        await self.client.hset(key, mapping=mapping)  # type: ignore[arg-type]

    async def hdel(self, key: str, fields: list[str]) -> int:
        return int(await self.client.hdel(key, *fields)) if fields else 0

    async def hgetall(self, key: str) -> dict[str, str]:
        raw = await self.client.hgetall(key)
        return {_text(k): _text(v) for k, v in raw.items()}

    async def delete(self, keys: list[str]) -> int:
        return int(await self.client.delete(*keys)) if keys else 0

    async def lrange(self, key: str, count: int) -> list[str]:
        return [_text(v) for v in await self.client.lrange(key, 0, count - 1)]

    async def close(self) -> None:
        await self.fallback.close()


def _local(snap: Snapshot) -> Snapshot:
    return Snapshot(snap.hits, snap.reads, snap.lists, snap.flags, snap.counted, shared=False)
