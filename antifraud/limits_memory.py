"""The embedded backend: the semantics of ``limits.py`` on plain Python objects, for one process.

It is the default when no Redis is configured, the Redis backend's fallback during an outage, and
the reference the Lua script is tested against (the same test module runs on both). Keys expire at
``plan.now + ttl`` on the plan's own clock (Redis expires on the server's wall clock); expired keys
are dropped lazily when touched and by a minute-bucketed expiry wheel, so memory stays bounded
without a scan of every key.

Millions of small records must not slow the garbage collector down: records are ``array('d')``,
lists are tuples of strings and rate-limit windows live in one flat dict, none of which the
collector has to traverse (a full collection over a million Python lists takes ~100 ms).
"""

from __future__ import annotations

import math
import struct
from array import array
from collections.abc import Callable
from operator import mul
from typing import Any

from antifraud.limits import (
    BackendStats,
    Erasure,
    HashAdd,
    LimitHit,
    LimitUndo,
    ListPush,
    Plan,
    Settle,
    Snapshot,
    retry_after,
    without,
)

_WHEEL = 60.0
_SHIFT = 1 << 20  # a window slot holds bucket * _SHIFT + count (see limits.py)
Record = array  # array('d'): [t, v0, v1, ...]


class _Layout:
    """One record layout's decay arithmetic: one ``exp`` per distinct τ, spread back to every
    position, records re-packed with one ``struct`` call. Each product is the same IEEE
    multiplication the per-position loop does."""

    __slots__ = ("factors", "pack", "size", "taus", "width", "zero_row", "zeros")

    def __init__(self, taus: tuple[float, ...]) -> None:
        distinct = tuple(dict.fromkeys(taus))
        self.taus = distinct
        self.factors: Callable[[float], tuple[float, ...]] = _factors_of(taus)
        self.size = len(taus)
        self.width = self.size + 1
        self.pack = struct.Struct(f"<{self.width}d").pack_into
        self.zeros = bytes(8 * self.width)
        self.zero_row = (0.0,) * self.size


def _factors_of(taus: tuple[float, ...]) -> Callable[[float], tuple[float, ...]]:
    """``dt -> tuple(exp(-dt / tau) for tau in taus)``, one ``exp`` per distinct τ, as straight-line
    code (built once per layout, as ``dataclasses`` builds its ``__init__``): no loop, no gather, the
    τ as constants. The same division and ``exp`` per position as the loop."""
    distinct = tuple(dict.fromkeys(taus))
    for tau in distinct:
        if not (math.isfinite(tau) and float(repr(tau)) == tau):
            raise ValueError(f"not a finite τ: {tau!r}")
    lines = [f"    e{i} = exp(n / {tau!r})" for i, tau in enumerate(distinct)]
    row = ", ".join(f"e{distinct.index(tau)}" for tau in taus)
    src = "def factors(dt):\n    n = -dt\n" + "\n".join(lines) + f"\n    return ({row},)\n"
    scope: dict[str, Any] = {"exp": math.exp}
    exec(src, scope)  # generated from floats only (checked above)
    made: Callable[[float], tuple[float, ...]] = scope["factors"]
    return made


def _fit(st: array[float], lay: _Layout) -> None:
    """A record stored under an older layout: pad (or cut) it to this one."""
    if len(st) < lay.width:
        st.extend([0.0] * (lay.width - len(st)))
    else:
        del st[lay.width :]


