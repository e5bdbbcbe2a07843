"""The real gateway under simulated traffic (deploy/demo/traffic.py), scraped by a real Prometheus.

The counters it exports equal what the traffic did; every dashboard query and every rule evaluates
against its metrics; the panels the traffic feeds return series with the traffic's labels.
Rates of series that appear mid-traffic miss their first increments (Prometheus cannot know where
such a counter started), so exact fill-back is checked on the counters, and rate-based panels on labels.
"""

from __future__ import annotations

import importlib.util
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from metrics import dashboards as d
from tests.conftest import free_port
from tests.e2e.procs import Procs
from tests.metrics.promharness import PromApi, PrometheusServer, values

pytestmark = pytest.mark.timeout(90)
REPO = Path(__file__).resolve().parents[2]


def load_traffic() -> Any:
    spec = importlib.util.spec_from_file_location("demo_traffic", REPO / "deploy/demo/traffic.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def procs(tmp_path: Path) -> Any:
    p = Procs(tmp_path)
    yield p
    p.stop_all()


async def test_gateway_metrics_under_demo_traffic(procs: Procs) -> None:
    sim_port = procs.sim_carrier()
    sim = f"http://127.0.0.1:{sim_port}"
    port = free_port()
    gateway = f"http://127.0.0.1:{port}"
    procs.gateway(
        port,
        f"""
[server]
port = {port}

[[carriers]]
name = "sim"
type = "http"
url = "{sim}/messages"

[[routes]]
name = "sim-eu"
carrier = "sim"
countries = ["DE", "FR"]

[routing]
explore_share = 0.0  # no exploration: every DE/FR message takes sim-eu

[[routes]]
name = "sim-world"
carrier = "sim"
priority = 200
price = 0.05  # five times sim-eu's default, so fill-back differences cannot reorder them
""",
    )
    key = procs.tenant("acme", "send,verify", "ALL")
    server = PrometheusServer([f"127.0.0.1:{port}"])
    server.start()
    try:
        async with aiohttp.ClientSession() as session:
            api = PromApi(session, server.url)

            async def up() -> bool:
                return values(await api.query('up{job="smsgw"}')).get((), 0.0) == 1.0

            await api.wait_for("the gateway scraped", up)
            traffic = load_traffic()
            tally = traffic.run(gateway, sim, key, count=24, pause_s=0.0, seed=3)
            accepted = {c: row["accepted"] for c, row in tally.items() if row["accepted"]}
            verified = {c: row["verified"] for c, row in tally.items() if row["accepted"]}
            assert sum(accepted.values()) >= 12 and sum(verified.values()) >= 4, tally

            async def counted() -> bool:
                got = values(await api.query("sum(smsgw_otp_verified_total)"))
                return got.get((), -1.0) == sum(verified.values())

            await api.wait_for("every verification counted", counted)
            await api.wait_for("the recording rules", lambda: _nonempty(api, "country:smsgw_otp_sent:rate1h"))
            at = time.time()
            sent_by = values(await api.query("sum by (country) (smsgw_otp_sent_total)", at), "country")
            verified_by = values(
                await api.query("sum by (country) (smsgw_otp_verified_total)", at), "country"
            )
            assert sent_by == {(c,): float(n) for c, n in accepted.items()}
            assert verified_by.keys() <= sent_by.keys()
            for (country,), sent in sent_by.items():
                assert verified_by.get((country,), 0.0) / sent == verified[country] / accepted[country]
            routes = values(await api.query("sum by (route) (smsgw_otp_sent_total)", at), "route")
            eu = sum(n for c, n in accepted.items() if c in ("DE", "FR"))
            want_routes = {("sim-eu",): eu, ("sim-world",): sum(accepted.values()) - eu}
            assert routes == {k: float(v) for k, v in want_routes.items() if v}

            fed = {
                d.FILLBACK_OVERALL: set(),
                d.FILLBACK_BY_COUNTRY: {(c,) for c in accepted},
                d.FILLBACK_BY_ROUTE: set(routes),
                d.OTP_VOLUME: {(c,) for c in accepted},
                d.ROUTE_HEALTH: {("sim-eu",), ("sim-world",)},
                d.LATENCY: set(),
            }
            label = {
                d.FILLBACK_BY_COUNTRY: "country",
                d.OTP_VOLUME: "country",
                d.FILLBACK_BY_ROUTE: "route",
                d.ROUTE_HEALTH: "route",
            }
            for q in d.queries(d.build_dashboard()):
                result = await api.query(d.expand_macros(q.expr, 300), at)  # raises on an error answer
                if q.panel in fed:
                    assert result, f"{q.panel}: no series from the gateway"
                    if q.panel in label:
                        # a series seen first at its final value has no rate: a subset, never a stranger
                        assert set(values(result, label[q.panel])) <= fed[q.panel], q.panel
            for rule in await api.rules():
                assert rule["health"] == "ok", rule
    finally:
        server.stop()


async def _nonempty(api: PromApi, expr: str) -> bool:
    return bool(await api.query(expr))
