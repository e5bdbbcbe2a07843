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
    from gateway.app import create_app

    settings = _settings(args)
    server = dataclasses.replace(
        settings.server, host=args.host or settings.server.host, port=args.port or settings.server.port
    )
    settings = dataclasses.replace(settings, server=server)
    logs.setup(settings.server.log_level)
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
    web.run_app(
        create_app(settings),
        host=server.host,
        port=server.port,
        print=None,
        access_log=None,
        shutdown_timeout=10.0,
        handle_signals=True,
    )
    return 0


async def _tenant_create(
    settings: Settings, name: str, scopes: frozenset[str], countries: frozenset[str]
) -> dict[str, str]:
    from gateway.app import master_key
    from gateway.auth import create_tenant
    from gateway.store import SqliteStore

    store = SqliteStore(settings.db_path, master_key(settings))
    await store.open()
    try:
        tenant, api_key = await create_tenant(store, name, scopes, countries, time.time())
    finally:
        await store.close()
    return {"tenant_id": tenant.id, "api_key": api_key}


def cmd_tenant_create(args: argparse.Namespace) -> int:
    import phonenumbers

    settings = _settings(args)
    scopes = frozenset(s.strip() for s in args.scopes.split(",") if s.strip())
    if args.countries is None:
        countries = frozenset(settings.default_tenant_countries)
    elif args.countries.strip().upper() == "ALL":
        countries = frozenset({"*"})
    else:
        countries = frozenset(c.strip().upper() for c in args.countries.split(",") if c.strip())
        unknown = sorted(c for c in countries if c not in phonenumbers.SUPPORTED_REGIONS)
        if unknown:
            print(f"smsgw: unknown country code(s): {', '.join(unknown)}", file=sys.stderr)
            return 2
    try:
        out = asyncio.run(_tenant_create(settings, args.name, scopes, countries))
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
    s.set_defaults(func=cmd_serve)

    t = sub.add_parser("tenant", help="manage tenants").add_subparsers(dest="tenant_cmd", required=True)
    tc = t.add_parser("create", help="create a tenant and print its API key once")
    tc.add_argument("name")
    tc.add_argument("--scopes", default="send,verify")
    tc.add_argument(
        "--countries", help="ALL or a comma list of ISO codes (default: the operator's safe list)"
    )
    tc.add_argument("--config")
    tc.set_defaults(func=cmd_tenant_create)

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
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    rc: int = args.func(args)
    return rc
