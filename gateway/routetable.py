"""The live route table: carriers and routes built from Settings, their health, and reload.

:class:`RouteTable` is what the dispatcher and the request path ask:

* ``choose(message, exclude)`` — :func:`carriers.routing.choose` over the current routes, with each
  route's availability (carrier up, breaker, throttle hold) and recent statistics (delivery receipts
  per route and country from :class:`carriers.health.RouteHealth`; fill-back per route and country
  from the shared :class:`metrics.fillback.FillbackStore`, read every ``stats_refresh_seconds``);
* ``has_route(country, e164)`` — the request path's 503 ``no_route`` check, before anything is stored;
* ``record_submit`` / ``record_receipt`` — outcomes that feed the breakers and the statistics.

``reload(settings)`` swaps in a new table without a restart: the settings were validated by
:func:`gateway.config.load` first (a bad file keeps the old table); carriers whose settings did not
change keep running (and their routes keep their health); new or changed carriers start before the
swap; carriers that left take no new message, receive receipts for ``drain_seconds`` more, then close
(letting outstanding submissions finish). The swap itself is
one assignment, so a message sees either the old table or the new one.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp

from carriers.base import Carrier, ReceiptCallback, ReceiptStatus, SubmitOutcome, SubmitResult
from carriers.encoding import count_segments
from carriers.health import STATE_VALUE, BreakerEvent, HealthPolicy, RouteHealth
from carriers.http import HttpCarrier
from carriers.routing import Message, Policy, Prior, Route, RouteChoice, RouteStats, brand_fits, choose
from carriers.smpp import SmppCarrier
from gateway.config import CarrierSettings, RoutingSettings, Settings
from metrics.fillback import FillbackKey, FillbackStore
from metrics.instruments import BindSample, Instruments, RouteSample

log = logging.getLogger("smsgw.routes")

CarrierFactory = Callable[[CarrierSettings], Carrier]


# --------------------------------------------------------------------------- building from settings


def routes_from(settings: Settings) -> list[Route]:
    return [
        Route(
            name=r.name,
            carrier=r.carrier,
            countries=frozenset(c.upper() if c != "*" else c for c in r.countries),
            prefixes=tuple(p.lstrip("+") for p in r.prefixes),
            brand_class=r.brand_class,
            senders=frozenset(r.senders),
            price=r.price,
            priority=r.priority,
            prices=tuple(sorted(r.prices.items())),
        )
        for r in settings.routes
    ]


def health_policy(r: RoutingSettings) -> HealthPolicy:
    return HealthPolicy(
        failures=r.breaker_failures,
        failure_rate=r.breaker_failure_rate,
        min_samples=r.breaker_min_samples,
        window_s=r.breaker_window_seconds,
        cooldown_s=r.breaker_cooldown_seconds,
        max_cooldown_s=max(r.breaker_max_cooldown_seconds, r.breaker_cooldown_seconds),
        throttle_hold_s=r.throttle_hold_seconds,
        throttle_hold_max_s=max(r.throttle_hold_max_seconds, r.throttle_hold_seconds),
        stats_window_s=r.stats_window_seconds,
    )


def routing_policy(r: RoutingSettings) -> Policy:
    return Policy(
        delivery_prior=Prior.from_mean(r.delivery_prior_mean, r.prior_strength),
        fillback_prior=Prior.from_mean(r.fillback_prior_mean, r.prior_strength),
        explore_share=r.explore_share,
        explore_below=r.explore_below,
    )


def build_carrier(c: CarrierSettings, session: aiohttp.ClientSession) -> Carrier:
    if c.type == "http":
        return HttpCarrier(
            c.name,
            c.url,
            session,
            timeout=c.timeout_seconds,
            batch_max=c.batch_max,
            down_for=c.down_seconds,
            segment_counter=count_segments,
        )
    return SmppCarrier(
        c.name,
        c.host,
        c.port,
        c.system_id,
        c.password,
        system_type=c.system_type,
        bind_mode=c.bind_mode,
        binds=c.binds,
        window=c.window,
        tps=c.tps or None,
        enquire_link_interval=c.enquire_link_seconds,
        response_timeout=c.timeout_seconds,
        stall_grace=c.stall_grace_seconds,
    )


def carrier_down_reason(carrier: Carrier) -> str:
    status = getattr(carrier, "status", None)
    if callable(status):
        errors = sorted({b["last_error"] for b in status().get("binds", []) if b.get("last_error")})
        if errors:
            return "carrier down: " + "; ".join(errors)
        return "carrier down: no SMPP bind up"
    return "carrier down after transport errors or 5xx answers; rechecked shortly"


# --------------------------------------------------------------------------- the live table


@dataclass(frozen=True)
class Snapshot:
    routes: tuple[Route, ...]
    carriers: dict[str, Carrier]
    carrier_settings: dict[str, CarrierSettings]
    health: dict[str, RouteHealth]
    settings: RoutingSettings
    policy: Policy
    generation: int
    loaded_at: float
    source: str


class RouteTable:
    """Routes, their carriers and their health; see the module docstring."""

    def __init__(
        self,
        settings: Settings,
        factory: CarrierFactory,
        *,
        clock: Callable[[], float] = time.time,
        fillback: FillbackStore | None = None,
        instruments: Instruments | None = None,
    ) -> None:
        self.factory = factory
        self.clock = clock
        self.fillback = fillback
        self.m = instruments
        carriers = {c.name: factory(c) for c in settings.carriers}
        self._snap = self._snapshot(settings, carriers, {}, 1)
        self._on_receipt: ReceiptCallback | None = None
        self._fill_pairs: set[tuple[str, str]] = set()
        self._fill: dict[tuple[str, str], tuple[int, int]] = {}
        self._lock = asyncio.Lock()
        self._closing: set[asyncio.Task[None]] = set()

    def _snapshot(
        self,
        settings: Settings,
        carriers: dict[str, Carrier],
        old_health: Mapping[str, RouteHealth],
        generation: int,
    ) -> Snapshot:
        policy = health_policy(settings.routing)
        routes = tuple(routes_from(settings))
        health = {
            r.name: old_health[r.name].with_policy(policy)
            if r.name in old_health
            else RouteHealth(r.name, policy)
            for r in routes
        }
        return Snapshot(
            routes=routes,
            carriers=carriers,
            carrier_settings={c.name: c for c in settings.carriers},
            health=health,
            settings=settings.routing,
            policy=routing_policy(settings.routing),
            generation=generation,
            loaded_at=self.clock(),
            source=settings.source,
        )

    # ------------------------------------------------------------------ what callers read
    @property
    def routes(self) -> tuple[Route, ...]:
        return self._snap.routes

    @property
    def carriers(self) -> dict[str, Carrier]:
        return self._snap.carriers

    @property
    def generation(self) -> int:
        return self._snap.generation

    def health(self, route: str) -> RouteHealth | None:
        return self._snap.health.get(route)

    def availability(
        self, route: Route, now: float | None = None, *, for_request: bool = False
    ) -> str | None:
        """None when ``route`` can take a message now, else why not. ``for_request``: whether a new
        request may count on the route at all — a throttle hold or a probe in flight delay messages
        but do not take the route down."""
        snap = self._snap
        carrier = snap.carriers.get(route.carrier)
        if carrier is None:
            return f"no carrier named {route.carrier!r}"
        if not carrier.is_up():
            return carrier_down_reason(carrier)
        health = snap.health.get(route.name)
        if health is None:
            return None
        now = self.clock() if now is None else now
        why = health.availability(now)
        if why is not None and for_request and not why.startswith("breaker open"):
            return None
        return why

    def is_up(self, route: Route) -> bool:
        return self.availability(route, for_request=True) is None

    def has_route(self, country: str, e164: str, sender: str = "*", brand_class: str = "any") -> bool:
        """Whether any route could take a message to this destination now (request-time check)."""
        now = self.clock()
        for r in self._snap.routes:
            if not r.covers(country, e164):
                continue
            if brand_class != "any" and not brand_fits(r.brand_class, brand_class):
                continue
            if sender not in ("*", "") and "*" not in r.senders and sender not in r.senders:
                continue
            if self.availability(r, now, for_request=True) is None:
                return True
        return False

    def stats_for(self, country: str, now: float) -> dict[str, RouteStats]:
        out = {}
        for name, health in self._snap.health.items():
            delivered, undelivered = health.delivery(country, now)
            sent, verified = self._fill.get((country, name), (0, 0))
            out[name] = RouteStats(delivered, undelivered, sent, verified)
        return out

    def choose(self, msg: Message, exclude: frozenset[str] = frozenset()) -> RouteChoice:
        snap, now = self._snap, self.clock()
        return choose(
            snap.routes,
            msg,
            availability=lambda r: self.availability(r, now),
            stats=self.stats_for(msg.country, now),
            policy=snap.policy,
            exclude=exclude,
        )

    # ------------------------------------------------------------------ outcomes
    def acquire(self, route: Route) -> None:
        """The chosen route takes the message: when its breaker has cooled, this message is the probe."""
        health = self._snap.health.get(route.name)
        if health is not None:
            self._breaker_event(route.name, health, health.acquire(self.clock()))

    def record_submit(self, route: Route, result: SubmitResult, msg: Message) -> None:
        health = self._snap.health.get(route.name)
        if health is None:  # the route left in a reload while the message was out
            return
        now = self.clock()
        event = health.record(result.outcome, now, result.error_code or result.outcome.value)
        self._breaker_event(route.name, health, event)
        if result.outcome is SubmitOutcome.THROTTLED and self.m is not None:
            self.m.route_throttled.labels(route.name).inc()
        if msg.otp and result.outcome is SubmitOutcome.ACCEPTED:
            self._fill_pairs.add((msg.country, route.name))

    def record_receipt(self, route: str, country: str, status: ReceiptStatus) -> None:
        health = self._snap.health.get(route)
        if health is not None:
            health.record_receipt(country, status, self.clock())

    def _breaker_event(self, route: str, health: RouteHealth, event: BreakerEvent | None) -> None:
        if event is None:
            return
        if self.m is not None:
            self.m.breaker_transitions.labels(route, health.state.value).inc()
        if event is BreakerEvent.TRIP or event is BreakerEvent.PROBE_FAILED:
            log.warning(
                "route breaker open: %s",
                health.reason,
                extra={"route": route, "event": event.value, "probe_in_s": round(health.cooldown_s, 1)},
            )
        else:
            log.info("route breaker %s", health.state.value, extra={"route": route, "event": event.value})

    async def refresh_stats(self) -> None:
        """Read fill-back per (country, route) for the routes that carried OTPs (one store call)."""
        if self.fillback is None or not self._fill_pairs:
            return
        pairs = sorted(self._fill_pairs)
        window = int(self._snap.settings.stats_window_seconds)
        keys = [FillbackKey(None, country, route) for country, route in pairs]
        rates = await self.fillback.rates(keys, window, self.clock())
        self._fill = {pair: (r.sent, r.verified) for pair, r in zip(pairs, rates, strict=True)}

    async def run_stats(self) -> None:
        """Refresh the fill-back statistics forever (cancel to stop); failures are logged, not raised."""
        while True:
            try:
                await self.refresh_stats()
            except Exception:
                log.warning("fill-back rates unavailable for routing; keeping the last ones", exc_info=True)
            await asyncio.sleep(self._snap.settings.stats_refresh_seconds)

    # ------------------------------------------------------------------ lifecycle
    async def start(self, on_receipt: ReceiptCallback) -> None:
        self._on_receipt = on_receipt
        for carrier in self._snap.carriers.values():
            await carrier.start(on_receipt)

    async def wait_up(self, within: float) -> None:
        """Give SMPP binds up to ``within`` seconds, so the first requests find a route."""
        smpp = [c for c in self._snap.carriers.values() if isinstance(c, SmppCarrier)]
        if smpp:
            waits = [asyncio.ensure_future(c.wait_up()) for c in smpp]
            await asyncio.wait(waits, timeout=within)
            for w in waits:
                w.cancel()
            await asyncio.gather(*waits, return_exceptions=True)

    async def reload(self, settings: Settings) -> dict[str, Any]:
        """Swap in the carriers and routes of ``settings`` (already validated); see the module doc."""
        async with self._lock:
            old = self._snap
            carriers: dict[str, Carrier] = {}
            kept: list[str] = []
            started: list[str] = []
            try:
                for cs in settings.carriers:
                    if old.carrier_settings.get(cs.name) == cs and cs.name in old.carriers:
                        carriers[cs.name] = old.carriers[cs.name]
                        kept.append(cs.name)
                        continue
                    carrier = self.factory(cs)
                    carriers[cs.name] = carrier
                    started.append(cs.name)
                    if self._on_receipt is not None:
                        await carrier.start(self._on_receipt)
            except Exception:
                for name in started:
                    await carriers[name].close()
                raise
            # a route keeps its health when it still runs on the same, unchanged carrier
            old_routes = {r.name: r for r in old.routes}
            keep_health = {
                name: h
                for name, h in old.health.items()
                if name in old_routes and old_routes[name].carrier in kept
            }
            new = self._snapshot(settings, carriers, keep_health, old.generation + 1)
            new_routes = {r.name: r for r in new.routes}
            self._snap = new
            retired = [c for name, c in old.carriers.items() if carriers.get(name) is not c]
            for carrier in retired:
                task = asyncio.create_task(self._retire(carrier, new.settings.drain_seconds))
                self._closing.add(task)
                task.add_done_callback(self._closing.discard)
            report = {
                "generation": new.generation,
                "carriers": {
                    "kept": kept,
                    "started": started,
                    "closing": sorted(c.name for c in retired),
                },
                "routes": {
                    "added": sorted(set(new_routes) - set(old_routes)),
                    "removed": sorted(set(old_routes) - set(new_routes)),
                    "changed": sorted(
                        n for n in new_routes if n in old_routes and new_routes[n] != old_routes[n]
                    ),
                    "total": len(new.routes),
                },
            }
            log.info("route table reloaded", extra={"source": settings.source, **report})
            if self.m is not None:
                self.m.route_reloads.labels("ok").inc()
            return report

    @staticmethod
    async def _retire(carrier: Carrier, linger: float) -> None:
        """A carrier that left the table takes no new message; for ``linger`` seconds it still receives
        the delivery receipts of what it carried, then it closes (close() lets outstanding submissions
        finish first). Cancelled (shutdown): it closes at once."""
        try:
            await asyncio.sleep(linger)
        finally:
            try:
                async with asyncio.timeout(15.0):
                    await carrier.close()
                log.info("retired carrier closed", extra={"carrier": carrier.name})
            except Exception:
                log.warning(
                    "closing a retired carrier failed", exc_info=True, extra={"carrier": carrier.name}
                )

    async def close(self) -> None:
        for task in list(self._closing):
            task.cancel()
        await asyncio.gather(*self._closing, return_exceptions=True)
        for carrier in self._snap.carriers.values():
            await carrier.close()

    # ------------------------------------------------------------------ views
    def samples(self) -> Iterator[RouteSample]:
        snap, now = self._snap, self.clock()
        for r in snap.routes:
            health = snap.health.get(r.name)
            yield RouteSample(
                r.name,
                r.carrier,
                self.availability(r, now, for_request=True) is None,
                STATE_VALUE[health.state] if health else 0,
            )

    def bind_samples(self) -> Iterator[BindSample]:
        for name, carrier in self._snap.carriers.items():
            if isinstance(carrier, SmppCarrier):
                for b in carrier.status()["binds"]:
                    if b["mode"] != "rx":
                        yield BindSample(name, int(b["bind"]), int(b["outstanding"]), int(b["window"]))

    def describe(self) -> dict[str, Any]:
        """Every route with its carrier, availability, breaker, recent rates and SMPP windows."""
        snap, now = self._snap, self.clock()
        policy = snap.policy
        out = []
        for r in snap.routes:
            carrier = snap.carriers.get(r.carrier)
            health = snap.health[r.name]
            why = self.availability(r, now)
            delivered, undelivered = health.delivery(None, now)
            sent = sum(v[0] for k, v in self._fill.items() if k[1] == r.name)
            verified = sum(v[1] for k, v in self._fill.items() if k[1] == r.name)
            item: dict[str, Any] = {
                "name": r.name,
                "carrier": r.carrier,
                "carrier_type": snap.carrier_settings[r.carrier].type
                if r.carrier in snap.carrier_settings
                else None,
                "countries": sorted(r.countries),
                "prefixes": ["+" + p for p in r.prefixes],
                "brand_class": r.brand_class,
                "senders": sorted(r.senders),
                "price": r.price,
                "prices": dict(r.prices),
                "priority": r.priority,
                "up": self.availability(r, now, for_request=True) is None,
                "available": why is None,
                "why_not": why,
                "breaker": health.snapshot(now),
                "delivery": {
                    "delivered": delivered,
                    "undelivered": undelivered,
                    "rate": round(delivered / (delivered + undelivered), 4)
                    if delivered + undelivered
                    else None,
                    "smoothed": round(policy.delivery_prior.smoothed(delivered, delivered + undelivered), 4),
                    "window_s": snap.settings.stats_window_seconds,
                },
                "fillback": {
                    "sent": sent,
                    "verified": verified,
                    "rate": round(verified / sent, 4) if sent else None,
                    "smoothed": round(policy.fillback_prior.smoothed(verified, sent), 4),
                    "window_s": snap.settings.stats_window_seconds,
                },
            }
            if isinstance(carrier, SmppCarrier):
                status = carrier.status()
                item["window"] = [
                    {k: b[k] for k in ("bind", "mode", "state", "outstanding", "window", "last_error")}
                    for b in status["binds"]
                ]
                item["throttle_events"] = status["throttle_events"]
            out.append(item)
        return {
            "generation": snap.generation,
            "loaded_at": snap.loaded_at,
            "source": snap.source,
            "routing": dataclasses.asdict(snap.settings),
            "routes": out,
        }
