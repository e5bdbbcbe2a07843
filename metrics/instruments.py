"""Every Prometheus instrument smsgw exports, defined once on a registry passed in.

Names and labels are the public contract (``../shared/CONTRACT.md``): dashboards and alerts rely on them.
Labels carry only bounded values (tenant ids, ISO country codes, route names, fixed reason codes); never a
phone number, a message body or an OTP code.
"""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info

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
    dispatch_queue: Gauge
    build: Info


def create_instruments(registry: CollectorRegistry, version: str = "0.0.0") -> Instruments:
    def counter(name: str, doc: str, labels: tuple[str, ...]) -> Counter:
        return Counter(name, doc, labels, registry=registry)

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
        http_duration=Histogram(
            "smsgw_http_request_duration_seconds",
            "HTTP request duration",
            ("endpoint", "status"),
            buckets=LATENCY_BUCKETS,
            registry=registry,
        ),
        route_up=Gauge(
            "smsgw_route_up", "1 when the route can take traffic", ("route", "carrier"), registry=registry
        ),
        submit_latency=Histogram(
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
        dispatch_queue=Gauge(
            "smsgw_dispatch_queue", "Accepted messages waiting for dispatch", registry=registry
        ),
        build=build,
    )
