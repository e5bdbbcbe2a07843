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

from antifraud.limits import (
    BackendStats,
    Erasure,
    HashAdd,
    LimitHit,
    ListPush,
    Plan,
    Settle,
    Snapshot,
    without,
)
from antifraud.limits_memory import MemoryFraudBackend

log = logging.getLogger("smsgw.antifraud")

_ONE = struct.Struct("<d")
SCRIPT = resources.files("antifraud").joinpath("lua/check.lua").read_text("utf-8")
_SCHEMAS_MARK = "{} --@SCHEMAS@--"


def script_for(schemas: tuple[tuple[float, ...], ...]) -> str:
    """The script with the record layouts' decay constants compiled in (they never change while a
    process runs, so they need not travel with every call)."""
    table = ", ".join("{" + ", ".join(repr(float(t)) for t in taus) + "}" for taus in schemas)
    if _SCHEMAS_MARK not in SCRIPT:
        raise RuntimeError("lua/check.lua lost its schema placeholder")
    return SCRIPT.replace(_SCHEMAS_MARK, "{" + table + "}")


def encode(plan: Plan, pending: list[Settle]) -> tuple[list[str], list[bytes | str]]:
    """KEYS (deduplicated) and ARGV of ``lua/check.lua``: the plan's numbers packed as doubles in
    ARGV[1], its strings concatenated in ARGV[2] and their byte lengths (doubles) in ARGV[3].

    Keys (1-based), strings, delta templates and field lists (0-based) are numbered in order of
    first use with ``dict.setdefault`` (no Python call per item: this runs on every check)."""
    keys: dict[str, int] = {}
    strings: dict[str, int] = {}
    templates: dict[tuple[tuple[int, float], ...], int] = {}
    fieldsets: dict[tuple[str, ...], int] = {}
    key = keys.setdefault
    string = strings.setdefault
    template = templates.setdefault

    def adds(ops: list[HashAdd] | tuple[HashAdd, ...]) -> list[float]:
        seq: list[float] = [len(ops)]
        for a in ops:
            seq += (
                key(a.key, len(keys) + 1),
                a.schema,
                a.at,
                a.ttl,
                template(a.deltas, len(templates)),
            )
        return seq

    def pushes(ops: list[ListPush] | tuple[ListPush, ...]) -> list[float]:
        seq: list[float] = [len(ops)]
        for q in ops:
            seq += (key(q.key, len(keys) + 1), string(q.value, len(strings)), q.maxlen, q.ttl)
        return seq

    settle_adds = adds([a for s in pending for a in s.adds]) if pending else [0]
    undos: list[float] = [0]
    for s in pending:
        for u in s.undos:
            undos += (key(u.key, len(keys) + 1), len(u.windows), *u.windows, u.at)
            undos[0] += 1
    logs = pushes([q for s in pending for q in s.logs]) if pending else [0]
    limits: list[float] = [len(plan.limits)]
    for lim in plan.limits:
        limits += (key(lim.key, len(keys) + 1), len(lim.windows))
        for w, n in lim.windows:
            limits += (w, n)
        limits.append(lim.ttl)
    reads: list[float] = [len(plan.reads)]
    for r in plan.reads:
        reads += (key(r.key, len(keys) + 1), r.schema)
    recents: list[float] = [len(plan.lists)]
    for k, n in plan.lists:
        recents += (key(k, len(keys) + 1), n)
    flags: list[float] = [len(plan.flags)]
    for f in plan.flags:
        flags += (key(f.key, len(keys) + 1), fieldsets.setdefault(f.fields, len(fieldsets)))
    writes = adds(plan.writes)
    rpushes = pushes(plan.pushes)

    body: list[float] = [plan.now, 1.0 if plan.count else 0.0, len(templates)]
    for deltas in templates:
        body.append(len(deltas))
        for pd in deltas:
            body += pd
    body.append(len(fieldsets))
    for names in fieldsets:
        body.append(len(names))
        body += [string(n, len(strings)) for n in names]
    for seq in (settle_adds, undos, logs, limits, reads, recents, flags, writes, rpushes):
        body += seq
    blob = struct.pack(f"<{len(body)}d", *body)
    texts = [t.encode() for t in strings]
    lengths = struct.pack(f"<{len(texts)}d", *map(len, texts))
    return list(keys), [blob, b"".join(texts), lengths]


