"""A real Prometheus and a scrape target, for the dashboard/rules tests and the dashboard picture.

- :class:`PrometheusServer`: ``/usr/bin/prometheus`` on a free loopback port with a temporary storage
  dir, scraping given targets every second and evaluating deploy/prometheus's rules every second.
- :class:`MetricsTarget`: a small aiohttp app exposing a registry built with
  ``metrics.create_instruments``, which a scenario increments exactly.
- :class:`Scenario`: what was done to the instruments, so tests know what every query must return.

Run as a script, it feeds the dashboard picture: ``python tests/metrics/promharness.py --seconds 150``
starts both, drives varying traffic, then draws docs/dashboard.png with scripts/render_dashboard.py.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import math
import random
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from metrics import Instruments, create_instruments

REPO = Path(__file__).resolve().parents[2]
RULE_FILES = [REPO / "deploy/prometheus/recording.yml", REPO / "deploy/prometheus/alerts.yml"]
PROMETHEUS = shutil.which("prometheus") or "/usr/bin/prometheus"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PrometheusServer:
    """One Prometheus process; ``stop()`` ends it by its own pid only."""

    def __init__(self, targets: list[str], interval_s: float = 1.0, job: str = "smsgw") -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.dir = Path(tempfile.mkdtemp(prefix="smsgw-prom-"))
        rules = "\n".join(f"  - {p}" for p in RULE_FILES)
        every = f"{round(interval_s * 1000)}ms"
        (self.dir / "prometheus.yml").write_text(
            f"global:\n  scrape_interval: {every}\n  evaluation_interval: {every}\n"
            f"rule_files:\n{rules}\n"
            f"scrape_configs:\n  - job_name: {job}\n    static_configs:\n"
            f"      - targets: [{', '.join(repr(t) for t in targets)}]\n"
        )
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = self.dir / "prometheus.log"

    def start(self, ready_within_s: float = 20.0) -> None:
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(
                [
                    PROMETHEUS,
                    f"--config.file={self.dir / 'prometheus.yml'}",
                    f"--storage.tsdb.path={self.dir / 'data'}",
                    f"--web.listen-address=127.0.0.1:{self.port}",
                    "--storage.tsdb.retention.time=1d",
                    "--log.level=warn",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        end = time.monotonic() + ready_within_s
        while time.monotonic() < end:
            if self.proc.poll() is not None:
                raise RuntimeError(f"prometheus exited: {self.log.read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(f"{self.url}/-/ready", timeout=0.5) as resp:
                    if resp.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"prometheus not ready after {ready_within_s}s")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


@contextmanager
def prometheus(targets: list[str], interval_s: float = 1.0) -> Iterator[PrometheusServer]:
    server = PrometheusServer(targets, interval_s)
    try:
        server.start()
        yield server
    finally:
        server.stop()


class PromApi:
    """Prometheus' HTTP API; every call raises on an error answer."""

    def __init__(self, session: aiohttp.ClientSession, url: str) -> None:
        self.session, self.url = session, url

    async def _get(self, path: str, **params: str) -> Any:
        async with self.session.get(self.url + path, params=params) as resp:
            body = await resp.json()
        if body.get("status") != "success":
            raise AssertionError(f"{path} {params}: {body.get('errorType')}: {body.get('error')}")
        return body["data"]

    async def query(self, expr: str, at: float | None = None) -> list[dict[str, Any]]:
        """Instant query, at ``at`` (Unix time) or now: give one ``at`` to compare several queries."""
        params = {"query": expr} if at is None else {"query": expr, "time": f"{at:.3f}"}
        data = await self._get("/api/v1/query", **params)
        if data["resultType"] == "scalar":
            return [{"metric": {}, "value": data["result"]}]
        return list(data["result"])

    async def query_range(self, expr: str, start: float, end: float, step: float) -> list[dict[str, Any]]:
        data = await self._get(
            "/api/v1/query_range", query=expr, start=str(start), end=str(end), step=str(step)
        )
        return list(data["result"])

    async def rules(self) -> list[dict[str, Any]]:
        data = await self._get("/api/v1/rules")
        return [rule for group in data["groups"] for rule in group["rules"]]

    async def alerts(self) -> list[dict[str, Any]]:
        return list((await self._get("/api/v1/alerts"))["alerts"])

    async def wait_for(
        self, what: str, check: Callable[[], Awaitable[bool]], within_s: float = 20.0, poll_s: float = 0.2
    ) -> None:
        """Poll ``check`` until it holds (never a blind sleep); fail naming ``what`` after ``within_s``."""
        end = time.monotonic() + within_s
        while True:
            if await check():
                return
            if time.monotonic() > end:
                raise AssertionError(f"Prometheus did not show {what} within {within_s}s")
            await asyncio.sleep(poll_s)


