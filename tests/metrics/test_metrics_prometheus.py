"""A real Prometheus scrapes a target, evaluates deploy/prometheus's rules, and answers every dashboard query.

The target is the ``scrape_target`` fixture: here a registry built with ``metrics.create_instruments``
and incremented exactly as a :class:`Scenario` says. To point the same checks at the real gateway,
override ``scrape_target`` with an object that has ``address``, ``scenario``, ``prime()`` (make every
series exist before the first scrape) and ``drive()`` (the traffic, counted into ``scenario``).
Every expectation below is computed from the scenario, so it holds for any traffic.
"""

from __future__ import annotations

import math
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any, Protocol

import aiohttp
import pytest
import pytest_asyncio
import yaml

from metrics import dashboards as d
from metrics.instruments import LATENCY_BUCKETS
from tests.metrics.promharness import (
    RULE_FILES,
    MetricsTarget,
    PromApi,
    PrometheusServer,
    Scenario,
    standard_scenario,
    values,
)

pytestmark = [pytest.mark.asyncio(loop_scope="module"), pytest.mark.timeout(60)]

RANGE_S = 300  # what the funnel's $__range stands for here


class ScrapeTarget(Protocol):
    address: str
    scenario: Scenario

    async def prime(self) -> None: ...

    async def drive(self) -> None: ...


class RegistryTarget:
    def __init__(self, target: MetricsTarget, scenario: Scenario) -> None:
        self.target, self.scenario, self.address = target, scenario, target.address

    async def prime(self) -> None:
        self.scenario.zero(self.target.instruments)

    async def drive(self) -> None:
        self.scenario.apply(self.target.instruments)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def scrape_target() -> AsyncIterator[ScrapeTarget]:
    target = MetricsTarget()
    await target.start()
    yield RegistryTarget(target, standard_scenario())
    await target.stop()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def prom(scrape_target: ScrapeTarget) -> AsyncIterator[PromApi]:
    """Prometheus that has scraped the target before and after its traffic, with rules evaluated."""
    await scrape_target.prime()
    server = PrometheusServer([scrape_target.address])
    server.start()
    try:
        async with aiohttp.ClientSession() as session:
            api = PromApi(session, server.url)
            sent = sum(scrape_target.scenario.otp_sent.values())

            async def scraped_at(total: float) -> bool:
                got = values(await api.query("sum(smsgw_otp_sent_total)"))
                return got.get((), -1.0) == total

            await api.wait_for("the target's series at zero", lambda: scraped_at(0))
            await scrape_target.drive()
            await api.wait_for(f"{sent} OTPs sent", lambda: scraped_at(sent))

            async def recorded() -> bool:
                return bool(await api.query("route:smsgw_otp_fillback:ratio_rate1h"))

            await api.wait_for("the recording rules' first values", recorded)
            yield api
    finally:
        server.stop()


def ratio(pair: tuple[int, int]) -> float:
    sent, verified = pair
    return verified / sent


Result = list[dict[str, Any]]
Panel = dict[str, Result]  # refId → result of that query


def only(panel: Panel) -> Result:
    [result] = panel.values()
    return result


def positive(result: Result, *labels: str) -> dict[tuple[str, ...], float]:
    return {k: v for k, v in values(result, *labels).items() if v > 0}


def proportional(got: dict[tuple[str, ...], float], want: dict[tuple[str, ...], int]) -> None:
    """Same series, values in the same proportions (rates of counters scraped at the same instants)."""
    want = {k: n for k, n in want.items() if n}
    assert got.keys() == want.keys()
    first = next(iter(want))
    for k, n in want.items():
        assert got[k] / got[first] == pytest.approx(n / want[first], rel=1e-9), k


def grouped(counts: dict[Any, int], pick: Callable[[Any], tuple[str, ...]]) -> dict[tuple[str, ...], int]:
    out: dict[tuple[str, ...], int] = {}
    for k, n in counts.items():
        out[pick(k)] = out.get(pick(k), 0) + n
    return out


def quantile_bucket(observations: list[float], q: float) -> tuple[float, float]:
    """The histogram bucket (lower, upper] that holds the q-quantile of ``observations``."""
    ranked = sorted(observations)[max(0, math.ceil(q * len(observations)) - 1)]
    bounds = (0.0, *LATENCY_BUCKETS, math.inf)
    return next((bounds[i], bounds[i + 1]) for i in range(len(bounds) - 1) if ranked <= bounds[i + 1])


