"""The one app factory: ``create_app(settings)`` owns the store, the shared state, the carriers and
the dispatcher as ``cleanup_ctx`` generators, opened in order at start and closed in reverse."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import importlib
import logging
import os
import signal
import socket
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import aiohttp
from aiohttp import web
from prometheus_client import (
    CollectorRegistry,
    GCCollector,
    PlatformCollector,
    ProcessCollector,
    disable_created_metrics,
)

from antifraud import (
    FraudBackend,
    FraudEngine,
    FraudSettings,
    MemoryFraudBackend,
    ModelError,
    RedisFraudBackend,
    RulesOnlyScorer,
    Scorer,
    load_scorer,
)
from gateway import __version__
from gateway.api.registry import ROUTES
from gateway.api.routes import ROUTE_LOADER, WEBHOOKS, reload_routes
from gateway.config import Settings
from gateway.config import load as load_settings
from gateway.context import CTX, Context
from gateway.dispatch import Dispatcher
from gateway.middleware import edge
from gateway.privacy.crypto import decode_master_key, new_master_key
from gateway.privacy.quiet import load_rules as load_quiet_rules
from gateway.routetable import RouteTable, build_carrier
from gateway.services.fraud import Fraud
from gateway.services.otp import render_message
from gateway.services.senderid import SenderIds
from gateway.state import FallbackState, MemoryState, RedisState, connect_redis
from gateway.store import PgStore, RetentionPolicy, SqliteStore, Store
from gateway.store.pg import CONTROL_SCHEMA, is_pg_url, region_schema
from gateway.store.records import MessageRecord
from gateway.store.router import Stores
from gateway.webhooks import WebhookSender
from metrics.fillback import MemoryFillback, RedisFillback
from metrics.instruments import (
    RouteHealthCollector,
    create_instruments,
    exposition_registry,
    use_route_health_collector,
)
from senderid import load_rules as load_senderid_rules

log = logging.getLogger("smsgw.app")

# modules whose @endpoint declarations make up the API (imported for that effect)
ENDPOINT_MODULES = (
    "gateway.api.senderid",
    "gateway.api.ops",
    "gateway.api.v1",
    "gateway.api.privacy",
    "gateway.api.links",
    "gateway.api.console",
    "gateway.api.fraud",
    "gateway.api.routes",
    "gateway.openapi",
)
for _module in ENDPOINT_MODULES:
    importlib.import_module(_module)


def master_key(settings: Settings) -> bytes:
    """SMSGW_MASTER_KEY, or in development a key file next to the database (created once, 0600)."""
    if settings.master_key:
        return decode_master_key(settings.master_key)
    path = Path(settings.db_path + ".key")
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(new_master_key() + "\n")
        log.warning(
            "SMSGW_MASTER_KEY is not set: generated a development key file; set the variable in "
            "production and keep the key out of the database's backups",
            extra={"key_file": str(path)},
        )
    return decode_master_key(path.read_text())


def retention_policy(settings: Settings) -> RetentionPolicy:
    r, day = settings.retention, 86400.0
    return RetentionPolicy(
        otps=r.otps_days * day,
        message_bodies=r.message_bodies_days * day,
        messages=r.messages_days * day,
        receipts=r.receipts_days * day,
        events=r.events_days * day,
        audit=r.audit_days * day,
        privacy_requests=r.privacy_requests_days * day,
    )


async def purge_all(ctx: Context) -> dict[str, int]:
    """One retention pass over every store; the report is logged and, when anything went, audited."""
    report: dict[str, int] = {}
    for _, store in ctx.regions.all():
        for k, v in (await store.purge(retention_policy(ctx.settings), ctx.clock())).items():
            report[k] = report.get(k, 0) + v
    if any(report.values()):
        log.info("retention purge", extra={"removed": report})
        await ctx.db.append_audit(
            at=ctx.clock(), actor="system", tenant_id="", action="retention.purge", target="", details=report
        )
    return report


async def maintenance(ctx: Context) -> None:
    last_purge = last_expiry = 0.0
    while True:
        await asyncio.sleep(5.0)
        try:
            senderids = ctx.extras.get("senderids")
            if isinstance(senderids, SenderIds):
                await senderids.poll()
                if time.monotonic() - last_expiry >= 60:
                    last_expiry = time.monotonic()
                    await senderids.expire_due(ctx.settings.senderid_pending_days)
            for _, store in ctx.regions.all():
                if await store.refresh_keyring():
                    log.info("new data key loaded", extra={"active_key": store.keyring.active_id})
            if time.monotonic() - last_purge >= ctx.settings.retention.interval_seconds:
                last_purge = time.monotonic()
                await purge_all(ctx)
        except Exception:
            log.exception("maintenance pass failed")


def fraud_model() -> Scorer:
    """The shipped model, verified; if it cannot be loaded the rules and breakers still decide (loudly)."""
    try:
        return load_scorer()
    except (ModelError, OSError) as e:
        log.error("anti-fraud model not loaded: deciding by rules and breakers only", extra={"error": str(e)})
        return RulesOnlyScorer()


async def _one_tenant_settings(ctx: Context, tenant_id: str) -> dict[str, object]:
    return (await ctx.db.tenant_settings(tenant_id)).get(tenant_id, {})


def open_store(where: str, key: bytes, schema: str) -> Store:
    """The engine ``where`` names: a ``postgresql://`` URL (the store in ``schema`` there) or a SQLite
    file path."""
    return PgStore(where, key, schema=schema) if is_pg_url(where) else SqliteStore(where, key)


def open_stores(settings: Settings) -> Stores:
    """The control store (``SMSGW_DATABASE_URL``, else the SQLite file at ``db_path``) and one store per
    residency region (not opened yet). On PostgreSQL a region without a location of its own is a schema
    of its own (``smsgw_<region>``) on the control store's database."""
    key = master_key(settings)
    r = settings.residency
    return Stores(
        control=open_store(settings.database_url or settings.db_path, key, CONTROL_SCHEMA),
        regions={
            name: open_store(where or settings.database_url, key, region_schema(name))
            for name, where in r.regions.items()
        },
        country_region=dict(r.countries),
        copy_to_control=frozenset(r.copy_to_control),
    )