def values(result: list[dict[str, Any]], *labels: str) -> dict[tuple[str, ...], float]:
    """``{(label values...): value}`` of an instant query's result."""
    return {tuple(r["metric"].get(n, "") for n in labels): float(r["value"][1]) for r in result}


# --- the scrape target -----------------------------------------------------------------------------


OtpKey = tuple[str, str, str]  # tenant, country, route


@dataclass
class Scenario:
    """Exactly what a test did to the instruments; the expected answer of every query follows from it."""

    otp_sent: dict[OtpKey, int] = field(default_factory=dict)
    otp_verified: dict[OtpKey, int] = field(default_factory=dict)
    messages: dict[tuple[str, str, str], int] = field(default_factory=dict)  # country, route, status
    fraud: dict[tuple[str, str, str], int] = field(default_factory=dict)  # country, decision, reason
    rate_limited: dict[str, int] = field(default_factory=dict)  # scope
    conversions: dict[tuple[str, str, str], int] = field(default_factory=dict)  # tenant, country, event
    latencies: dict[tuple[str, str], list[float]] = field(default_factory=dict)  # endpoint, status
    routes_up: dict[tuple[str, str], int] = field(default_factory=dict)  # route, carrier

    def fillback(self, dim: int) -> dict[str, tuple[int, int]]:
        """(sent, verified) per value of dimension ``dim`` (0 tenant, 1 country, 2 route)."""
        out: dict[str, tuple[int, int]] = {}
        for key, n in self.otp_sent.items():
            s, v = out.get(key[dim], (0, 0))
            out[key[dim]] = (s + n, v + self.otp_verified.get(key, 0))
        return out

    def zero(self, m: Instruments) -> None:
        """Create every series at 0, so Prometheus sees each counter before it moves."""
        for key in self.otp_sent:
            m.otp_sent.labels(*key)
            m.otp_verified.labels(*key)
        for mkey in self.messages:
            m.messages.labels(*mkey)
        for fkey in self.fraud:
            m.fraud_decisions.labels(*fkey)
        for scope in self.rate_limited:
            m.rate_limited.labels(scope)
        for ckey in self.conversions:
            m.conversion_events.labels(*ckey)
        for hkey in self.latencies:
            m.http_duration.labels(*hkey)
        for rkey in self.routes_up:
            m.route_up.labels(*rkey).set(1)

    def apply(self, m: Instruments) -> None:
        for key, n in self.otp_sent.items():
            m.otp_sent.labels(*key).inc(n)
        for key, n in self.otp_verified.items():
            m.otp_verified.labels(*key).inc(n)
        for mkey, n in self.messages.items():
            m.messages.labels(*mkey).inc(n)
        for fkey, n in self.fraud.items():
            m.fraud_decisions.labels(*fkey).inc(n)
        for scope, n in self.rate_limited.items():
            m.rate_limited.labels(scope).inc(n)
        for ckey, n in self.conversions.items():
            m.conversion_events.labels(*ckey).inc(n)
        for hkey, durations in self.latencies.items():
            for d in durations:
                m.http_duration.labels(*hkey).observe(d)
        for rkey, up in self.routes_up.items():
            m.route_up.labels(*rkey).set(up)


def standard_scenario() -> Scenario:
    """10 OTPs sent / 4 verified across two tenants, two countries and two routes; route sim-b down."""
    return Scenario(
        otp_sent={
            ("acme", "DE", "sim-a"): 4,
            ("acme", "US", "sim-b"): 3,
            ("beta", "DE", "sim-b"): 2,
            ("beta", "US", "sim-a"): 1,
        },
        otp_verified={("acme", "DE", "sim-a"): 2, ("acme", "US", "sim-b"): 1, ("beta", "US", "sim-a"): 1},
        messages={
            ("DE", "sim-a", "queued"): 30,
            ("DE", "sim-a", "submitted"): 30,
            ("DE", "sim-a", "delivered"): 30,
            ("US", "sim-b", "submitted"): 20,
            ("US", "sim-b", "delivered"): 8,
            ("US", "sim-b", "failed"): 12,
        },
        fraud={
            ("DE", "allow", "none"): 9,
            ("DE", "block", "prefix_fillback"): 2,
            ("US", "challenge", "ip_velocity"): 1,
        },
        rate_limited={"number": 3, "tenant": 1},
        conversions={
            ("acme", "DE", "click"): 8,
            ("acme", "DE", "signup"): 4,
            ("acme", "DE", "order"): 2,
            ("acme", "DE", "payment"): 1,
        },
        latencies={("POST /v1/otp", "202"): [0.003] * 90 + [0.2] * 10, ("GET /metrics", "200"): [0.0007] * 5},
        routes_up={("sim-a", "sim"): 1, ("sim-b", "sim"): 0},
    )


