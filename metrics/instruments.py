"""Every Prometheus instrument smsgw exports, defined once on a registry passed in.

Names and labels are the public contract (``../shared/CONTRACT.md``): dashboards and alerts rely on them.
Labels carry only bounded values (tenant ids, ISO country codes, route names, fixed reason codes); never a
phone number, a message body or an OTP code.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info
from prometheus_client.core import GaugeMetricFamily, Metric


class _Memo:
    """``labels(...)`` remembered per label values: the request path asks for the same few children
    thousands of times a second, and prometheus_client validates and locks on every call. Children are
    never removed here (no ``remove``/``clear`` on these instruments), so a remembered child stays the
    registered one."""

    _memo: dict[tuple[object, ...], Any]

    def labels(self, *values: Any, **kw: Any) -> Any:
        if kw:
            return super().labels(*values, **kw)  # type: ignore[misc]
        try:
            return self._memo[values]
        except AttributeError:
            self._memo = {}
        except KeyError:
            pass
        child = self._memo[values] = super().labels(*values)  # type: ignore[misc]
        return child


class MemoCounter(_Memo, Counter):
    pass


class MemoHistogram(_Memo, Histogram):
    pass


LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


@dataclass(frozen=True)
class Instruments:
    registry: CollectorRegistry
    otp_sent: Counter
    otp_verified: Counter
    messages: Counter
    fraud_decisions: Counter
    rate_limited: Counter
    conversion_events: Counter
    http_duration: Histogram
    route_up: Gauge
    submit_latency: Histogram
    state_backend_errors: Counter
    state_fallback: Counter
    state_fallback_active: Gauge
    dispatch_queue: Gauge
    dispatch_takeovers: Counter
    dispatch_bookkeeping_retries: Counter
    build: Info
    route_throttled: Counter
    route_failovers: Counter
    breaker_transitions: Counter
    route_reloads: Counter
    webhook_deliveries: Counter


def _labelled(c: Counter, *children: tuple[str, ...]) -> Counter:
    """``c`` with these label children made now, so their series read 0 from the start (an alert on
    ``increase()`` then sees the first event)."""
    for values in children:
        c.labels(*values)
    return c


def create_instruments(registry: CollectorRegistry, version: str = "0.0.0") -> Instruments:
    def counter(name: str, doc: str, labels: tuple[str, ...]) -> Counter:
        return MemoCounter(name, doc, labels, registry=registry)

    build = Info("smsgw_build", "smsgw build information", registry=registry)
    build.info({"version": version})
    return Instruments(
        registry=registry,
        otp_sent=counter("smsgw_otp_sent_total", "OTPs handed to a carrier", ("tenant", "country", "route")),
        otp_verified=counter(
            "smsgw_otp_verified_total",
            "OTPs verified, by the route that carried them",
            ("tenant", "country", "route"),
        ),
        messages=counter(
            "smsgw_messages_total", "Message status transitions", ("country", "route", "status")
        ),
        fraud_decisions=counter(
            "smsgw_fraud_decisions_total", "Anti-fraud decisions", ("country", "decision", "reason")
        ),
        rate_limited=counter("smsgw_rate_limited_total", "Requests refused by a rate limit", ("scope",)),
        conversion_events=counter(
            "smsgw_conversion_events_total",
            "Conversion events reported by apps",
            ("tenant", "country", "event"),
        ),
        http_duration=MemoHistogram(
            "smsgw_http_request_duration_seconds",
            "HTTP request duration",
            ("endpoint", "status"),
            buckets=LATENCY_BUCKETS,
            registry=registry,
        ),
        route_up=Gauge(
            "smsgw_route_up", "1 when the route can take traffic", ("route", "carrier"), registry=registry
        ),
        submit_latency=MemoHistogram(
            "smsgw_carrier_submit_seconds",
            "Time for a carrier to accept a submission",
            ("route",),
            buckets=LATENCY_BUCKETS,
            registry=registry,
        ),
        state_backend_errors=counter(
            "smsgw_state_backend_errors_total",
            "Shared-state backend failures (fell back to local state)",
            ("operation",),
        ),
        state_fallback=_labelled(
            counter(
                "smsgw_state_fallback_total",
                "Shared-state (Redis) transitions of this process: down = fell back to local state, "
                "up = back on Redis",
                ("transition",),
            ),
            ("down",),
            ("up",),
        ),
        state_fallback_active=Gauge(
            "smsgw_state_fallback_active",
            "1 while this process serves hot state without Redis (local resend gates, verify 503)",
            registry=registry,
            multiprocess_mode="livemax",  # under serve --workers: 1 when any live worker is without Redis
        ),
        dispatch_queue=Gauge(
            "smsgw_dispatch_queue",
            "Accepted messages waiting for dispatch",
            registry=registry,
            multiprocess_mode="livesum",  # under serve --workers: the live workers' queues added up
        ),
        dispatch_takeovers=Counter(
            "smsgw_dispatch_takeovers_total",
            "Submissions whose claim another worker had taken over when they finished (lease too short?)",
            registry=registry,
        ),
        dispatch_bookkeeping_retries=Counter(
            "smsgw_dispatch_bookkeeping_retries_total",
            "Retries of recording a carrier-accepted submission while the store could not write",
            registry=registry,
        ),
        build=build,
        route_throttled=counter(
            "smsgw_route_throttled_total", "Submissions a route's carrier answered throttled", ("route",)
        ),
        route_failovers=counter(
            "smsgw_route_failovers_total",
            "Messages moved off a route after a temporary failure or throttling",
            ("route", "outcome"),
        ),
        breaker_transitions=counter(
            "smsgw_route_breaker_transitions_total",
            "Circuit-breaker state changes, by the state entered",
            ("route", "state"),
        ),
        route_reloads=counter(
            "smsgw_route_table_reloads_total", "Route table reloads (ok or refused)", ("result",)
        ),
        webhook_deliveries=counter(
            "smsgw_webhook_deliveries_total",
            "Status callbacks to tenant webhooks by result (ok, retry, failed, dropped)",
            ("result",),
        ),
    )


@dataclass(frozen=True, slots=True)
class RouteSample:
    """One route's health at scrape time."""

    route: str
    carrier: str
    up: bool
    breaker: int  # 0 closed, 1 half-open, 2 open


