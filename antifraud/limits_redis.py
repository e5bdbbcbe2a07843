"""The shared backend: one Lua script (``lua/check.lua``), loaded once, one EVALSHA per fraud check.

All limits, counters, lists and flags of a request go in a single call: the plan's numbers as one
argument of packed doubles, its strings after it, and the counters come back as packed doubles too
(redis-py's per-argument encoding and RESP parsing, and Lua's table building, would otherwise
dominate the cost); corrections queued by
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

The fraud check sits on the request path: every call is bounded by ``call_timeout`` (0.5 s) whatever
the client's own timeouts and retries; still give the client short ones and few retries.
"""

from __future__ import annotations

import asyncio
import logging
import struct
import time
from importlib import resources
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import NoScriptError, RedisError

from antifraud.limits import BackendStats, HashAdd, LimitHit, ListPush, Plan, Settle, Snapshot
from antifraud.limits_memory import MemoryFraudBackend

log = logging.getLogger("smsgw.antifraud")

SCRIPT = resources.files("antifraud").joinpath("lua/check.lua").read_text("utf-8")
_SCHEMAS_MARK = "{} --@SCHEMAS@--"


def script_for(schemas: tuple[tuple[float, ...], ...]) -> str:
    """The script with the record layouts' decay constants compiled in (they never change while a
    process runs, so they need not travel with every call)."""
    table = ", ".join("{" + ", ".join(repr(float(t)) for t in taus) + "}" for taus in schemas)
    if _SCHEMAS_MARK not in SCRIPT:
        raise RuntimeError("lua/check.lua lost its schema placeholder")
    return SCRIPT.replace(_SCHEMAS_MARK, "{" + table + "}")


class _Interner:
    """Indexes of distinct values: keys (1-based, KEYS), strings and shared templates (0-based)."""

    __slots__ = ("base", "index", "items")

    def __init__(self, base: int) -> None:
        self.items: list[Any] = []
        self.index: dict[Any, int] = {}
        self.base = base

    def __call__(self, item: Any) -> int:
        i = self.index.get(item)
        if i is None:
            self.items.append(item)
            i = self.index[item] = len(self.items) - 1 + self.base
        return i


def encode(plan: Plan, pending: list[Settle]) -> tuple[list[str], list[bytes | str]]:
    """KEYS (deduplicated) and ARGV of ``lua/check.lua``: the plan's numbers packed as doubles in
    ARGV[1], its strings after them."""
    key = _Interner(1)
    string = _Interner(0)
    template = _Interner(0)
    fieldset = _Interner(0)
    body: list[float] = []
    out = body.append
    ext = body.extend

    def adds(ops: list[HashAdd] | tuple[HashAdd, ...]) -> list[float]:
        seq: list[float] = [len(ops)]
        for a in ops:
            seq += (key(a.key), a.schema, a.at, a.ttl, template(a.deltas))
        return seq

    def pushes(ops: list[ListPush] | tuple[ListPush, ...]) -> list[float]:
        seq: list[float] = [len(ops)]
        for q in ops:
            seq += (key(q.key), string(q.value), q.maxlen, q.ttl)
        return seq

    settle_adds = adds([a for s in pending for a in s.adds])
    undos: list[float] = [0]
    for s in pending:
        for u in s.undos:
            undos += (key(u.key), len(u.windows), *u.windows, u.at)
            undos[0] += 1
    logs = pushes([q for s in pending for q in s.logs])
    limits: list[float] = [len(plan.limits)]
    for lim in plan.limits:
        limits += (key(lim.key), len(lim.windows))
        for w, n in lim.windows:
            limits += (w, n)
        limits.append(lim.ttl)
    reads: list[float] = [len(plan.reads)]
    for r in plan.reads:
        reads += (key(r.key), r.schema)
    recents: list[float] = [len(plan.lists)]
    for k, n in plan.lists:
        recents += (key(k), n)
    flags: list[float] = [len(plan.flags)]
    for f in plan.flags:
        flags += (key(f.key), fieldset(f.fields))
    writes = adds(plan.writes)
    rpushes = pushes(plan.pushes)

    out(plan.now)
    out(1.0 if plan.count else 0.0)
    out(len(template.items))
    for deltas in template.items:
        out(len(deltas))
        for pos, d in deltas:
            out(pos)
            out(d)
    out(len(fieldset.items))
    for names in fieldset.items:
        out(len(names))
        ext(string(n) for n in names)
    for seq in (settle_adds, undos, logs, limits, reads, recents, flags, writes, rpushes):
        ext(seq)
    blob = struct.pack(f"<{len(body)}d", *body)
    return key.items, [blob, *string.items]