def _text(x: Any) -> str:
    return x.decode() if isinstance(x, bytes) else str(x)


def decode(plan: Plan, raw: bytes) -> Snapshot:
    """The script's one-string reply: counters as doubles, then the lists' and flags' strings."""
    (count,) = _ONE.unpack_from(raw)
    total = int(count)
    nums = struct.unpack_from(f"<{total}d", raw, 8)
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
    pos = 8 * (total + 1)  # the strings, in the order of their lengths
    lists = []
    for _ in plan.lists:
        m = int(nums[j])
        items = []
        for size in nums[j + 1 : j + 1 + m]:
            end = pos + int(size)
            items.append(raw[pos:end].decode())
            pos = end
        lists.append(tuple(items))
        j += 1 + m
    flags = []
    for f in plan.flags:
        values = []
        for size in nums[j : j + len(f.fields)]:
            end = pos + int(size)
            values.append(raw[pos:end].decode())
            pos = end
        flags.append(tuple(values))
        j += len(f.fields)
    return Snapshot(
        reads=tuple(reads), lists=tuple(lists), flags=tuple(flags), counted=plan.count, shared=True
    )


class RedisFraudBackend:
    def __init__(
        self,
        client: aioredis.Redis | aioredis.RedisCluster,
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
    ) -> bytes:
        if self._sha is None or (self._schemas is not schemas and self._schemas != schemas):
            await self.load(schemas)
        assert self._sha is not None
        # asyncio.timeout, not wait_for: no extra task per call
        try:
            async with asyncio.timeout(self._call_timeout):
                res = await self.client.evalsha(self._sha, len(keys), *keys, *argv)  # type: ignore[no-untyped-call]
        except NoScriptError:
            await self.load(schemas)
            async with asyncio.timeout(self._call_timeout):
                res = await self.client.evalsha(self._sha, len(keys), *keys, *argv)  # type: ignore[no-untyped-call]
        if not isinstance(res, bytes) or len(res) < 8:
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

    async def erase(self, erasure: Erasure) -> int:
        """DEL the keys, SCAN for the ``matching`` ones (an admin operation: it walks the keyspace
        in steps of 1 000), drop the list entries with a small script, and forget queued
        corrections to them; also on the local fallback. Redis errors are raised: an erasure
        must not pass silently."""
        self._pending = without(self._pending, erasure)
        self.stats.pending = len(self._pending)
        n = await self.fallback.erase(erasure)
        found = set(erasure.keys)
        for head, tail in erasure.matching:
            pattern = _glob_escape(head) + "*" + _glob_escape(tail)
            async for raw in self.client.scan_iter(match=pattern, count=1000):
                k = _text(raw)
                if k.startswith(head) and k.endswith(tail):
                    found.add(k)
        if found:
            n += int(await self.client.delete(*sorted(found)))
        for key, value in erasure.entries:
            n += int(await self.client.eval(_DROP_ENTRIES, 1, key, value + ":"))  # type: ignore[misc]
        return n

    async def close(self) -> None:
        await self.fallback.close()


# Entries of a short recent list (a MessagePack array in one value, see lua/check.lua) that start with
# ARGV[1]; the rest is written back with the key's remaining time to live.
_DROP_ENTRIES = """
local v = redis.call('GET', KEYS[1])
if not v then return 0 end
local old, kept = cmsgpack.unpack(v), {}
for _, e in ipairs(old) do
  if string.sub(e, 1, #ARGV[1]) ~= ARGV[1] then kept[#kept + 1] = e end
end
local gone = #old - #kept
if gone == 0 then return 0 end
if #kept == 0 then
  redis.call('DEL', KEYS[1])
else
  local ttl = redis.call('PTTL', KEYS[1])
  if ttl > 0 then
    redis.call('SET', KEYS[1], cmsgpack.pack(kept), 'PX', ttl)
  else
    redis.call('SET', KEYS[1], cmsgpack.pack(kept))
  end
end
return gone
"""


def _glob_escape(text: str) -> str:
    return "".join("\\" + c if c in "*?[]\\" else c for c in text)


def _local(snap: Snapshot) -> Snapshot:
    return Snapshot(snap.hits, snap.reads, snap.lists, snap.flags, snap.counted, shared=False)