def check_overall(panel: Panel, sc: Scenario) -> None:
    want = sum(sc.otp_verified.values()) / sum(sc.otp_sent.values())
    assert values(only(panel)) == pytest.approx({(): want}, rel=1e-9)


def check_fillback(dim: int) -> Callable[[Panel, Scenario], None]:
    label = ("tenant", "country", "route")[dim]

    def check(panel: Panel, sc: Scenario) -> None:
        want = {(k,): ratio(v) for k, v in sc.fillback(dim).items() if v[0]}
        assert values(only(panel), label) == pytest.approx(want, rel=1e-9), label

    return check


def check_funnel(panel: Panel, sc: Scenario) -> None:
    # one query per stage, in funnel order; increase() extrapolates alike for all: compare with clicks
    got = {e: values(panel[chr(ord("A") + i)])[()] for i, e in enumerate(d.FUNNEL_EVENTS)}
    want = {k[0]: n for k, n in grouped(sc.conversions, lambda k: (k[2],)).items()}
    assert got["click"] > 0
    for e in d.FUNNEL_EVENTS:
        assert got[e] / got["click"] == pytest.approx(want[e] / want["click"], rel=1e-9), e


def check_latency(panel: Panel, sc: Scenario) -> None:
    observations = [x for obs in sc.latencies.values() for x in obs]
    for ref_id, q in (("A", 0.5), ("B", 0.99)):
        lower, upper = quantile_bucket(observations, q)
        [value] = values(panel[ref_id]).values()
        assert lower < value <= upper, (q, value, lower, upper)


def check_delivery_failure(panel: Panel, sc: Scenario) -> None:
    failed = grouped(
        {k: n for k, n in sc.messages.items() if k[2] in ("failed", "rejected")}, lambda k: (k[1],)
    )
    final = grouped(
        {k: n for k, n in sc.messages.items() if k[2] in ("delivered", "failed", "rejected")},
        lambda k: (k[1],),
    )
    want = {r: failed.get(r, 0) / n for r, n in final.items() if n}
    assert values(only(panel), "route") == pytest.approx(want, rel=1e-9)


def check_route_health(panel: Panel, sc: Scenario) -> None:
    assert values(only(panel), "route", "carrier") == {k: float(v) for k, v in sc.routes_up.items()}


def check_endpoints(panel: Panel, sc: Scenario) -> None:
    assert set(values(only(panel), "endpoint")) == {(k[0],) for k in sc.latencies}


def check_rates(
    label: str, counts: Callable[[Scenario], dict[tuple[str, ...], int]]
) -> Callable[[Panel, Scenario], None]:
    labels = tuple(label.split(", "))
    return lambda panel, sc: proportional(positive(only(panel), *labels), counts(sc))


CHECKS: dict[str, Callable[[Panel, Scenario], None]] = {
    d.FILLBACK_OVERALL: check_overall,
    d.FILLBACK_BY_TENANT: check_fillback(0),
    d.FILLBACK_BY_COUNTRY: check_fillback(1),
    d.FILLBACK_BY_ROUTE: check_fillback(2),
    d.OTP_VOLUME: check_rates("country", lambda sc: grouped(sc.otp_sent, lambda k: (k[1],))),
    d.FUNNEL: check_funnel,
    d.CONVERSION_RATE: check_rates("event", lambda sc: grouped(sc.conversions, lambda k: (k[2],))),
    d.FRAUD_BY_REASON: check_rates("decision, reason", lambda sc: grouped(sc.fraud, lambda k: k[1:])),
    d.RATE_LIMITS: check_rates("scope", lambda sc: {(k,): n for k, n in sc.rate_limited.items()}),
    d.DELIVERY_STATUS: check_rates("status", lambda sc: grouped(sc.messages, lambda k: (k[2],))),
    d.DELIVERY_FAILURE: check_delivery_failure,
    d.ROUTE_HEALTH: check_route_health,
    d.LATENCY: check_latency,
    d.LATENCY_BY_ENDPOINT: check_endpoints,
    d.REQUESTS_BY_STATUS: check_rates(
        "status", lambda sc: {(k[1],): len(v) for k, v in sc.latencies.items()}
    ),
}


