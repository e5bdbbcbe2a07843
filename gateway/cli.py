"""The ``smsgw`` command (``python -m gateway`` does the same). See ``smsgw --help``."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
import time
from collections.abc import Sequence

from gateway import __version__
from gateway.config import ConfigError, Settings, load

log = logging.getLogger("smsgw.cli")


def _settings(args: argparse.Namespace) -> Settings:
    try:
        return load(getattr(args, "config", None), os.environ)
    except ConfigError as e:
        print(f"smsgw: {e}", file=sys.stderr)
        raise SystemExit(2) from None


def cmd_serve(args: argparse.Namespace) -> int:
    import dataclasses

    from aiohttp import web

    from gateway import logs
    from gateway.app import create_app, graceful_stop, settle_gc

    settings = _settings(args)
    server = dataclasses.replace(
        settings.server, host=args.host or settings.server.host, port=args.port or settings.server.port
    )
    settings = dataclasses.replace(settings, server=server)
    logs.setup(settings.server.log_level)
    if args.workers > 1:
        from gateway.supervisor import Supervisor, why_not_shared, worker_argv

        problem = why_not_shared(settings, args.workers)
        if problem:
            print(f"smsgw: {problem}", file=sys.stderr)
            return 2
        from gateway.app import master_key

        master_key(settings)  # a development key file is made once here, not raced by the workers
        log.info("starting smsgw workers", extra={"workers": args.workers, "port": server.port})
        return Supervisor(args.workers, worker_argv(args.config, server.host, server.port)).run()
    log.info(
        "starting smsgw",
        extra={
            "version": __version__,
            "config": settings.source,
            "host": server.host,
            "port": server.port,
            "state": "redis" if settings.redis_url else "memory",
        },
    )
    app = create_app(settings)
    app.on_startup.append(settle_gc)  # after every component started (their contexts run first)
    graceful_stop(app)  # SIGTERM: /readyz 503 for server.drain_seconds, then aiohttp's graceful exit
    web.run_app(
        app,
        loop=event_loop(),
        host=server.host,
        port=server.port,
        print=None,
        access_log=None,
        shutdown_timeout=10.0,
        handle_signals=False,  # graceful_stop handles SIGTERM and SIGINT
        keepalive_timeout=server.idle_timeout_seconds,
        backlog=server.backlog,
        # after an early answer (408, 413) the rest of a body is drained for at most this long, so a
        # client that trickles bytes cannot hold the connection for aiohttp's default 10 s
        lingering_time=1.0,
        reuse_port=args.reuse_port or None,
    )
    return 0


def event_loop() -> asyncio.AbstractEventLoop:
    """uvloop's event loop when it is installed (a dependency on Linux: the loop's own overhead per
    request is lower), else asyncio's."""
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


async def _tenant_create(
    settings: Settings,
    name: str,
    scopes: frozenset[str],
    countries: frozenset[str],
    fraud_mode: str = "enforce",
    expected: frozenset[str] | None = None,
) -> dict[str, str]:
    from gateway.app import open_stores
    from gateway.auth import create_tenant, key_id
    from gateway.privacy.crypto import hash_api_key
    from gateway.services.fraud import EXPECTED_KEY

    store = open_stores(settings).control
    await store.open()
    try:
        tenant, api_key = await create_tenant(store, name, scopes, countries, time.time())
        changes: dict[str, object] = {}
        if fraud_mode != "enforce":
            changes["fraud_mode"] = fraud_mode
        if expected:
            changes[EXPECTED_KEY] = sorted(expected)
        if changes:
            await store.update_tenant_settings(tenant.id, changes)
        details: dict[str, object] = {"name": name, "scopes": sorted(scopes), "countries": sorted(countries)}
        if expected:
            details["expected_countries"] = sorted(expected)
        await store.append_audit(
            at=time.time(),
            actor="cli",
            tenant_id=tenant.id,
            action="tenant.create",
            target=tenant.id,
            details=details,
        )
    finally:
        await store.close()
    return {"tenant_id": tenant.id, "api_key": api_key, "key_id": key_id(hash_api_key(api_key))}