class MemoryFraudBackend:
    def __init__(self) -> None:
        self.stats = BackendStats()
        self._h: dict[str, array[float]] = {}  # decayed records
        self._s: dict[str, dict[str, str]] = {}  # plain hashes (allow/block lists)
        self._lim: dict[str, dict[int, int]] = {}  # limit key -> {window·2 + bucket % 2: bucket·2²⁰ + count}
        self._l: dict[str, tuple[str, ...]] = {}  # lists, newest first
        self._exp: dict[str, float] = {}
        self._wheel: dict[int, set[str]] = {}
        self._wheel_pos: int | None = None
        self._pending: list[Settle] = []
        self._deferred: tuple[HashAdd, ...] = ()
        self._deferred_at: tuple[float, tuple[tuple[float, ...], ...]] | None = None
        self._layouts_for: tuple[tuple[tuple[float, ...], ...], tuple[_Layout, ...]] | None = None
        # exp(-dt/τ) of every position of a layout, per (layout, dt): the held-back writes of one
        # check all share one dt, so the exponentials are computed once per check, not per record
        self._factors: dict[tuple[_Layout, float], tuple[float, ...]] = {}

    # ---- expiry ----------------------------------------------------------------------------------

    def _expire(self, key: str, at: float) -> None:
        """Set the key's expiry; moves of less than a wheel slot are skipped (TTLs are hours), so a
        key may expire up to a minute early, never late."""
        old = self._exp.get(key)
        if old is not None and 0.0 <= at - old < _WHEEL:
            return
        self._exp[key] = at
        self._wheel.setdefault(int(at // _WHEEL), set()).add(key)

    def _drop(self, key: str) -> None:
        self._h.pop(key, None)
        self._s.pop(key, None)
        self._l.pop(key, None)
        self._exp.pop(key, None)
        self._lim.pop(key, None)

    def _purge(self, now: float) -> None:
        slot = int(now // _WHEEL)
        pos = self._wheel_pos
        if pos is None or pos > slot or slot - pos > 10_000:
            for s in [s for s in self._wheel if s < slot]:
                self._purge_slot(s, now)
        else:
            for s in range(pos, slot):
                if s in self._wheel:
                    self._purge_slot(s, now)
        self._wheel_pos = slot

    def _purge_slot(self, slot: int, now: float) -> None:
        for key in self._wheel.pop(slot, ()):
            at = self._exp.get(key)
            if at is not None and at <= now:
                self._drop(key)
            elif at is not None:  # moved on meanwhile: make sure it sits in its current slot
                self._wheel.setdefault(int(at // _WHEEL), set()).add(key)

    def _get(self, key: str, now: float) -> bool:
        """True if the key exists and has not expired (an expired key is dropped)."""
        at = self._exp.get(key)
        if at is not None and at <= now:
            self._drop(key)
            return False
        return True

    def keys(self) -> set[str]:
        """Every live key (tests assert what is left behind)."""
        if self._deferred_at is not None:
            self._apply_pending(*self._deferred_at)
        return set(self._h) | set(self._s) | set(self._lim) | set(self._l)

    # ---- the operations ----------------------------------------------------------------------------

    def _layouts(self, schemas: tuple[tuple[float, ...], ...]) -> tuple[_Layout, ...]:
        cached = self._layouts_for
        if cached is None or cached[0] is not schemas:
            cached = self._layouts_for = (schemas, tuple(_Layout(taus) for taus in schemas))
            self._factors.clear()
        return cached[1]

    def _factor(self, lay: _Layout, dt: float) -> tuple[float, ...]:
        """``exp(-dt/τ)`` for every position of a layout, cached per (layout, dt): the held-back
        writes of one check share one dt. The same floats as the per-position formula."""
        got = self._factors.get((lay, dt))
        if got is None:
            if len(self._factors) > 1024:
                self._factors.clear()
            got = self._factors[(lay, dt)] = lay.factors(dt)
        return got

    def _read(self, key: str, now: float, lay: _Layout) -> tuple[float, ...]:
        """The record decayed to ``now`` (and re-stamped: the same values ``_add`` computes), as the
        snapshot's tuple; zeros if missing (a read creates nothing)."""
        st = self._h.get(key)
        if st is not None:
            at = self._exp.get(key)
            if at is not None and at <= now:
                self._drop(key)
                st = None
        if st is None:
            return lay.zero_row
        if len(st) != lay.width:
            _fit(st, lay)
        dt = now - st[0]
        if dt <= 0:
            return tuple(st[1:])
        fs = self._factors.get((lay, dt))
        row = tuple(map(mul, st[1:], fs if fs is not None else lay.factors(dt)))
        lay.pack(st, 0, now, *row)
        return row

    def _add(
        self,
        key: str,
        schema: int,
        deltas: tuple[tuple[int, float], ...],
        when: float,
        ttl: float,
        now: float,
        layouts: tuple[_Layout, ...],
    ) -> None:
        """A :class:`HashAdd`: the live record decayed in place to ``now`` (re-stamped max(now, t): the
        same values a reader computes), or a new record of zeros, then the deltas, with the decay
        factors shared by every write of one check."""
        lay = layouts[schema]
        exps = self._exp
        st = self._h.get(key)
        if st is not None:
            old = exps.get(key)
            if old is not None and old <= now:
                self._drop(key)
                st = old = None
        else:
            old = exps.get(key)
        if st is None:
            st = self._h[key] = array("d", lay.zeros)
            st[0] = now
        else:
            if len(st) != lay.width:
                _fit(st, lay)
            dt = now - st[0]
            if dt > 0:
                fs = self._factors.get((lay, dt))
                lay.pack(st, 0, now, *map(mul, st[1:], fs if fs is not None else lay.factors(dt)))
        age = st[0] - when
        if age > 0:
            fs = self._factors.get((lay, age))
            if fs is None:
                fs = self._factor(lay, age)
            for pos, d in deltas:
                st[pos + 1] += d * fs[pos]
        else:
            for pos, d in deltas:
                st[pos + 1] += d
        # expiry moves by whole wheel slots only (see _expire), checked inline: this runs ~10× a check
        at = now + ttl
        if old is None or not 0.0 <= at - old < _WHEEL:
            exps[key] = at
            self._wheel.setdefault(int(at // _WHEEL), set()).add(key)

    def _undo(self, op: LimitUndo, now: float) -> None:
        if not self._get(op.key, now):
            return
        slots = self._lim.get(op.key)
        if slots is None:
            return
        for window in op.windows:
            b = math.floor(op.at / window)
            f = 2 * window + b % 2
            v = slots.get(f)
            if v is not None and v // _SHIFT == b and v % _SHIFT > 0:
                slots[f] = v - 1

    def _push(self, op: ListPush, now: float) -> None:
        old = self._l.get(op.key, ()) if self._get(op.key, now) else ()
        self._l[op.key] = (op.value, *old[: op.maxlen - 1])
        self._expire(op.key, now + op.ttl)

    def settle(self, ops: Settle, *, shared: bool = True) -> None:
        if ops:
            self._pending.append(ops)
            self.stats.settles += 1
            self.stats.pending = len(self._pending)

    def _apply_pending(self, now: float, schemas: tuple[tuple[float, ...], ...]) -> None:
        """The last check's counter writes (held back), then the settle operations queued since.

        Holding the writes back changes nothing a reader can see (the next check applies them first)
        but lets a correction that undoes them cancel out instead of costing a second update: a
        refused request then costs what an allowed one does."""
        deferred, self._deferred = self._deferred, ()
        if not self._pending and not deferred:
            return
        pending, self._pending = self._pending, []
        layouts = self._layouts(schemas)
        add = self._add
        if deferred and not pending:
            for w in deferred:
                add(w.key, w.schema, w.deltas, w.at, w.ttl, now, layouts)
            return
        if deferred:
            merged: dict[tuple[str, float], dict[int, float]] = {}
            for w in deferred:
                acc = merged.setdefault((w.key, w.at), {})
                for pos, d in w.deltas:
                    acc[pos] = acc.get(pos, 0.0) + d
            rest: list[HashAdd] = []
            for ops in pending:
                for a in ops.adds:
                    acc2 = merged.get((a.key, a.at))
                    if acc2 is None:
                        rest.append(a)
                        continue
                    for pos, d in a.deltas:
                        acc2[pos] = acc2.get(pos, 0.0) + d
            for w in deferred:
                if (w.key, w.at) not in merged:
                    continue
                acc = merged.pop((w.key, w.at))
                deltas = tuple([pd for pd in acc.items() if pd[1] != 0.0])
                add(w.key, w.schema, deltas, w.at, w.ttl, now, layouts)
            for a in rest:
                add(a.key, a.schema, a.deltas, a.at, a.ttl, now, layouts)
        else:
            for ops in pending:
                for a in ops.adds:
                    add(a.key, a.schema, a.deltas, a.at, a.ttl, now, layouts)
        for ops in pending:
            for u in ops.undos:
                self._undo(u, now)
            for p in ops.logs:
                self._push(p, now)
        self.stats.pending = 0

    async def flush(self, now: float, schemas: tuple[tuple[float, ...], ...]) -> None:
        self._apply_pending(now, schemas)

    async def prepare(self, schemas: tuple[tuple[float, ...], ...]) -> None:
        return None

    def execute(self, plan: Plan) -> Snapshot:
        """The whole check, synchronously (the Redis backend's fallback calls this directly)."""
        now = plan.now
        schemas = plan.schemas
        self.stats.checks += 1
        self._purge(now)
        self._apply_pending(now, schemas)

        hits: list[LimitHit] = []
        lim = self._lim
        floor = math.floor
        # (bucket, elapsed share of it) per window length: every scope has the same few windows
        buckets: dict[int, tuple[int, float]] = {}
        for i, spec in enumerate(plan.limits):
            slots = lim.get(spec.key)
            if slots is not None and not self._get(spec.key, now):
                slots = None
            for window, limit in spec.windows:
                if slots is None and limit >= 1:
                    continue
                bf = buckets.get(window)
                if bf is None:
                    b = floor(now / window)
                    bf = buckets[window] = (b, (now - b * window) / window)
                b, frac = bf
                cur = prev = 0.0
                if slots is not None:
                    v = slots.get(2 * window + b % 2, 0)
                    cur = float(v % _SHIFT) if v // _SHIFT == b else 0.0
                    v = slots.get(2 * window + (b - 1) % 2, 0)
                    prev = float(v % _SHIFT) if v // _SHIFT == b - 1 else 0.0
                if prev * (1.0 - frac) + cur + 1 > limit:
                    hits.append(LimitHit(i, window, limit, retry_after(cur, prev, limit, now, window)))
        if hits:
            return Snapshot(hits=tuple(hits))

        layouts = self._layouts(schemas)
        read = self._read
        reads = [read(r.key, now, layouts[r.schema]) for r in plan.reads]
        lists = []
        for key, n in plan.lists:
            got = self._l.get(key) if self._get(key, now) else None
            lists.append(got[:n] if got else ())
        flags = []
        for fr in plan.flags:
            sh = self._s.get(fr.key) if self._get(fr.key, now) else None
            flags.append(tuple(sh.get(f, "") for f in fr.fields) if sh else ("",) * len(fr.fields))

        if plan.count:
            self._deferred = plan.writes  # applied first thing next time (see _apply_pending)
            self._deferred_at = (now, schemas)
            for p in plan.pushes:
                self._push(p, now)
            counted: dict[int, tuple[int, int, int]] = {}  # window -> (bucket, slot, fresh value)
            for spec in plan.limits:
                slots = lim.get(spec.key)
                if slots is None:
                    slots = lim[spec.key] = {}
                for window, _ in spec.windows:
                    bs = counted.get(window)
                    if bs is None:
                        b = floor(now / window)
                        bs = counted[window] = (b, 2 * window + b % 2, b * _SHIFT + 1)
                    b, f, fresh = bs
                    v = slots.get(f, 0)
                    slots[f] = v + 1 if v // _SHIFT == b else fresh
                self._expire(spec.key, now + spec.ttl)
        return Snapshot(
            reads=tuple(reads), lists=tuple(lists), flags=tuple(flags), counted=plan.count, shared=True
        )

    async def check(self, plan: Plan) -> Snapshot:
        return self.execute(plan)

    # ---- admin -------------------------------------------------------------------------------------

    async def hset(self, key: str, mapping: dict[str, str]) -> None:
        self._s.setdefault(key, {}).update(mapping)

    async def hdel(self, key: str, fields: list[str]) -> int:
        h = self._s.get(key, {})
        n = sum(1 for f in fields if h.pop(f, None) is not None)
        if key in self._s and not h:
            del self._s[key]
        return n

    async def hgetall(self, key: str) -> dict[str, str]:
        return dict(self._s.get(key, {}))

    async def delete(self, keys: list[str]) -> int:
        live = self.keys()
        n = 0
        for k in keys:
            n += k in live
            self._drop(k)
        return n

    async def lrange(self, key: str, count: int) -> list[str]:
        return list(self._l.get(key, ()))[:count]

    async def erase(self, erasure: Erasure) -> int:
        """Drop the keys (scanning every key for the ``matching`` ones: an admin operation) and the
        list entries, and any held-back write or queued correction that would bring them back."""
        self._deferred = tuple(w for w in self._deferred if not erasure.covers(w.key))
        self._pending = without(self._pending, erasure)
        self.stats.pending = len(self._pending)
        live = set(self._h) | set(self._s) | set(self._lim) | set(self._l)
        gone = [k for k in live if erasure.covers(k)]
        for k in gone:
            self._drop(k)
        n = len(gone)
        for key, value in erasure.entries:
            old = self._l.get(key)
            if not old:
                continue
            kept = tuple(e for e in old if e.partition(":")[0] != value)
            n += len(old) - len(kept)
            if kept:
                self._l[key] = kept
            else:
                self._drop(key)
        return n

    async def close(self) -> None:
        return None