async def test_every_dashboard_query_returns_its_series(prom: PromApi, scrape_target: ScrapeTarget) -> None:
    panels: dict[str, Panel] = {}
    at = time.time()  # one instant for all: rates are then computed over the same samples
    for q in d.queries(d.build_dashboard()):
        result = await prom.query(d.expand_macros(q.expr, RANGE_S), at)
        assert result, f"{q.panel} {q.ref_id}: no series for {q.expr}"
        panels.setdefault(q.panel, {})[q.ref_id] = result
    assert set(panels) == set(CHECKS), "every panel needs an expectation here"
    for title, panel in panels.items():
        CHECKS[title](panel, scrape_target.scenario)


async def test_fillback_equals_verified_over_sent(prom: PromApi, scrape_target: ScrapeTarget) -> None:
    sc = scrape_target.scenario
    sent, verified = sum(sc.otp_sent.values()), sum(sc.otp_verified.values())
    assert (sent, verified) == (10, 4)
    counts = values(await prom.query(f"sum({d.SENT})")), values(await prom.query(f"sum({d.VERIFIED})"))
    assert counts == ({(): 10.0}, {(): 4.0})
    overall = values(await prom.query(d.fillback_expr(None)))
    assert overall[()] == pytest.approx(0.4, rel=1e-12)
    by_country = values(await prom.query(d.fillback_expr("country")), "country")
    assert by_country == pytest.approx({("DE",): 2 / 6, ("US",): 2 / 4}, rel=1e-12)


def rule_names() -> dict[str, str]:
    """name → kind ("record" or "alert") of every rule in deploy/prometheus."""
    out = {}
    for path in RULE_FILES:
        for group in yaml.safe_load(Path(path).read_text())["groups"]:
            for rule in group["rules"]:
                kind = "record" if "record" in rule else "alert"
                out[rule[kind]] = kind
    return out


async def test_every_rule_loads_evaluates_and_records(prom: PromApi, scrape_target: ScrapeTarget) -> None:
    rules = await prom.rules()
    assert {r["name"]: ("record" if r["type"] == "recording" else "alert") for r in rules} == rule_names()
    for rule in rules:
        assert rule["health"] == "ok" and not rule.get("lastError"), rule
        await prom.query(rule["query"])  # raises on an error answer
    sc = scrape_target.scenario
    for dim, label in ((1, "country"), (2, "route")):
        fb = values(await prom.query(f"{label}:smsgw_otp_fillback:ratio_rate1h"), label)
        assert fb == pytest.approx({(k,): ratio(v) for k, v in sc.fillback(dim).items()}, rel=1e-9)
        sent = values(await prom.query(f"{label}:smsgw_otp_sent:rate1h"), label)
        proportional(sent, {(k,): v[0] for k, v in sc.fillback(dim).items()})


async def test_alert_expressions_select_what_they_should(prom: PromApi, scrape_target: ScrapeTarget) -> None:
    sc = scrape_target.scenario
    by_name = {r["name"]: r for r in await prom.rules() if r["type"] == "alerting"}
    down = {(route,) for (route, _), up in sc.routes_up.items() if not up}
    expected = {
        "SmsgwRouteDown": down,
        "SmsgwDeliveryFailureHigh": {("sim-b",)},  # 12 of 20 failed
        "SmsgwGatewayDown": set(),  # it is up
        "SmsgwRedisFallback": set(),  # shared state is not in a fallback
        "SmsgwFraudBlocksSpike": set(),  # 2 blocks: under the minimum volume
        "SmsgwFillbackDropCountry": set(),  # no day-old value to compare with
        "SmsgwFillbackDropRoute": set(),
    }
    assert set(by_name) == set(expected)
    for name, want in expected.items():
        result = await prom.query(by_name[name]["query"])
        label = "route" if "Route" in name or "Delivery" in name else "country"
        assert set(values(result, label)) == want, name

    async def pending() -> bool:
        active = {(a["labels"]["alertname"], a["labels"].get("route")) for a in await prom.alerts()}
        return active == {("SmsgwRouteDown", "sim-b"), ("SmsgwDeliveryFailureHigh", "sim-b")}

    await prom.wait_for("the route-down and delivery-failure alerts pending", pending)
    assert all(a["state"] == "pending" for a in await prom.alerts())  # `for:` has not run out yet
