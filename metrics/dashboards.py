"""The Grafana dashboard ops watch, generated from code.

    python -m metrics.dashboards > deploy/grafana/dashboards/smsgw.json

A test checks that the committed JSON equals this output, and another evaluates every query below
against a real Prometheus, so a renamed metric or a broken expression fails CI, not a night shift.

Why plain dicts and not a dashboards-as-code library: the dashboard has 4 panel kinds and ~15 panels,
and the part that can be wrong is the PromQL, which no library checks (our Prometheus test does).
grafanalib (last release 2024-01) models an older panel schema; grafana-foundation-sdk is typed and
current, but its builds are versioned by a timestamp epoch per Grafana release (plain ``pip install``
resolves to the Grafana 10.1 build, which emits ``schemaVersion`` 36, ``"options": null`` and empty
``refId``s), so it would add a 5 MB dependency that must be pinned to the right build to write a
file we can read and diff directly. The helpers below give the same structure in ~40 lines.
"""

from __future__ import annotations

import json
import re
import sys
from dataclasses import dataclass, field
from typing import Any

Json = dict[str, Any]

DATASOURCE: Json = {"type": "prometheus", "uid": "prometheus"}
UID = "smsgw-overview"
TITLE = "smsgw: fill-back, conversion, fraud, delivery"
GRID_WIDTH = 24

SENT = "smsgw_otp_sent_total"
VERIFIED = "smsgw_otp_verified_total"
FUNNEL_EVENTS = ("click", "signup", "order", "payment")

# Titles other code (scripts/render_dashboard.py, docs) looks panels up by.
FILLBACK_OVERALL = "Fill-back, last hour"
FILLBACK_BY_COUNTRY = "Fill-back by country"
FILLBACK_BY_ROUTE = "Fill-back by route"
FILLBACK_BY_TENANT = "Fill-back by tenant"
OTP_VOLUME = "OTPs sent per second by country"
FUNNEL = "Conversion funnel (dashboard time range)"
CONVERSION_RATE = "Conversion events per second"
FRAUD_BY_REASON = "Fraud decisions by reason"
RATE_LIMITS = "Rate-limit hits by scope"
DELIVERY_STATUS = "Delivery status"
DELIVERY_FAILURE = "Delivery failure ratio by route"
ROUTE_HEALTH = "Route health"
LATENCY = "Request latency p50 / p99"
LATENCY_BY_ENDPOINT = "p99 latency by endpoint"
REQUESTS_BY_STATUS = "Requests per second by status"


def fillback_expr(by: str | None, window: str = "5m") -> str:
    """``sum by (x) (rate(verified[w])) / sum by (x) (rate(sent[w]))``; overall when ``by`` is None."""
    agg = f"sum by ({by}) " if by else "sum "
    return f"{agg}(rate({VERIFIED}[{window}])) / {agg}(rate({SENT}[{window}]))"


def expand_macros(expr: str, range_s: int) -> str:
    """What Grafana does to ``$__range`` before sending a query; for tools that query Prometheus directly."""
    return expr.replace("$__range", f"{range_s}s")


@dataclass(frozen=True)
class Target:
    expr: str
    legend: str

    def render(self, ref_id: str, instant: bool) -> Json:
        return {
            "datasource": DATASOURCE,
            "expr": self.expr,
            "legendFormat": self.legend,
            "refId": ref_id,
            "instant": instant,
            "range": not instant,
        }


@dataclass(frozen=True)
class Panel:
    title: str
    kind: str  # timeseries | stat | bargauge | state-timeline
    targets: tuple[Target, ...]
    description: str
    width: int = 12
    height: int = 8
    unit: str = "short"
    min: float | None = None
    max: float | None = None
    stack: bool = False
    mappings: tuple[Json, ...] = ()
    thresholds: tuple[tuple[float | None, str], ...] = ((None, "green"),)
    extra_options: Json = field(default_factory=dict)

    @property
    def instant(self) -> bool:
        return self.kind in ("stat", "bargauge")

    def render(self, panel_id: int, x: int, y: int) -> Json:
        defaults: Json = {
            "unit": self.unit,
            "mappings": list(self.mappings),
            "thresholds": {
                "mode": "absolute",
                "steps": [{"color": color, "value": value} for value, color in self.thresholds],
            },
        }
        if self.min is not None:
            defaults["min"] = self.min
        if self.max is not None:
            defaults["max"] = self.max
        if self.kind == "timeseries":
            defaults["custom"] = {
                "drawStyle": "line",
                "lineWidth": 2,
                "fillOpacity": 30 if self.stack else 0,
                "stacking": {"mode": "normal" if self.stack else "none", "group": "A"},
                "showPoints": "never",
                "spanNulls": False,
            }
        options: Json = {"tooltip": {"mode": "multi", "sort": "desc"}}
        if self.kind in ("timeseries", "state-timeline"):
            options["legend"] = {"displayMode": "list", "placement": "bottom", "showLegend": True}
        options.update(self.extra_options)
        return {
            "id": panel_id,
            "type": self.kind,
            "title": self.title,
            "description": self.description,
            "datasource": DATASOURCE,
            "gridPos": {"h": self.height, "w": self.width, "x": x, "y": y},
            "fieldConfig": {"defaults": defaults, "overrides": []},
            "options": options,
            "targets": [t.render(chr(ord("A") + i), self.instant) for i, t in enumerate(self.targets)],
        }


