"""Route health: rolling per-route statistics and a circuit breaker. Pure: every method takes ``now``.

A :class:`RouteHealth` per route keeps

* the breaker (one table, :data:`TRANSITIONS`, one :func:`transition`)::

      CLOSED ──trip──▶ OPEN ──cooled──▶ HALF_OPEN ──probe_ok──▶ CLOSED
                        ▲                    │
                        └────probe_failed────┘      (the cool-down doubles, up to a maximum)

  It trips after ``failures`` consecutive failed submissions, or when failures reach
  ``failure_rate`` of at least ``min_samples`` attempts within ``window_s``. While OPEN the route takes
  nothing; once ``cooldown_s`` has passed, exactly one message is let through as a probe
  (:meth:`RouteHealth.acquire` moves the breaker to HALF_OPEN and holds the probe); its outcome closes
  the breaker or opens it again. A probe whose outcome never comes back frees the slot after
  ``probe_timeout_s``.
* a throttle hold: a THROTTLED answer keeps new messages off the route for ``throttle_hold_s``,
  doubling for consecutive throttles up to ``throttle_hold_max_s``; an accepted submission resets it.
  Throttling is the carrier asking us to slow down, not a fault: it never trips the breaker.
* delivery statistics per destination country from delivery receipts (delivered against failed or
  expired) over ``stats_window_s``: routing divides price by the smoothed delivery rate.

What counts: ACCEPTED and PERMANENT (the carrier answered; the message itself was refused) are
successes for the breaker, TEMPORARY (error, timeout, connection lost, not bound) is a failure,
THROTTLED is neither. Every count lives in fixed time buckets with running totals, so recording and
reading are O(1) however long the window.
"""

from __future__ import annotations

import enum
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from carriers.base import ReceiptStatus, SubmitOutcome


