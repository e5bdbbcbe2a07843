"""Route health (carriers.health): the breaker's table, tripping by consecutive failures and by rate,
cool-down and one probe, doubling cool-downs, throttle holds, delivery statistics over a window."""

from __future__ import annotations

import pytest

from carriers.base import ReceiptStatus, SubmitOutcome
from carriers.health import (
    TRANSITIONS,
    BreakerEvent,
    BreakerState,
    HealthPolicy,
    RollingCounts,
    RouteHealth,
    state_diagram,
    transition,
)

OK, TEMP, THROTTLED, PERM = (
    SubmitOutcome.ACCEPTED,
    SubmitOutcome.TEMPORARY,
    SubmitOutcome.THROTTLED,
    SubmitOutcome.PERMANENT,
)


def health(**kw: float) -> RouteHealth:
    return RouteHealth("r", HealthPolicy(**kw))  # type: ignore[arg-type]


@pytest.mark.parametrize("state", list(BreakerState))
@pytest.mark.parametrize("event", list(BreakerEvent))
def test_every_pair_of_the_table_and_nothing_else(state: BreakerState, event: BreakerEvent) -> None:
    if (state, event) in TRANSITIONS:
        assert transition(state, event) is TRANSITIONS[(state, event)]
    else:
        with pytest.raises(ValueError, match="breaker cannot go"):
            transition(state, event)


def test_diagram_is_drawn_from_the_table() -> None:
    diagram = state_diagram()
    for (src, event), dst in TRANSITIONS.items():
        assert f"{src.value} --> {dst.value}: {event.value}" in diagram


def test_trips_after_n_consecutive_failures_and_an_accept_resets_the_count() -> None:
    h = health(failures=3, min_samples=1000)
    assert h.record(TEMP, 1.0, "http_503") is None
    assert h.record(TEMP, 2.0, "http_503") is None
    assert h.record(OK, 3.0) is None
    assert h.consecutive == 0
    assert h.record(TEMP, 4.0) is None
    assert h.record(TEMP, 5.0) is None
    assert h.record(TEMP, 6.0, "no_response") is BreakerEvent.TRIP
    assert h.state is BreakerState.OPEN
    assert h.reason == "3 consecutive failures (last: no_response)"
    assert h.availability(6.0) == (
        "breaker open (3 consecutive failures (last: no_response)); probing again in 30 s"
    )


def test_trips_on_failure_rate_over_the_window() -> None:
    h = health(failures=100, failure_rate=0.5, min_samples=10, window_s=60)
    t = 0.0
    for i in range(9):  # F,O,F,O... never 100 in a row
        t += 1
        h.record(TEMP if i % 2 == 0 else OK, t)
    assert h.state is BreakerState.CLOSED  # 9 attempts: below min_samples
    assert h.record(TEMP, t + 1) is BreakerEvent.TRIP
    assert h.reason.startswith("6 of 10 submissions failed in 60 s")


def test_old_failures_leave_the_window() -> None:
    h = health(failures=100, failure_rate=0.5, min_samples=10, window_s=60)
    for i in range(9):
        h.record(TEMP, float(i))
    # two minutes later those nine are gone: one more failure is 1 of 1
    assert h.record(TEMP, 200.0) is None
    assert h.recent(200.0) == (0, 1)


def test_half_open_lets_exactly_one_probe_and_success_closes() -> None:
    h = health(failures=1, cooldown_s=10)
    h.record(TEMP, 0.0)
    assert h.availability(9.9) is not None
    assert h.availability(10.0) is None  # cooled: the next message may go, as the probe
    assert h.acquire(10.0) is BreakerEvent.COOLED
    assert h.state is BreakerState.HALF_OPEN
    assert h.availability(10.1) == "breaker half-open: a probe is in flight"
    assert h.record(OK, 10.5) is BreakerEvent.PROBE_OK
    assert h.state is BreakerState.CLOSED and h.availability(10.5) is None
    assert h.cooldown_s == 10


def test_failed_probes_double_the_cool_down_up_to_the_maximum() -> None:
    h = health(failures=1, cooldown_s=10, max_cooldown_s=35)
    h.record(TEMP, 0.0)
    t = 0.0
    waits = []
    for _ in range(4):
        t = h.open_until
        assert h.acquire(t) is BreakerEvent.COOLED
        assert h.record(TEMP, t, "http_503") is BreakerEvent.PROBE_FAILED
        waits.append(h.open_until - t)
    assert waits == [20, 35, 35, 35]
    assert h.reason == "probe failed: http_503"
    h.acquire(h.open_until)
    h.record(OK, h.open_until)
    assert h.state is BreakerState.CLOSED and h.cooldown_s == 10