GC_THRESHOLDS = (50_000, 50, 1_000)


def freeze_gc() -> None:
    """What exists now moves to the permanent generation, and young collections run every 50 000
    allocations instead of 700, so a collection no longer walks every long-lived object. The benches'
    own processes call it too, so their pauses are not read as the gateway's latency."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


async def settle_gc(app: web.Application) -> None:
    """For a serving process, once started: :func:`freeze_gc` over what startup built (number metadata,
    the model, rules, config). Measured with bench/otp_throughput.py: p99 under load 110–125 ms ->
    54–58 ms, CPU per request unchanged."""
    freeze_gc()


def graceful_stop(app: web.Application) -> None:
    """SIGTERM or SIGINT (the supervisor forwards them to each worker) starts a drain: /readyz answers
    503 at once and every response closes its connection, while requests are still served for
    ``server.drain_seconds`` (the load balancer's time to stop sending here); then aiohttp's graceful
    exit closes the listener, lets in-flight requests finish, and runs the cleanup contexts in reverse:
    the dispatcher drains and releases what it did not send, SMPP binds unbind, the stores close.
    A second signal skips the rest of the drain delay."""

    async def install(app: web.Application) -> None:
        ctx = app[CTX]
        loop = asyncio.get_running_loop()

        def stop_now() -> None:
            raise web.GracefulExit()

        def on_signal(signame: str) -> None:
            if ctx.draining:
                log.warning("second %s: stopping without waiting out the drain delay", signame)
                stop_now()
            ctx.draining = True
            delay = ctx.settings.server.drain_seconds
            log.info("%s: draining; the listener closes in %gs", signame, delay, extra={"drain_s": delay})
            loop.call_later(delay, stop_now)

        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, on_signal, sig.name)

    async def close_when_draining(request: web.Request, response: web.StreamResponse) -> None:
        if app[CTX].draining:
            response.force_close()

    app.on_startup.append(install)
    app.on_response_prepare.append(close_when_draining)


def create_app(
    settings: Settings, *, clock: Callable[[], float] = time.time, registry: CollectorRegistry | None = None
) -> web.Application:
    disable_created_metrics()  # type: ignore[no-untyped-call]
    if registry is None:
        registry = CollectorRegistry()
        ProcessCollector(registry=registry)
        PlatformCollector(registry=registry)
        GCCollector(registry=registry)
    ctx = Context(settings=settings, instruments=create_instruments(registry, __version__), clock=clock)
    # set by `serve --workers` for its workers (read by prometheus_client itself at import)
    ctx.exposition = exposition_registry(ctx.instruments, os.environ.get("PROMETHEUS_MULTIPROC_DIR"))
    # uploads (sender-ID documents) may be larger than JSON bodies, which json_body() limits itself
    app = web.Application(
        middlewares=[edge], client_max_size=max(settings.server.max_body_bytes, 6 * 1024 * 1024)
    )
    app[CTX] = ctx
    for e in ROUTES:
        app.router.add_route(e.method, e.path, e.handler)

    async def store_ctx(app: web.Application) -> AsyncIterator[None]:
        stores = open_stores(settings)
        await stores.open()
        ctx.stores = stores
        ctx.extras["receipt_token"] = stores.control.keyring.lookup("carrier-receipts").hex()[:32]
        senderids = SenderIds(load_senderid_rules(settings.senderid_countries or None), stores.control, clock)
        await senderids.poll()
        ctx.extras["senderids"] = senderids
        yield
        await stores.close()

    async def state_ctx(app: web.Application) -> AsyncIterator[None]:
        if settings.redis_url:
            client = await connect_redis(settings.redis_url)
            ctx.fillback = RedisFillback(client)
            m = ctx.instruments

            def on_change(transition: str) -> None:  # "down" | "up", once per transition
                m.state_fallback.labels(transition).inc()
                m.state_fallback_active.set(1 if transition == "down" else 0)

            ctx.state = FallbackState(
                RedisState(client), lambda op: m.state_backend_errors.labels(op).inc(), on_change=on_change
            )
            fraud_backend: FraudBackend = RedisFraudBackend(client)
        else:
            ctx.state = MemoryState(clock)
            ctx.fillback = MemoryFillback(clock)
            fraud_backend = MemoryFraudBackend()
        # the keyed hashes that replace numbers in anti-fraud keys use a key derived from the master key
        fraud_settings = FraudSettings(key_secret=ctx.db.keyring.lookup("antifraud-keys"))
        ctx.extras["fraud"] = Fraud(
            FraudEngine(fraud_settings, fraud_backend, fraud_model(), clock=clock),
            ctx.instruments,
            lambda tenant: _one_tenant_settings(ctx, tenant),
        )
        await ctx.fraud.engine.start()  # loads the Redis script before the first request
        yield
        await ctx.fraud.engine.close()
        await ctx.st.close()

    async def carriers_ctx(app: web.Application) -> AsyncIterator[None]:
        session = aiohttp.ClientSession()
        table = RouteTable(
            settings,
            lambda c: build_carrier(c, session),
            clock=clock,
            fillback=ctx.fillback,
            instruments=ctx.instruments,
        )
        ctx.table = table
        collector = RouteHealthCollector(table.samples, table.bind_samples)
        use_route_health_collector(ctx.instruments, collector)
        source = None if settings.source == "defaults" else settings.source
        ctx.extras[ROUTE_LOADER] = lambda: load_settings(source, os.environ)
        loop = asyncio.get_running_loop()
        reloads: set[asyncio.Task[object]] = set()

        def on_sighup() -> None:
            task: asyncio.Task[object] = asyncio.ensure_future(reload_routes(ctx))
            reloads.add(task)
            task.add_done_callback(reloads.discard)
            task.add_done_callback(lambda t: t.cancelled() or t.exception())  # logged by reload_routes

        sighup = source is not None  # `smsgw serve --config FILE`: `kill -HUP` re-reads FILE
        if sighup:
            try:
                loop.add_signal_handler(signal.SIGHUP, on_sighup)
            except (NotImplementedError, RuntimeError, ValueError):  # not the main thread
                sighup = False
        stats = asyncio.create_task(table.run_stats(), name="route-stats")
        yield
        if sighup:
            loop.remove_signal_handler(signal.SIGHUP)
        stats.cancel()
        await asyncio.gather(stats, *reloads, return_exceptions=True)
        await table.close()
        await session.close()
        ctx.instruments.registry.unregister(collector)

    async def maintenance_ctx(app: web.Application) -> AsyncIterator[None]:
        """Background upkeep: new data keys from a rotation elsewhere; the retention purge."""
        task = asyncio.create_task(maintenance(ctx), name="maintenance")
        yield
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    async def dispatch_ctx(app: web.Application) -> AsyncIterator[None]:
        token = ctx.extras["receipt_token"]

        def dlr_url(carrier: str) -> str:
            return f"{settings.public_url}/v1/carriers/{carrier}/receipts?token={token}"

        async def on_sent(rec: MessageRecord, route: str) -> None:
            if rec.kind == "otp":
                ctx.instruments.otp_sent.labels(rec.tenant_id, rec.country, route).inc()
                # the verified series exists from the first send, so a 0 % fill-back reads 0, not "no data"
                ctx.instruments.otp_verified.labels(rec.tenant_id, rec.country, route)
                await ctx.record_fillback("sent", rec.tenant_id, rec.country, route, rec.created_at)

        webhooks = WebhookSender(ctx.regions, settings.webhooks, ctx.instruments, clock=clock)
        ctx.extras[WEBHOOKS] = webhooks
        await webhooks.start()
        dispatcher = Dispatcher(
            ctx.regions,
            ctx.routes,
            settings.dispatch,
            ctx.instruments,
            lambda rec: render_message(ctx, rec),
            dlr_url=dlr_url,
            worker_id=f"{socket.gethostname()}:{os.getpid()}",
            on_sent=on_sent,
            status_sink=webhooks,
            clock=clock,
        )
        ctx.dispatcher = dispatcher

        async def on_failed(rec: MessageRecord, now: float) -> None:
            store = ctx.regions.for_id(rec.id)
            if store is not None:  # tells anti-fraud a route outage apart from pumping
                e164 = store.keyring.open(rec.phone_enc, "phone").decode()
                await ctx.fraud.engine.record_delivery_failed(
                    rec.tenant_id, e164, rec.country, rec.created_at, now
                )

        dispatcher.on_failed = on_failed
        await ctx.routes.start(dispatcher.on_receipt)
        await ctx.routes.wait_up(3.0)  # give SMPP binds a moment, so the first requests find a route
        await dispatcher.start()
        ctx.ready = True
        yield
        ctx.ready = False
        await dispatcher.stop()
        await webhooks.stop()

    ctx.extras["quiet_rules"] = load_quiet_rules(settings.quiet_hours)
    app.cleanup_ctx.extend([store_ctx, state_ctx, carriers_ctx, dispatch_ctx, maintenance_ctx])
    return app