async def _key_add(settings: Settings, tenant_id: str, scopes: frozenset[str]) -> dict[str, str] | None:
    import secrets

    from gateway.app import open_stores
    from gateway.auth import KEY_PREFIX, key_id
    from gateway.privacy.crypto import hash_api_key

    store = open_stores(settings).control
    await store.open()
    try:
        api_key = KEY_PREFIX + secrets.token_urlsafe(32)
        key_hash = hash_api_key(api_key)
        if not await store.add_api_key(tenant_id, key_hash, scopes, time.time()):
            return None
        await store.append_audit(
            at=time.time(),
            actor="cli",
            tenant_id=tenant_id,
            action="tenant.key_add",
            target=tenant_id,
            details={"scopes": sorted(scopes)},
        )
        return {"tenant_id": tenant_id, "api_key": api_key, "key_id": key_id(key_hash)}
    finally:
        await store.close()


def cmd_tenant_key_add(args: argparse.Namespace) -> int:
    from gateway.store.records import SCOPES

    settings = _settings(args)
    scopes = frozenset(s.strip() for s in args.scopes.split(",") if s.strip())
    if not scopes or scopes - set(SCOPES):
        print(f"smsgw: unknown scope(s); known: {', '.join(SCOPES)}", file=sys.stderr)
        return 2
    added = asyncio.run(_key_add(settings, args.tenant_id, scopes))
    if added is None:
        print(f"smsgw: no tenant {args.tenant_id}", file=sys.stderr)
        return 2
    print(json.dumps(added))
    return 0


async def _keys(settings: Settings, tenant_id: str) -> list[dict[str, object]] | None:
    from gateway.app import open_stores
    from gateway.auth import key_id

    store = open_stores(settings).control
    await store.open()
    try:
        if not await store.tenant_settings(tenant_id):
            return None
        return [
            {
                "key_id": key_id(k.key_hash),
                "scopes": sorted(k.scopes),
                "created_at": k.created_at,
                "revoked_at": k.revoked_at,
            }
            for k in await store.api_keys(tenant_id)
        ]
    finally:
        await store.close()


def cmd_tenant_key_list(args: argparse.Namespace) -> int:
    keys = asyncio.run(_keys(_settings(args), args.tenant_id))
    if keys is None:
        print(f"smsgw: no tenant {args.tenant_id}", file=sys.stderr)
        return 2
    print(json.dumps({"tenant_id": args.tenant_id, "keys": keys}))
    return 0


async def _key_revoke(settings: Settings, tenant_id: str, wanted: str) -> tuple[str, float | None]:
    """("revoked", now), ("already", revoked_at) or ("unknown", None)."""
    from gateway.app import open_stores
    from gateway.auth import key_id

    store = open_stores(settings).control
    await store.open()
    try:
        match = [k for k in await store.api_keys(tenant_id) if key_id(k.key_hash) == wanted]
        if not match:
            return "unknown", None
        if match[0].revoked_at is not None:
            return "already", match[0].revoked_at
        now = time.time()
        if not await store.revoke_api_key(tenant_id, match[0].key_hash, now):
            return "already", None  # revoked meanwhile by another operator
        await store.append_audit(
            at=now,
            actor="cli",
            tenant_id=tenant_id,
            action="tenant.key_revoke",
            target=tenant_id,
            details={"key_id": wanted, "scopes": sorted(match[0].scopes)},
        )
        return "revoked", now
    finally:
        await store.close()


def cmd_tenant_key_revoke(args: argparse.Namespace) -> int:
    wanted = args.key_id.strip().lower()
    outcome, at = asyncio.run(_key_revoke(_settings(args), args.tenant_id, wanted))
    if outcome == "unknown":
        print(
            f"smsgw: tenant {args.tenant_id} has no key {wanted} "
            f"(see: smsgw tenant key list {args.tenant_id})",
            file=sys.stderr,
        )
        return 2
    print(
        json.dumps(
            {"tenant_id": args.tenant_id, "key_id": wanted, "revoked_at": at, "already": outcome == "already"}
        )
    )
    return 0


def cmd_tenant_create(args: argparse.Namespace) -> int:
    from gateway.phone import country_codes
    from gateway.services.fraud import checked_expected

    settings = _settings(args)
    scopes = frozenset(s.strip() for s in args.scopes.split(",") if s.strip())
    try:
        if args.countries is None:
            countries = frozenset(settings.default_tenant_countries)
        elif args.countries.strip().upper() == "ALL":
            countries = frozenset({"*"})
        else:
            countries = country_codes(args.countries.split(","))
        expected = None
        if args.expect is not None:
            try:
                expected = checked_expected(args.expect.split(","), countries, "--countries")
            except ValueError as e:
                raise ValueError(f"--expect: {e}") from None
            if not expected:
                raise ValueError("--expect needs at least one country code")
    except ValueError as e:
        print(f"smsgw: {e}", file=sys.stderr)
        return 2
    try:
        out = asyncio.run(_tenant_create(settings, args.name, scopes, countries, args.fraud_mode, expected))
    except ValueError as e:
        print(f"smsgw: {e}", file=sys.stderr)
        return 2
    print(json.dumps(out))
    return 0