@dataclass(frozen=True)
class Row:
    title: str
    panels: tuple[Panel, ...]


def _rate(metric: str, by: str, selector: str = "", window: str = "5m") -> str:
    return f"sum by ({by}) (rate({metric}{selector}[{window}]))"


def _quantile(q: float, by: str = "le") -> str:
    return f"histogram_quantile({q}, sum by ({by}) (rate(smsgw_http_request_duration_seconds_bucket[5m])))"


_UP_DOWN = (
    {
        "type": "value",
        "options": {"0": {"text": "DOWN", "color": "red"}, "1": {"text": "UP", "color": "green"}},
    },
)
_FAILED = _rate("smsgw_messages_total", "route", '{status=~"failed|rejected"}', "15m")
_FINAL = _rate("smsgw_messages_total", "route", '{status=~"delivered|failed|rejected"}', "15m")

ROWS: tuple[Row, ...] = (
    Row(
        "Fill-back: OTPs verified / OTPs sent",
        (
            Panel(
                FILLBACK_OVERALL,
                "stat",
                (Target(fillback_expr(None, "1h"), "fill-back"),),
                "Share of OTPs sent in the last hour that were verified, all tenants, countries and routes.",
                width=6,
                thresholds=((None, "red"), (0.5, "orange"), (0.7, "green")),
                unit="percentunit",
                min=0.0,
                max=1.0,
            ),
            Panel(
                FILLBACK_BY_COUNTRY,
                "timeseries",
                (Target(fillback_expr("country"), "{{country}}"),),
                "Verified / sent per destination country over 5 minutes. A sudden drop in one country is a "
                "dead route or SMS pumping (see docs/operations.md).",
                width=9,
                unit="percentunit",
                min=0.0,
                max=1.0,
            ),
            Panel(
                FILLBACK_BY_ROUTE,
                "timeseries",
                (Target(fillback_expr("route"), "{{route}}"),),
                "Verified / sent per route over 5 minutes: a route whose OTPs stop being verified while "
                "others hold is failing silently.",
                width=9,
                unit="percentunit",
                min=0.0,
                max=1.0,
            ),
            Panel(
                FILLBACK_BY_TENANT,
                "timeseries",
                (Target(fillback_expr("tenant"), "{{tenant}}"),),
                "Verified / sent per tenant over 5 minutes: one tenant dropping alone points at its app "
                "(or at pumping through its sign-up form), not at a carrier.",
                unit="percentunit",
                min=0.0,
                max=1.0,
            ),
            Panel(
                OTP_VOLUME,
                "timeseries",
                (Target(_rate(SENT, "country"), "{{country}}"),),
                "OTPs handed to a carrier per second: read fill-back against its volume.",
                unit="reqps",
                stack=True,
            ),
        ),
    ),
    Row(
        "Conversion (marketing)",
        (
            Panel(
                FUNNEL,
                "bargauge",
                tuple(
                    Target(f'sum(increase(smsgw_conversion_events_total{{event="{e}"}}[$__range]))', e)
                    for e in FUNNEL_EVENTS
                ),
                "Conversion events reported by apps (POST /v1/events) and tracked-link clicks over the "
                "dashboard's time range, in funnel order.",
                extra_options={"orientation": "horizontal", "displayMode": "gradient", "showUnfilled": True},
            ),
            Panel(
                CONVERSION_RATE,
                "timeseries",
                (Target(_rate("smsgw_conversion_events_total", "event"), "{{event}}"),),
                "Conversion events per second by funnel stage.",
                unit="reqps",
            ),
        ),
    ),
    Row(
        "Anti-fraud and rate limits",
        (
            Panel(
                FRAUD_BY_REASON,
                "timeseries",
                (
                    Target(
                        _rate("smsgw_fraud_decisions_total", "decision, reason"), "{{decision}}: {{reason}}"
                    ),
                ),
                "Anti-fraud decisions per second, by decision and reason.",
                unit="reqps",
                stack=True,
            ),
            Panel(
                RATE_LIMITS,
                "timeseries",
                (Target(_rate("smsgw_rate_limited_total", "scope"), "{{scope}}"),),
                "Requests refused by a rate limit per second, by the limit's scope.",
                unit="reqps",
                stack=True,
            ),
        ),
    ),
    Row(
        "Delivery and routes",
        (
            Panel(
                DELIVERY_STATUS,
                "timeseries",
                (Target(_rate("smsgw_messages_total", "status"), "{{status}}"),),
                "Message status transitions per second (queued, submitted, delivered, failed, rejected).",
                width=8,
                unit="reqps",
            ),
            Panel(
                DELIVERY_FAILURE,
                "timeseries",
                (
                    Target(
                        # a route with no failure at all reads 0, not "no data"
                        f"({_FAILED} or {_FINAL} * 0) / {_FINAL}",
                        "{{route}}",
                    ),
                ),
                "Failed or rejected among messages that reached a final status, per route, over 15 minutes.",
                width=8,
                unit="percentunit",
                min=0.0,
                max=1.0,
            ),
            Panel(
                ROUTE_HEALTH,
                "state-timeline",
                (Target("max by (route, carrier) (smsgw_route_up)", "{{route}} ({{carrier}})"),),
                "1 when a route can take traffic. max over gateway processes: DOWN means down for all.",
                width=8,
                mappings=_UP_DOWN,
                thresholds=((None, "red"), (1, "green")),
            ),
        ),
    ),
    Row(
        "HTTP API",
        (
            Panel(
                LATENCY,
                "timeseries",
                (Target(_quantile(0.5), "p50"), Target(_quantile(0.99), "p99")),
                "Request duration over all endpoints (histogram smsgw_http_request_duration_seconds).",
                width=8,
                unit="s",
            ),
            Panel(
                LATENCY_BY_ENDPOINT,
                "timeseries",
                (Target(_quantile(0.99, "le, endpoint"), "{{endpoint}}"),),
                "p99 request duration per endpoint.",
                width=8,
                unit="s",
            ),
            Panel(
                REQUESTS_BY_STATUS,
                "timeseries",
                (Target(_rate("smsgw_http_request_duration_seconds_count", "status"), "{{status}}"),),
                "HTTP requests per second by response status.",
                width=8,
                unit="reqps",
                stack=True,
            ),
        ),
    ),
)