class MetricsTarget:
    """``GET /metrics`` of a fresh registry, on a free loopback port."""

    def __init__(self, version: str = "0.0.0-test") -> None:
        self.registry = CollectorRegistry()
        self.instruments = create_instruments(self.registry, version)
        self.scrapes = 0
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        self._runner: web.AppRunner | None = None

    async def _metrics(self, request: web.Request) -> web.Response:
        self.scrapes += 1
        return web.Response(
            body=generate_latest(self.registry), headers={"Content-Type": CONTENT_TYPE_LATEST}
        )

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/metrics", self._metrics)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def wait_scrapes(self, n: int, within_s: float = 15.0) -> None:
        """Until Prometheus has scraped ``n`` more times than now."""
        goal, end = self.scrapes + n, time.monotonic() + within_s
        while self.scrapes < goal:
            if time.monotonic() > end:
                raise AssertionError(f"Prometheus scraped {self.scrapes} times, not {goal}, in {within_s}s")
            await asyncio.sleep(0.05)


# --- demo traffic for the dashboard picture --------------------------------------------------------


async def drive_demo(target: MetricsTarget, seconds: float, tick_s: float = 0.5, seed: int = 7) -> None:
    """Varying traffic: steady fill-back in DE, a pumping episode on one route in the middle third."""
    m, rng, start = target.instruments, random.Random(seed), time.monotonic()
    fill = {
        ("DE", "eu-direct"): 0.84,
        ("FR", "eu-direct"): 0.78,
        ("US", "us-tier1"): 0.74,
        ("ID", "apac-agg"): 0.6,
    }
    tenants = ("acme", "shopco")
    for route, carrier in (("eu-direct", "carrier-a"), ("us-tier1", "carrier-b"), ("apac-agg", "carrier-c")):
        m.route_up.labels(route, carrier).set(1)
    while (elapsed := time.monotonic() - start) < seconds:
        phase = elapsed / seconds
        pumping = 1 / 3 < phase < 2 / 3
        for (country, route), base in fill.items():
            sent = rng.randint(3, 6) * (4 if pumping and route == "apac-agg" else 1)
            rate = 0.08 if pumping and route == "apac-agg" else base + 0.04 * math.sin(elapsed / 9)
            tenant = rng.choice(tenants)
            m.otp_sent.labels(tenant, country, route).inc(sent)
            m.otp_verified.labels(tenant, country, route).inc(sum(rng.random() < rate for _ in range(sent)))
            m.messages.labels(country, route, "delivered").inc(sent - (sent // 3 if pumping else 0))
            m.messages.labels(country, route, "failed").inc(
                sent // 3 if pumping and route == "apac-agg" else 0
            )
            decision = ("block", "prefix_fillback") if pumping and country == "ID" else ("allow", "none")
            m.fraud_decisions.labels(country, *decision).inc(sent)
            if rng.random() < 0.3:
                m.fraud_decisions.labels(country, "challenge", "ip_velocity").inc()
        clicks = rng.randint(4, 9)
        for event, n in zip(  # noqa: B905 (both have 4)
            ("click", "signup", "order", "payment"), (clicks, clicks // 2, clicks // 4, clicks // 6)
        ):
            m.conversion_events.labels("shopco", "DE", event).inc(n)
        m.rate_limited.labels("number").inc(rng.randint(0, 2))
        for _ in range(40):
            m.http_duration.labels("POST /v1/otp", "202").observe(rng.lognormvariate(-5.3, 0.5))
        m.route_up.labels("apac-agg", "carrier-c").set(0 if 0.45 < phase < 0.55 else 1)
        await asyncio.sleep(tick_s)


async def demo(seconds: float, out: Path, window: str) -> None:
    target = MetricsTarget()
    await target.start()
    try:
        with prometheus([target.address]) as prom:
            await target.wait_scrapes(1, within_s=20)
            started = time.time()
            await drive_demo(target, seconds)
            await target.wait_scrapes(2)
            spec = importlib.util.spec_from_file_location(
                "render_dashboard", REPO / "scripts/render_dashboard.py"
            )
            assert spec is not None and spec.loader is not None
            render = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(render)
            await render.render(prom.url, out, start=started, end=time.time(), window=window)
    finally:
        await target.stop()
    print(f"wrote {out}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=150.0)
    parser.add_argument("--out", type=Path, default=REPO / "docs/dashboard.png")
    parser.add_argument("--window", default="30s", help="rate window replacing the dashboard's (short demo)")
    args = parser.parse_args()
    asyncio.run(demo(args.seconds, args.out, args.window))


if __name__ == "__main__":
    main()