class BreakerState(enum.Enum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class BreakerEvent(enum.Enum):
    TRIP = "trip"  # failures crossed a threshold
    COOLED = "cooled"  # the cool-down passed and a probe is let through
    PROBE_OK = "probe_ok"
    PROBE_FAILED = "probe_failed"


TRANSITIONS: dict[tuple[BreakerState, BreakerEvent], BreakerState] = {
    (BreakerState.CLOSED, BreakerEvent.TRIP): BreakerState.OPEN,
    (BreakerState.OPEN, BreakerEvent.COOLED): BreakerState.HALF_OPEN,
    (BreakerState.HALF_OPEN, BreakerEvent.PROBE_OK): BreakerState.CLOSED,
    (BreakerState.HALF_OPEN, BreakerEvent.PROBE_FAILED): BreakerState.OPEN,
}

# numeric value of each state for the smsgw_route_breaker_state gauge
STATE_VALUE = {BreakerState.CLOSED: 0, BreakerState.HALF_OPEN: 1, BreakerState.OPEN: 2}


def transition(state: BreakerState, event: BreakerEvent) -> BreakerState:
    try:
        return TRANSITIONS[(state, event)]
    except KeyError:
        raise ValueError(f"breaker cannot go from {state.value} on {event.value}") from None


def state_diagram() -> str:
    """The breaker's state diagram (Mermaid), drawn from :data:`TRANSITIONS` for docs/routing.md."""
    lines = ["stateDiagram-v2", "    [*] --> closed"]
    for (src, event), dst in TRANSITIONS.items():
        lines.append(f"    {src.value} --> {dst.value}: {event.value}")
    return "\n".join(lines)


@dataclass(frozen=True, slots=True)
class HealthPolicy:
    failures: int = 5  # consecutive failed submissions that open the breaker
    failure_rate: float = 0.5  # ... or this share of failed attempts
    min_samples: int = 20  # ... among at least this many attempts
    window_s: float = 60.0  # ... within this window
    cooldown_s: float = 30.0  # OPEN this long before a probe
    max_cooldown_s: float = 300.0  # the cool-down doubles after each failed probe, up to this
    probe_timeout_s: float = 30.0  # a probe with no outcome by then frees the slot
    throttle_hold_s: float = 0.5  # after a THROTTLED answer, keep new messages away this long
    throttle_hold_max_s: float = 8.0  # doubling for consecutive throttles up to this
    stats_window_s: float = 1800.0  # delivery statistics over this window

    def __post_init__(self) -> None:
        if self.failures < 1 or not 0 < self.failure_rate <= 1 or self.min_samples < 1:
            raise ValueError("failures and min_samples must be >= 1, failure_rate in (0, 1]")
        if min(self.window_s, self.cooldown_s, self.stats_window_s, self.probe_timeout_s) <= 0:
            raise ValueError("windows and cool-downs must be positive")


class RollingCounts:
    """Named counters over a sliding window of ``buckets`` fixed time buckets, with running totals."""

    def __init__(self, window_s: float, buckets: int = 12) -> None:
        self.window_s = window_s
        self.width = window_s / buckets
        self._buckets: deque[tuple[int, dict[str, int]]] = deque()
        self._totals: dict[str, int] = {}

    def _expire(self, now: float) -> None:
        oldest = int(now // self.width) - int(self.window_s // self.width) + 1
        while self._buckets and self._buckets[0][0] < oldest:
            _, counts = self._buckets.popleft()
            for k, v in counts.items():
                self._totals[k] -= v

    def add(self, name: str, now: float, n: int = 1) -> None:
        self._expire(now)
        index = int(now // self.width)
        if not self._buckets or self._buckets[-1][0] < index:
            self._buckets.append((index, {}))
        counts = self._buckets[-1][1]  # an event stamped in the past (clock skew) lands in the newest
        counts[name] = counts.get(name, 0) + n
        self._totals[name] = self._totals.get(name, 0) + n

    def get(self, name: str, now: float) -> int:
        self._expire(now)
        return self._totals.get(name, 0)


@dataclass
class RouteHealth:
    """The breaker, throttle hold and delivery statistics of one route (see the module docstring)."""

    route: str
    policy: HealthPolicy = field(default_factory=HealthPolicy)
    state: BreakerState = BreakerState.CLOSED
    since: float = 0.0  # when the state last changed
    reason: str = ""  # why it last opened
    consecutive: int = 0  # failed submissions in a row
    cooldown_s: float = 0.0  # the current cool-down (doubles after failed probes)
    open_until: float = 0.0
    probe_started: float | None = None
    throttle_until: float = 0.0
    throttle_hold: float = 0.0
    throttled: int = 0  # THROTTLED answers since start
    transitions: int = 0

    def __post_init__(self) -> None:
        self.cooldown_s = self.cooldown_s or self.policy.cooldown_s
        self._recent = RollingCounts(self.policy.window_s)
        self._delivery: dict[str, RollingCounts] = {}

    # ------------------------------------------------------------------ breaker

    def _go(self, event: BreakerEvent, now: float) -> BreakerEvent:
        self.state = transition(self.state, event)
        self.since = now
        self.transitions += 1
        return event

    def availability(self, now: float) -> str | None:
        """None when the route may take a message now, else why not (for the route reason)."""
        if self.state is BreakerState.OPEN and now < self.open_until:
            return f"breaker open ({self.reason}); probing again in {self.open_until - now:.0f} s"
        if self.state is BreakerState.HALF_OPEN and not self._probe_slot_free(now):
            return "breaker half-open: a probe is in flight"
        if now < self.throttle_until:
            return f"throttled by the carrier; held for {self.throttle_until - now:.1f} s"
        return None

    def _probe_slot_free(self, now: float) -> bool:
        return self.probe_started is None or now - self.probe_started >= self.policy.probe_timeout_s

    def acquire(self, now: float) -> BreakerEvent | None:
        """A message is about to go on this route (call right after :meth:`availability` said yes).
        When the breaker's cool-down has passed this message becomes the probe: returns COOLED."""
        if self.state is BreakerState.OPEN and now >= self.open_until:
            self.probe_started = now
            return self._go(BreakerEvent.COOLED, now)
        if self.state is BreakerState.HALF_OPEN and self._probe_slot_free(now):
            self.probe_started = now  # the last probe never reported back: this one replaces it
        return None

    def record(self, outcome: SubmitOutcome, now: float, error: str = "") -> BreakerEvent | None:
        """The outcome of one submission on this route; returns the breaker event it caused, if any."""
        if outcome is SubmitOutcome.THROTTLED:
            self.throttled += 1
            self.throttle_hold = min(
                max(self.throttle_hold * 2, self.policy.throttle_hold_s), self.policy.throttle_hold_max_s
            )
            self.throttle_until = now + self.throttle_hold
            if self.state is BreakerState.HALF_OPEN:  # the carrier answered: it is alive
                self.probe_started = None
                return self._close(now)
            return None
        if outcome is SubmitOutcome.ACCEPTED:
            self.throttle_hold = 0.0
            self.throttle_until = 0.0
        if outcome in (SubmitOutcome.ACCEPTED, SubmitOutcome.PERMANENT):
            self.consecutive = 0
            self._recent.add("ok", now)
            if self.state is BreakerState.HALF_OPEN:
                self.probe_started = None
                return self._close(now)
            return None
        # TEMPORARY: a failure
        self.consecutive += 1
        self._recent.add("failed", now)
        if self.state is BreakerState.HALF_OPEN:
            self.probe_started = None
            self.cooldown_s = min(self.cooldown_s * 2, self.policy.max_cooldown_s)
            self.open_until = now + self.cooldown_s
            self.reason = f"probe failed: {error or 'temporary failure'}"
            return self._go(BreakerEvent.PROBE_FAILED, now)
        if self.state is BreakerState.CLOSED:
            why = self._trip_reason(now, error)
            if why:
                self.reason = why
                self.cooldown_s = self.policy.cooldown_s
                self.open_until = now + self.cooldown_s
                return self._go(BreakerEvent.TRIP, now)
        return None  # OPEN: a submission that was already in flight when it opened

    def _close(self, now: float) -> BreakerEvent:
        self.cooldown_s = self.policy.cooldown_s
        self.consecutive = 0
        return self._go(BreakerEvent.PROBE_OK, now)

    def _trip_reason(self, now: float, error: str) -> str:
        p = self.policy
        last = f" (last: {error})" if error else ""
        if self.consecutive >= p.failures:
            return f"{self.consecutive} consecutive failures{last}"
        failed = self._recent.get("failed", now)
        attempts = failed + self._recent.get("ok", now)
        if attempts >= p.min_samples and failed / attempts >= p.failure_rate:
            return f"{failed} of {attempts} submissions failed in {p.window_s:.0f} s{last}"
        return ""

    # ------------------------------------------------------------------ delivery statistics

    def record_receipt(self, country: str, status: ReceiptStatus, now: float) -> None:
        if status is ReceiptStatus.ENROUTE:
            return
        counts = self._delivery.get(country)
        if counts is None:
            counts = self._delivery[country] = RollingCounts(self.policy.stats_window_s, 30)
        counts.add("delivered" if status is ReceiptStatus.DELIVERED else "undelivered", now)

    def delivery(self, country: str | None, now: float) -> tuple[int, int]:
        """(delivered, undelivered) receipts in the stats window, for one country or all."""
        rows = self._delivery.values() if country is None else [self._delivery.get(country)]
        d = u = 0
        for counts in rows:
            if counts is not None:
                d += counts.get("delivered", now)
                u += counts.get("undelivered", now)
        return d, u

    def recent(self, now: float) -> tuple[int, int]:
        """(succeeded, failed) submissions within the breaker's window."""
        return self._recent.get("ok", now), self._recent.get("failed", now)

    def with_policy(self, policy: HealthPolicy) -> RouteHealth:
        """This route's state under a new policy (a reload): counts and breaker state carry over."""
        if policy == self.policy:
            return self
        fresh = RouteHealth(self.route, policy)
        for name in ("state", "since", "reason", "consecutive", "open_until", "probe_started"):
            setattr(fresh, name, getattr(self, name))
        fresh.throttle_until, fresh.throttle_hold, fresh.throttled = (
            self.throttle_until,
            self.throttle_hold,
            self.throttled,
        )
        fresh._delivery = self._delivery
        return fresh

    def snapshot(self, now: float) -> dict[str, Any]:
        ok, failed = self.recent(now)
        out: dict[str, Any] = {
            "state": self.state.value,
            "since": self.since or None,
            "consecutive_failures": self.consecutive,
            "recent_ok": ok,
            "recent_failed": failed,
            "throttled_total": self.throttled,
        }
        if self.state is not BreakerState.CLOSED:
            out["reason"] = self.reason
            out["probe_in"] = max(0.0, round(self.open_until - now, 1))
        if now < self.throttle_until:
            out["throttle_hold_s"] = round(self.throttle_until - now, 2)
        return out