@dataclass(frozen=True, slots=True)
class BindSample:
    """One SMPP bind's window at scrape time."""

    carrier: str
    bind: int
    outstanding: int
    window: int


class RouteHealthCollector:
    """``smsgw_route_up{route,carrier}``, ``smsgw_route_breaker_state{route}`` and the SMPP window per
    bind, read from the live route table when Prometheus scrapes (nothing to keep in step by hand, and
    a route removed by a reload disappears)."""

    def __init__(
        self, routes: Callable[[], Iterable[RouteSample]], binds: Callable[[], Iterable[BindSample]]
    ) -> None:
        self._routes = routes
        self._binds = binds

    @staticmethod
    def _families() -> tuple[GaugeMetricFamily, ...]:
        return (
            GaugeMetricFamily(
                "smsgw_route_up", "1 when the route can take traffic", labels=["route", "carrier"]
            ),
            GaugeMetricFamily(
                "smsgw_route_breaker_state",
                "Circuit breaker of the route: 0 closed, 1 half-open (probing), 2 open",
                labels=["route"],
            ),
            GaugeMetricFamily(
                "smsgw_carrier_window_outstanding",
                "submit_sm awaiting their response, per SMPP bind",
                labels=["carrier", "bind"],
            ),
            GaugeMetricFamily(
                "smsgw_carrier_window_occupancy",
                "Outstanding submit_sm / window size, per SMPP bind (1 = full)",
                labels=["carrier", "bind"],
            ),
        )

    def describe(self) -> Iterator[Metric]:
        return iter(self._families())

    def collect(self) -> Iterator[Metric]:
        up, breaker, outstanding, occupancy = self._families()
        for r in self._routes():
            up.add_metric([r.route, r.carrier], 1.0 if r.up else 0.0)
            breaker.add_metric([r.route], float(r.breaker))
        for b in self._binds():
            outstanding.add_metric([b.carrier, str(b.bind)], float(b.outstanding))
            occupancy.add_metric([b.carrier, str(b.bind)], b.outstanding / b.window if b.window else 0.0)
        yield from (up, breaker, outstanding, occupancy)


def use_route_health_collector(instruments: Instruments, collector: RouteHealthCollector) -> None:
    """Export route health at scrape time: the collector takes over ``smsgw_route_up`` from the static
    gauge (which stays for code that sets it by hand, unexported on this registry)."""
    instruments.registry.unregister(instruments.route_up)
    instruments.registry.register(collector)


class _ScrapeTimeOnly:
    """The metrics of ``local`` whose values are not in the shared directory: build info and the
    scrape-time collectors (route health, the process's own CPU and memory)."""

    def __init__(self, local: CollectorRegistry, shared: frozenset[str]) -> None:
        self.local, self.shared = local, shared

    def collect(self) -> Iterator[Metric]:
        return (m for m in self.local.collect() if m.name not in self.shared)


def exposition_registry(instruments: Instruments, multiproc_dir: str | None) -> CollectorRegistry:
    """What ``/metrics`` renders. One process: its own registry. Under ``serve --workers`` (each
    worker started with ``PROMETHEUS_MULTIPROC_DIR``, prometheus_client's multiprocess mode): every
    worker's counters, histograms and gauges added up from that directory, whichever worker the scrape
    reaches, plus this worker's scrape-time metrics (route health as this process sees it)."""
    if not multiproc_dir:
        return instruments.registry
    from prometheus_client import multiprocess

    valued = (v for v in vars(instruments).values() if isinstance(v, Counter | Gauge | Histogram))
    shared = frozenset(m.name for v in valued for m in v.collect())
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry, path=multiproc_dir)  # type: ignore[no-untyped-call]
    registry.register(_ScrapeTimeOnly(instruments.registry, shared))  # type: ignore[arg-type]
    return registry
