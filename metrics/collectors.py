"""Scrape-time collectors: process and runtime facts, and the fill-back routing sees.

Prometheus scrapes call ``collect()`` synchronously, so nothing here waits on I/O at scrape time: the
fill-back gauges show the last ``refresh()`` (one store call), which the gateway runs on a timer
(``run()``) and tests call directly.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable, Iterator

from prometheus_client import CollectorRegistry
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.gc_collector import GCCollector
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector

from metrics.fillback import FillbackKey, FillbackRate, FillbackStore


def register_process_collectors(registry: CollectorRegistry) -> None:
    """``process_*`` (CPU, memory, open fds, start time), ``python_info`` and ``python_gc_*`` on ``registry``.

    The default registry has these already; smsgw's own registry (one per app, one per test) does not.
    """
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    GCCollector(registry=registry)


class FillbackGauges:
    """``smsgw_fillback_window_ratio`` / ``_sent`` per (country, route): the shared-state fill-back over
    ``window_s``, where a verification counts toward the minute its OTP was sent. It differs from the
    counters' ``rate()`` ratio only by late verifications; it is what routing and anti-fraud read.
    """

    def __init__(
        self,
        store: FillbackStore,
        pairs: Callable[[], Iterable[tuple[str, str]]],
        window_s: int = 3600,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._store, self._pairs, self.window_s, self._clock = store, pairs, window_s, clock
        self._last: list[tuple[tuple[str, str], FillbackRate]] = []

    async def refresh(self) -> None:
        pairs = sorted(set(self._pairs()))
        keys = [FillbackKey(None, country, route) for country, route in pairs]
        rates = await self._store.rates(keys, self.window_s, self._clock())
        self._last = list(zip(pairs, rates, strict=True))

    async def run(self, interval_s: float = 15.0) -> None:
        """Refresh forever; cancel the task to stop it."""
        while True:
            await self.refresh()
            await asyncio.sleep(interval_s)

    def describe(self) -> Iterator[Metric]:
        return iter(self._families())

    def collect(self) -> Iterator[Metric]:
        ratio, sent = self._families()
        for (country, route), r in self._last:
            sent.add_metric([country, route], r.sent)
            if r.rate is not None:
                ratio.add_metric([country, route], r.rate)
        yield ratio
        yield sent

    def _families(self) -> tuple[GaugeMetricFamily, GaugeMetricFamily]:
        labels = ["country", "route"]
        window = f"{self.window_s}s"
        return (
            GaugeMetricFamily(
                "smsgw_fillback_window_ratio",
                f"OTPs verified / sent over the last {window}, by the minute each OTP was sent",
                labels=labels,
            ),
            GaugeMetricFamily(
                "smsgw_fillback_window_sent",
                f"OTPs sent over the last {window} (shared state)",
                labels=labels,
            ),
        )
