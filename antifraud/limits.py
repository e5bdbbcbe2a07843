"""Shared state of the fraud check: the operations of one round trip and the backend protocol.

One fraud check is one :class:`Plan` executed atomically by a :class:`FraudBackend`:

1. apply the *settle* operations left over from earlier checks (see below);
2. check every rate limit; if one is reached, stop and report them all (nothing is counted);
3. read the decayed counters, recent-neighbour lists and allow/block flags the features need;
4. unless it is a dry run, count the request: add to the counters, push to the lists, and add one
   to every rate-limit window.

The engine decides *after* the round trip. A request it does not allow was counted as sent in step 4,
so the engine queues its correction (negative adds at the original time, limit decrements) with
:meth:`FraudBackend.settle`; the backend applies it at the start of its next round trip (step 1), so
every check in the process sees exactly the state it would see had the correction been immediate,
and the Redis backend still makes one round trip per request. ``flush()`` applies them on its own.

**Decayed counters.** A record is a fixed layout of floats (a *schema*, see ``features.SCHEMAS``)
plus the time ``t`` they are current at; stored as one MessagePack array ``[t, v0, v1, …]``. Every
position decays with its own time constant τ (``Plan.schemas``): reading at ``now`` gives
``value·exp(-(now-t)/τ)``. Adding ``delta`` for an event at time ``at ≤ now`` adds
``delta·exp(-(now-at)/τ)``, so a verification can be credited at the time its code was *sent*.
A record is re-stamped ``max(t, now)``: a late writer never makes a record younger.

**Sliding-window limits** are two fixed windows weighted (Cloudflare's approximation): with ``cur``
and ``prev`` the counts of the current and previous window and ``frac`` the elapsed share of the
current one, ``estimate = prev·(1-frac) + cur``; a request passes when ``estimate + 1 ≤ limit``.
``retry_after`` is the exact time until that holds again if nothing else is counted. A window keeps
two slots (bucket parity), each holding ``bucket·2²⁰ + count``: no stale fields to clean up.

The Lua script ``lua/check.lua`` implements exactly these semantics; ``limits_memory`` does in Python.

The operations are plain slotted dataclasses, not frozen ones: a check builds a few dozen of them and
a frozen dataclass costs 3–4× as much to create. Treat them as values all the same (nothing here or
in the backends changes one after it is built).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Protocol


@dataclass(slots=True)
class HashAdd:
    """Add ``deltas`` (position, amount) to the decayed record ``key`` of layout ``schema``, for an
    event at time ``at``."""

    key: str
    schema: int
    deltas: tuple[tuple[int, float], ...]
    at: float
    ttl: float


@dataclass(slots=True)
class LimitSpec:
    """The limits of one scope value: ``windows`` = ((window seconds, limit), ...)."""

    key: str  # one hash per scope value; fields "<window>:<bucket % 2>"
    windows: tuple[tuple[int, int], ...]
    ttl: float  # refreshed when counted: twice the longest window


@dataclass(slots=True)
class LimitUndo:
    key: str
    windows: tuple[int, ...]
    at: float  # the time the count was made: its buckets are decremented if they still exist


@dataclass(slots=True)
class ListPush:
    key: str
    value: str
    maxlen: int
    ttl: float


@dataclass(slots=True)
class HashRead:
    key: str
    schema: int


@dataclass(slots=True)
class FlagRead:
    """Plain (non-decayed) hash fields, e.g. allow-list entries; missing fields read as ''."""

    key: str
    fields: tuple[str, ...]


@dataclass(slots=True)
class Settle:
    adds: tuple[HashAdd, ...] = ()
    undos: tuple[LimitUndo, ...] = ()
    logs: tuple[ListPush, ...] = ()  # append-only logs (a Redis LIST), e.g. decisions for review

    def __bool__(self) -> bool:
        return bool(self.adds or self.undos or self.logs)


@dataclass(slots=True)
class Plan:
    now: float
    schemas: tuple[tuple[float, ...], ...]  # per record layout, the τ of each position
    count: bool = True  # False: a dry run that reads only
    limits: tuple[LimitSpec, ...] = ()
    reads: tuple[HashRead, ...] = ()
    lists: tuple[tuple[str, int], ...] = ()  # short recent lists: (key, how many newest entries)
    flags: tuple[FlagRead, ...] = ()
    writes: tuple[HashAdd, ...] = ()
    pushes: tuple[ListPush, ...] = ()  # onto short recent lists (≤ a few dozen entries)


@dataclass(slots=True)
class LimitHit:
    index: int  # into Plan.limits
    window: int  # seconds
    limit: int
    retry_after: float


@dataclass(slots=True)
class Snapshot:
    """What one round trip saw, before this request was counted."""

    hits: tuple[LimitHit, ...] = ()
    reads: tuple[tuple[float, ...], ...] = ()  # aligned with Plan.reads, in schema order
    lists: tuple[tuple[str, ...], ...] = ()  # newest first
    flags: tuple[tuple[str, ...], ...] = ()
    counted: bool = False
    shared: bool = True  # False when a Redis backend answered from its local fallback


@dataclass(frozen=True, slots=True)
class Erasure:
    """Everything kept about one phone number (a data subject's erasure): exact keys, keys that start
    with ``head`` and end with ``tail`` (one per tenant, when the tenants are not known), and entries
    of short recent lists (``(key, value)``: entries ``"<value>:<time>"``)."""

    keys: tuple[str, ...] = ()
    matching: tuple[tuple[str, str], ...] = ()
    entries: tuple[tuple[str, str], ...] = ()

    def covers(self, key: str) -> bool:
        return key in self.keys or any(key.startswith(h) and key.endswith(t) for h, t in self.matching)


def without(pending: list[Settle], erasure: Erasure) -> list[Settle]:
    """Queued corrections minus those that would write an erased key again."""
    out = []
    for ops in pending:
        adds = tuple(a for a in ops.adds if not erasure.covers(a.key))
        undos = tuple(u for u in ops.undos if not erasure.covers(u.key))
        kept = Settle(adds, undos, ops.logs)
        if kept:
            out.append(kept)
    return out


@dataclass(slots=True)
class BackendStats:
    checks: int = 0
    settles: int = 0
    shared_errors: int = 0  # Redis failures (connection, timeout, script errors)
    fallback_checks: int = 0  # checks answered from local memory because Redis failed
    pending: int = 0  # settle operations waiting for the next round trip
    dropped: int = 0  # settle operations dropped while Redis was unreachable (bounded queue)
    last_error: str = field(default="")


class FraudBackend(Protocol):
    stats: BackendStats

    async def check(self, plan: Plan) -> Snapshot: ...

    def settle(self, ops: Settle, *, shared: bool = True) -> None:
        """Queue corrections and records; applied at the start of the next round trip.
        ``shared`` is the ``Snapshot.shared`` of the check they correct (Redis or its fallback)."""
        ...

    async def prepare(self, schemas: tuple[tuple[float, ...], ...]) -> None:
        """Get ready for plans with these record layouts (Redis: SCRIPT LOAD). Optional: the
        first check does it otherwise; a failure is counted, not raised."""
        ...

    async def flush(self, now: float, schemas: tuple[tuple[float, ...], ...]) -> None:
        """Apply queued settle operations now (idle processes; tests)."""
        ...

    # Admin operations (not on the hot path).
    async def hset(self, key: str, mapping: dict[str, str]) -> None: ...

    async def hdel(self, key: str, fields: list[str]) -> int: ...

    async def hgetall(self, key: str) -> dict[str, str]: ...

    async def delete(self, keys: list[str]) -> int: ...

    async def lrange(self, key: str, count: int) -> list[str]: ...

    async def erase(self, erasure: Erasure) -> int:
        """Remove what an :class:`Erasure` names, also from queued operations; how many keys and
        list entries went."""
        ...

    async def close(self) -> None: ...


# ---- the arithmetic both backends share (the Lua script mirrors it line by line) ----------------


def decay_factor(dt: float, tau: float) -> float:
    return math.exp(-dt / tau) if dt > 0 else 1.0


def window_bucket(now: float, window: int) -> int:
    return math.floor(now / window)


def window_estimate(cur: float, prev: float, now: float, window: int) -> float:
    frac = (now - window_bucket(now, window) * window) / window
    return prev * (1.0 - frac) + cur


def retry_after(cur: float, prev: float, limit: int, now: float, window: int) -> float:
    """Seconds until ``estimate + 1 ≤ limit`` holds again, counting nothing more meanwhile."""
    bucket = window_bucket(now, window)
    frac = (now - bucket * window) / window
    if limit <= 0:
        return float(window)
    if cur + 1 <= limit:
        # only the previous window's weight is in the way; it fades linearly
        need = 1.0 - (limit - 1 - cur) / prev if prev > 0 else frac
        return max((need - frac) * window, 0.0)
    # the current window alone is over: wait for it to become the previous one and fade
    delta = window * (1.0 - (limit - 1) / cur)
    return (bucket + 1) * window - now + delta