def test_a_probe_that_never_reports_frees_the_slot_after_the_probe_timeout() -> None:
    h = health(failures=1, cooldown_s=5, probe_timeout_s=20)
    h.record(TEMP, 0.0)
    h.acquire(5.0)
    assert h.availability(24.9) is not None
    assert h.availability(25.0) is None
    assert h.acquire(25.0) is None  # still half-open: this message replaces the lost probe
    assert h.probe_started == 25.0


def test_permanent_answers_prove_the_route_alive_and_throttling_never_trips() -> None:
    h = health(failures=2)
    h.record(TEMP, 0.0)
    h.record(PERM, 1.0)  # the carrier answered (the message was bad): not a route failure
    h.record(TEMP, 2.0)
    assert h.state is BreakerState.CLOSED
    for t in range(3, 30):
        assert h.record(THROTTLED, float(t)) is None
    assert h.state is BreakerState.CLOSED and h.throttled == 27


def test_throttle_hold_doubles_and_an_accept_clears_it() -> None:
    h = health(throttle_hold_s=0.5, throttle_hold_max_s=2.0)
    holds = []
    for t in (0.0, 10.0, 20.0, 30.0):
        h.record(THROTTLED, t)
        holds.append(h.throttle_until - t)
        assert h.availability(t) is not None and h.availability(t).startswith("throttled by the carrier")  # type: ignore[union-attr]
    assert holds == [0.5, 1.0, 2.0, 2.0]
    assert h.availability(32.0) is None
    h.record(OK, 33.0)
    h.record(THROTTLED, 34.0)
    assert h.throttle_until - 34.0 == 0.5


def test_a_throttled_probe_closes_the_breaker() -> None:
    h = health(failures=1, cooldown_s=1)
    h.record(TEMP, 0.0)
    h.acquire(1.0)
    assert h.record(THROTTLED, 1.0) is BreakerEvent.PROBE_OK
    assert h.state is BreakerState.CLOSED


def test_delivery_statistics_per_country_over_the_window() -> None:
    h = health(stats_window_s=600)
    for _ in range(8):
        h.record_receipt("DE", ReceiptStatus.DELIVERED, 0.0)
    h.record_receipt("DE", ReceiptStatus.FAILED, 10.0)
    h.record_receipt("DE", ReceiptStatus.EXPIRED, 10.0)
    h.record_receipt("DE", ReceiptStatus.ENROUTE, 10.0)  # not final: not counted
    h.record_receipt("FR", ReceiptStatus.DELIVERED, 300.0)
    assert h.delivery("DE", 300.0) == (8, 2)
    assert h.delivery(None, 300.0) == (9, 2)
    assert h.delivery("US", 300.0) == (0, 0)
    assert h.delivery("DE", 1000.0) == (0, 0)  # out of the window
    assert h.delivery("FR", 850.0) == (1, 0)


def test_rolling_counts_keep_running_totals() -> None:
    c = RollingCounts(60, buckets=6)
    for t in range(120):
        c.add("x", float(t))
    assert c.get("x", 119.0) == 60  # the last six 10-second buckets
    assert c.get("x", 1000.0) == 0


def test_a_new_policy_keeps_the_state() -> None:
    h = health(failures=1, cooldown_s=10)
    h.record(TEMP, 0.0)
    h.record_receipt("DE", ReceiptStatus.DELIVERED, 0.0)
    h2 = h.with_policy(HealthPolicy(failures=5, cooldown_s=60))
    assert h2.state is BreakerState.OPEN and h2.open_until == 10.0 and h2.reason == h.reason
    assert h2.delivery("DE", 1.0) == (1, 0) and h2.policy.failures == 5
    assert h.with_policy(h.policy) is h


def test_snapshot() -> None:
    h = health(failures=1, cooldown_s=10)
    assert h.snapshot(0.0)["state"] == "closed"
    h.record(TEMP, 0.0, "not_bound")
    snap = h.snapshot(4.0)
    assert snap["state"] == "open" and snap["probe_in"] == 6.0
    assert snap["reason"] == "1 consecutive failures (last: not_bound)"


@pytest.mark.parametrize("bad", [{"failures": 0}, {"failure_rate": 0.0}, {"cooldown_s": 0.0}])
def test_policy_is_checked(bad: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        HealthPolicy(**bad)  # type: ignore[arg-type]


def test_docs_draw_the_same_breaker_diagram() -> None:
    from pathlib import Path

    doc = (Path(__file__).resolve().parents[2] / "docs" / "routing.md").read_text()
    assert "```mermaid\n" + state_diagram() + "\n```" in doc