def build_dashboard(rows: tuple[Row, ...] = ROWS) -> Json:
    panels: list[Json] = []
    next_id, y = 1, 0
    for row in rows:
        panels.append(
            {
                "id": next_id,
                "type": "row",
                "title": row.title,
                "collapsed": False,
                "gridPos": {"h": 1, "w": GRID_WIDTH, "x": 0, "y": y},
                "panels": [],
            }
        )
        next_id, y, x, line_height = next_id + 1, y + 1, 0, 0
        for panel in row.panels:
            if x + panel.width > GRID_WIDTH:
                x, y, line_height = 0, y + line_height, 0
            panels.append(panel.render(next_id, x, y))
            next_id, x, line_height = next_id + 1, x + panel.width, max(line_height, panel.height)
        y += line_height
    return {
        "uid": UID,
        "title": TITLE,
        "description": "Generated by metrics/dashboards.py; edit the code, not this file.",
        "tags": ["smsgw"],
        "timezone": "browser",
        "editable": True,
        "graphTooltip": 1,
        "refresh": "30s",
        "schemaVersion": 39,
        "time": {"from": "now-6h", "to": "now"},
        "annotations": {"list": []},
        "templating": {"list": []},
        "links": [],
        "panels": panels,
    }


def render_json(dashboard: Json) -> str:
    return json.dumps(dashboard, indent=2, ensure_ascii=False) + "\n"


@dataclass(frozen=True)
class Query:
    panel: str
    ref_id: str
    expr: str
    legend: str
    instant: bool


def queries(dashboard: Json) -> list[Query]:
    """Every query of a rendered dashboard, in panel order."""
    return [
        Query(p["title"], t["refId"], t["expr"], t["legendFormat"], t["instant"])
        for p in dashboard["panels"]
        for t in p.get("targets", [])
    ]


def panel_queries(dashboard: Json, title: str) -> list[Query]:
    found = [q for q in queries(dashboard) if q.panel == title]
    if not found:
        raise KeyError(f"no panel titled {title!r}")
    return found


def legend_text(legend: str, labels: dict[str, str]) -> str:
    """Grafana's ``{{label}}`` legend templating, for tools that draw the same series."""
    return re.sub(r"\{\{\s*(\w+)\s*\}\}", lambda m: labels.get(m.group(1), ""), legend)


def main() -> None:
    sys.stdout.write(render_json(build_dashboard()))


if __name__ == "__main__":
    main()