def _text(x: Any) -> str:
    return x.decode() if isinstance(x, bytes) else str(x)


def decode(plan: Plan, reply: list[Any]) -> Snapshot:
    raw = reply[0]
    nums = struct.unpack(f"<{len(raw) // 8}d", raw)
    nhits = int(nums[0])
    if nhits:
        return Snapshot(
            hits=tuple(
                LimitHit(int(nums[j]), int(nums[j + 1]), int(nums[j + 2]), nums[j + 3])
                for j in range(1, 1 + 4 * nhits, 4)
            )
        )
    reads = []
    j = 1
    sizes = plan.schemas
    for r in plan.reads:
        n = len(sizes[r.schema])
        reads.append(nums[j : j + n])
        j += n
    lists = []
    k = 1
    for _ in plan.lists:
        m = int(reply[k])
        lists.append(tuple(_text(v) for v in reply[k + 1 : k + 1 + m]))
        k += 1 + m
    flags = []
    for f in plan.flags:
        n = len(f.fields)
        flags.append(tuple(_text(v) for v in reply[k : k + n]))
        k += n
    return Snapshot(
        reads=tuple(reads), lists=tuple(lists), flags=tuple(flags), counted=plan.count, shared=True
    )


class RedisFraudBackend:
    def __init__(
        self,
        client: aioredis.Redis,
        *,
        fallback: MemoryFraudBackend | None = None,
        retry_seconds: float = 1.0,
        max_pending: int = 10_000,
        log_every: float = 10.0,
        call_timeout: float = 0.5,
        monotonic: Any = time.monotonic,
    ) -> None:
        if client.get_connection_kwargs().get("decode_responses"):  # type: ignore[no-untyped-call]
            raise ValueError("RedisFraudBackend needs a client with decode_responses=False (binary replies)")
        self.client = client
        self.fallback = fallback if fallback is not None else MemoryFraudBackend()
        self.stats = BackendStats()
        self._sha: str | None = None
        self._schemas: tuple[tuple[float, ...], ...] | None = None
        self._pending: list[Settle] = []
        self._retry_seconds = retry_seconds
        self._max_pending = max_pending
        self._log_every = log_every
        self._call_timeout = call_timeout
        self._monotonic = monotonic
        self._down_until = 0.0
        self._last_log = -1e18
        self._down = False

    async def prepare(self, schemas: tuple[tuple[float, ...], ...]) -> None:
        try:
            await self.load(schemas)
        except (RedisError, OSError) as err:
            self._failed(err)

    async def load(self, schemas: tuple[tuple[float, ...], ...]) -> str:
        """SCRIPT LOAD for these record layouts; once at start (``FraudEngine.start``), again after
        NOSCRIPT. Without it the first check loads the script itself."""
        sha = await asyncio.wait_for(self.client.script_load(script_for(schemas)), self._call_timeout)
        self._sha = _text(sha)
        self._schemas = schemas
        return self._sha

    async def _call(
        self, schemas: tuple[tuple[float, ...], ...], keys: list[str], argv: list[bytes | str]
    ) -> list[Any]:
        if self._sha is None or (self._schemas is not schemas and self._schemas != schemas):
            await self.load(schemas)
        assert self._sha is not None
        try:
            res = await asyncio.wait_for(
                self.client.evalsha(self._sha, len(keys), *keys, *argv),  # type: ignore[no-untyped-call]
                self._call_timeout,
            )
        except NoScriptError:
            await self.load(schemas)
            res = await asyncio.wait_for(
                self.client.evalsha(self._sha, len(keys), *keys, *argv),  # type: ignore[no-untyped-call]
                self._call_timeout,
            )
        if not isinstance(res, list) or not res or not isinstance(res[0], bytes):
            raise RedisError("unexpected reply from the fraud script")
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
            res = await self._call(plan.schemas, keys, argv)
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
            await self._call(schemas, keys, argv)
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