def cmd_sim_carrier(args: argparse.Namespace) -> int:
    from carriers.sim.main import SimCarrierOptions, run_sim_carrier
    from gateway import logs

    logs.setup("info")
    opts = SimCarrierOptions(
        host=args.host,
        http_port=args.http_port,
        smpp_port=args.smpp_port,
        latency_ms=args.latency_ms,
        failure_rate=args.failure_rate,
        receipt_rate=args.receipt_rate,
        receipt_delay_ms=args.receipt_delay_ms,
        undeliverable_rate=args.undeliverable_rate,
        throttle_rate=args.throttle_rate,
        seed=args.seed,
    )
    asyncio.run(run_sim_carrier(opts))
    return 0


async def _audit_verify(settings: Settings) -> int:
    from gateway.app import open_stores
    from gateway.privacy.audit import verify_chain

    stores = open_stores(settings)
    await stores.open()
    rc = 0
    try:
        for region, store in stores.all():
            verdict = verify_chain(store.keyring.audit_key, await store.audit_records())
            where = f"region {region}" if region else "control store"
            if verdict.ok:
                print(f"audit log intact ({where}): {verdict.checked} record(s)")
            else:
                print(f"audit log BROKEN ({where}) at record {verdict.first_bad}: {verdict.reason}")
                rc = 1
    finally:
        await stores.close()
    return rc


def cmd_audit_verify(args: argparse.Namespace) -> int:
    return asyncio.run(_audit_verify(_settings(args)))


async def _purge(settings: Settings) -> dict[str, int]:
    from prometheus_client import CollectorRegistry

    from gateway.app import open_stores, purge_all
    from gateway.context import Context
    from metrics.instruments import create_instruments

    ctx = Context(settings=settings, instruments=create_instruments(CollectorRegistry()))
    ctx.stores = open_stores(settings)
    await ctx.stores.open()
    try:
        return await purge_all(ctx)
    finally:
        await ctx.stores.close()


def cmd_purge(args: argparse.Namespace) -> int:
    print(json.dumps(asyncio.run(_purge(_settings(args))), sort_keys=True))
    return 0


async def _rotate(settings: Settings, batch: int) -> dict[str, int]:
    from tqdm import tqdm

    from gateway.app import open_stores

    stores = open_stores(settings)
    await stores.open()
    out: dict[str, int] = {}
    try:
        for region, store in stores.all():
            name = region or "control"
            key_id = await store.add_data_key(time.time())
            await store.append_audit(
                at=time.time(),
                actor="cli",
                tenant_id="",
                action="keys.rotate",
                target=name,
                details={"new_key_id": key_id},
            )
            total = await store.count_stale_sealed()
            done = 0
            with tqdm(total=total, desc=f"re-encrypting {name} under key {key_id}", unit="value") as bar:
                while True:
                    n = await store.reseal_batch(batch)
                    done += n
                    bar.update(n)
                    if n == 0:  # values written meanwhile under an older key are caught by this loop
                        break
            out[name] = done
    finally:
        await stores.close()
    return out


def cmd_keys_rotate(args: argparse.Namespace) -> int:
    out = asyncio.run(_rotate(_settings(args), args.batch))
    print(json.dumps({"resealed": out}, sort_keys=True))
    return 0


def cmd_antifraud(args: argparse.Namespace) -> int:
    """``smsgw antifraud train|evaluate [options]``: antifraud's own commands (see their --help)."""
    if args.af_cmd == "train":
        from antifraud.model import main as train_main

        train_main(args.rest)
    else:
        from antifraud.evaluate import main as evaluate_main

        evaluate_main(args.rest)
    return 0


