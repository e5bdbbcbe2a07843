"""What every handler and service needs, built once by ``create_app`` and reached via ``CTX``."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from aiohttp import web
from prometheus_client import CollectorRegistry

from gateway.config import Settings
from gateway.dispatch import Dispatcher
from gateway.routetable import RouteTable
from gateway.services.fraud import Fraud
from gateway.services.senderid import SenderIds
from gateway.state.base import StateBackend
from gateway.store.base import Store
from gateway.store.router import Stores
from metrics.fillback import FillbackStore
from metrics.instruments import Instruments

log = logging.getLogger("smsgw.context")
FILLBACK_HOLD_OFF = 5.0  # seconds without fill-back writes after one failed


@dataclass
class Context:
    settings: Settings
    instruments: Instruments
    clock: Callable[[], float] = time.time
    stores: Stores | None = None
    state: StateBackend | None = None
    table: RouteTable | None = None
    dispatcher: Dispatcher | None = None
    fillback: FillbackStore | None = None
    ready: bool = False
    draining: bool = False  # SIGTERM came: /readyz says 503, responses close their connection
    exposition: CollectorRegistry | None = None  # what /metrics renders (all workers' under --workers)
    extras: dict[str, object] = field(default_factory=dict)
    fillback_down: bool = False  # the last fill-back write failed (logged once until one succeeds)
    fillback_retry_at: float = 0.0  # monotonic: while down, writes are skipped until then

    # typed accessors: valid once the app has started
    @property
    def db(self) -> Store:
        """The control store: tenants, keys, registrations, audit, and unmapped countries' records."""
        assert self.stores is not None
        return self.stores.control

    @property
    def regions(self) -> Stores:
        assert self.stores is not None
        return self.stores

    @property
    def st(self) -> StateBackend:
        assert self.state is not None
        return self.state

    @property
    def disp(self) -> Dispatcher:
        assert self.dispatcher is not None
        return self.dispatcher

    async def record_fillback(self, kind: str, tenant: str, country: str, route: str, sent_at: float) -> None:
        """Count an OTP sent or verified in the shared fill-back store; never fails the request."""
        if self.fillback is None:
            return
        if self.fillback_down and time.monotonic() < self.fillback_retry_at:
            # held off, as FallbackState does: a hung Redis must not hold every dispatch for its timeouts
            self.instruments.state_backend_errors.labels("fillback").inc()
            return
        try:
            if kind == "sent":
                await self.fillback.record_sent(tenant, country, route, sent_at)
            else:
                await self.fillback.record_verified(tenant, country, route, sent_at)
        except Exception:  # Redis down: the Prometheus counters still count
            if not self.fillback_down:  # once per outage, not once per message
                log.warning("fill-back store unavailable; counting on without it", exc_info=True)
            self.fillback_down = True
            self.fillback_retry_at = time.monotonic() + FILLBACK_HOLD_OFF
            self.instruments.state_backend_errors.labels("fillback").inc()
            return
        if self.fillback_down:
            self.fillback_down = False
            log.warning("fill-back store is back")

    @property
    def fraud(self) -> Fraud:
        fraud = self.extras.get("fraud")
        assert isinstance(fraud, Fraud), "anti-fraud not started"
        return fraud

    @property
    def senderids(self) -> SenderIds:
        svc = self.extras.get("senderids")
        assert isinstance(svc, SenderIds), "sender-ID service not started"
        return svc

    @property
    def routes(self) -> RouteTable:
        assert self.table is not None
        return self.table


CTX = web.AppKey("smsgw_context", Context)