def cmd_simulate(args: argparse.Namespace) -> int:
    """``smsgw simulate``: the anti-fraud traffic simulator against a running gateway and sim-carrier
    (``antifraud.http_driver``), a short window in real time. Its tenants are created in the gateway's
    store (so run it with the gateway's ``--config`` / ``SMSGW_DB`` and ``SMSGW_MASTER_KEY``)."""
    from antifraud.http_driver import simulate_command
    from antifraud.simulate import ATTACK_FAMILIES, WindowConfig
    from senderid import load_rules

    settings = _settings(args)
    if args.exclude_countries is None:  # where unregistered OTP templates are refused (422) before anti-fraud
        rules = load_rules(settings.senderid_countries or None)
        exclude = tuple(sorted(c for c, r in rules.countries.items() if r.templates_enforced))
    else:
        exclude = tuple(c.strip().upper() for c in args.exclude_countries.split(",") if c.strip())
    families = (
        tuple(f.strip().upper() for f in args.families.split(",") if f.strip())
        if args.families
        else ATTACK_FAMILIES
    )
    try:
        window = WindowConfig(
            seed=args.seed,
            seconds=args.seconds,
            legit_rate=args.legit_rate,
            tenants=args.tenants,
            families=families,
            tail=args.tail,
            exclude_countries=exclude,
            outage_at=args.outage_at,
            outage_seconds=args.outage_seconds,
            outage_share=args.outage_share,
            outage_country=(args.outage_country or "").upper(),
            probe_every=args.probe_every,
        )
    except ValueError as e:
        print(f"smsgw: {e}", file=sys.stderr)
        return 2

    async def provision(name: str, expected: frozenset[str] | None) -> tuple[str, str]:
        scopes, everywhere = frozenset({"send", "verify"}), frozenset({"*"})
        out = await _tenant_create(settings, name, scopes, everywhere, "enforce", expected)
        return out["tenant_id"], out["api_key"]

    run = simulate_command(
        args.gateway, args.sim_carrier, window, provision, as_json=args.json, declared=not args.undeclared
    )
    print(asyncio.run(run))
    return 0


def cmd_keys_generate(args: argparse.Namespace) -> int:
    from gateway.privacy.crypto import new_master_key

    print(new_master_key())
    return 0


def _rate(text: str) -> float:
    v = float(text)
    if not 0.0 <= v <= 1.0:
        raise argparse.ArgumentTypeError("must be between 0 and 1")
    return v


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="smsgw", description="International SMS gateway with OTP and anti-fraud."
    )
    p.add_argument("--version", action="version", version=f"smsgw {__version__}")
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("serve", help="run the gateway")
    s.add_argument("--config", help="TOML file (default: $SMSGW_CONFIG, else built-in defaults)")
    s.add_argument("--host")
    s.add_argument("--port", type=int)
    s.add_argument(
        "--workers",
        type=int,
        default=1,
        help="N processes on one port (SO_REUSEPORT) under a supervisor; needs REDIS_URL and "
        "SMSGW_DATABASE_URL (default 1: this process serves)",
    )
    s.add_argument("--reuse-port", action="store_true", help=argparse.SUPPRESS)  # set for each worker
    s.set_defaults(func=cmd_serve)

    t = sub.add_parser("tenant", help="manage tenants").add_subparsers(dest="tenant_cmd", required=True)
    tc = t.add_parser("create", help="create a tenant and print its API key once")
    tc.add_argument("name")
    tc.add_argument("--scopes", default="send,verify")
    tc.add_argument(
        "--countries", help="ALL or a comma list of ISO codes (default: the operator's safe list)"
    )
    tc.add_argument(
        "--expect",
        metavar="US,DE,...",
        help="the countries its users are in, for anti-fraud's cold start (a new tenant's first sends "
        "there are not 'unusual'); default: --countries when it is a list",
    )
    tc.add_argument(
        "--fraud-mode",
        choices=("enforce", "monitor"),
        default="enforce",
        help="monitor: anti-fraud decides and counts but always allows (e.g. while onboarding)",
    )
    tc.add_argument("--config")
    tc.set_defaults(func=cmd_tenant_create)
    tk = t.add_parser("key", help="API keys of a tenant").add_subparsers(dest="key_cmd", required=True)
    tka = tk.add_parser("add", help="another API key for an existing tenant (e.g. an admin key)")
    tka.add_argument("tenant_id")
    tka.add_argument("--scopes", default="send,verify")
    tka.add_argument("--config")
    tka.set_defaults(func=cmd_tenant_key_add)
    tkl = tk.add_parser("list", help="a tenant's keys by key id (never the keys), revoked ones too")
    tkl.add_argument("tenant_id")
    tkl.add_argument("--config")
    tkl.set_defaults(func=cmd_tenant_key_list)
    tkr = tk.add_parser(
        "revoke",
        help="revoke a key by its key id; every gateway process refuses it within 10 s (its key cache)",
    )
    tkr.add_argument("tenant_id")
    tkr.add_argument("key_id", help="as 'smsgw tenant key list' and 'key add' print it")
    tkr.add_argument("--config")
    tkr.set_defaults(func=cmd_tenant_key_revoke)

    sc = sub.add_parser("sim-carrier", help="run a fake carrier (HTTP and SMPP) for development")
    sc.add_argument("--host", default="127.0.0.1")
    sc.add_argument("--http-port", type=int, default=8025)
    sc.add_argument("--smpp-port", type=int, default=2775, help="0 disables the SMPP side")
    sc.add_argument("--latency-ms", type=float, default=0.0)
    sc.add_argument("--failure-rate", type=_rate, default=0.0)
    sc.add_argument("--throttle-rate", type=_rate, default=0.0)
    sc.add_argument("--receipt-rate", type=_rate, default=1.0)
    sc.add_argument("--receipt-delay-ms", type=float, default=50.0)
    sc.add_argument("--undeliverable-rate", type=_rate, default=0.0)
    sc.add_argument("--seed", type=int)
    sc.set_defaults(func=cmd_sim_carrier)

    k = sub.add_parser("keys", help="encryption keys").add_subparsers(dest="keys_cmd", required=True)
    kg = k.add_parser("generate", help="print a new random master key for SMSGW_MASTER_KEY")
    kg.set_defaults(func=cmd_keys_generate)
    kr = k.add_parser("rotate", help="add a data key and re-encrypt everything under it, with progress")
    kr.add_argument("--config")
    kr.add_argument("--batch", type=int, default=500)
    kr.set_defaults(func=cmd_keys_rotate)

    a = sub.add_parser("audit", help="the audit log").add_subparsers(dest="audit_cmd", required=True)
    av = a.add_parser("verify", help="check the audit log's hash chain; exit 1 at the first broken record")
    av.add_argument("--config")
    av.set_defaults(func=cmd_audit_verify)

    af = sub.add_parser("antifraud", help="train the fraud model or print the evaluation report")
    af.add_argument("af_cmd", choices=("train", "evaluate"))
    af.add_argument("rest", nargs=argparse.REMAINDER, help="options of the command (see --help)")
    af.set_defaults(func=cmd_antifraud)

    sm = sub.add_parser(
        "simulate",
        help="play a short window of simulated traffic (real users and attacks) against a running gateway",
    )
    sm.add_argument("--gateway", required=True, help="the gateway's base URL, e.g. http://127.0.0.1:8080")
    sm.add_argument("--sim-carrier", required=True, help="the sim-carrier's HTTP URL (its inbox)")
    sm.add_argument("--seconds", type=float, default=60.0, help="seconds of traffic, in real time")
    sm.add_argument("--tail", type=float, default=30.0, help="seconds after it for sessions to finish")
    sm.add_argument("--seed", type=int, default=101)
    sm.add_argument("--tenants", type=int, default=3, help="simulated tenants (each created for real)")
    sm.add_argument("--legit-rate", type=float, default=5.0, help="real users' requests per second")
    sm.add_argument("--families", help="attack families, e.g. A1,A2,A9 (default: all thirteen)")
    sm.add_argument(
        "--exclude-countries",
        help="destinations real users skip (default: where unregistered OTP templates are refused)",
    )
    sm.add_argument(
        "--outage-at",
        type=float,
        help="share of the window (0-1) when an L10 route outage starts: real users' deliveries fail "
        "(start the sim-carrier with --receipt-delay-ms 25000 so each failure can still be played)",
    )
    sm.add_argument("--outage-seconds", type=float, default=30.0, help="how long the outage lasts")
    sm.add_argument("--outage-share", type=float, default=0.5, help="share of deliveries that fail in it")
    sm.add_argument("--outage-country", help="where (default: the first tenant's busiest destination)")
    sm.add_argument(
        "--probe-every",
        type=float,
        default=0.0,
        help="seconds between release probes (POST /v1/fraud/check) after each campaign; 0: none",
    )
    sm.add_argument(
        "--undeclared",
        action="store_true",
        help="tenants declare no countries (default: each expects its real users' countries, --expect)",
    )
    sm.add_argument("--json", action="store_true", help="print the figures as JSON")
    sm.add_argument("--config")
    sm.set_defaults(func=cmd_simulate)

    pg = sub.add_parser("purge", help="run the retention purge once and print what it removed")
    pg.add_argument("--config")
    pg.set_defaults(func=cmd_purge)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    rc: int = args.func(args)
    return rc
