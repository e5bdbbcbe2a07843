"""What only the PostgreSQL engine has to show: residency regions as schemas of their own, an outage and
a lock wait answered 503 (never 500) with recovery after the server is back, migrations run once when
processes start together, and the CLI's store commands on PostgreSQL. The behaviour shared with SQLite
is pinned in ``test_store_contract.py``, and every gateway test runs on PostgreSQL too (``conftest.py``)."""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import asyncpg
import pytest
from aiohttp.test_utils import TestServer

from gateway.app import create_app
from gateway.config import ResidencySettings
from gateway.store import PgStore
from gateway.store.pg import region_schema
from gateway.store.pg_migrations import PG_MIGRATIONS
from tests.conftest import free_port, pg_process
from tests.gateway.conftest import ClientFactory
from tests.gateway.harness import MASTER_KEY, Gw, ManualClock, Sim, make_settings

RU, DE, FR = "+79161234567", "+4915123456789", "+33612345678"

Start = Callable[..., Awaitable[Gw]]


@pytest.fixture
async def start(tmp_path: Path, sim: Sim, aiohttp_client: ClientFactory) -> AsyncIterator[Start]:
    """Start a gateway on the PostgreSQL at ``database_url`` (in-memory state)."""

    async def go(database_url: str, **over: object) -> Gw:
        port = free_port()
        clock = ManualClock()
        settings = make_settings(tmp_path, sim.url, port, database_url=database_url, **over)
        app = create_app(settings, clock=clock)
        client = await aiohttp_client(TestServer(app, port=port))
        return Gw(client, app, clock, sim, tmp_path / "smsgw.db")

    yield go


async def test_a_number_of_one_region_never_lands_in_another_regions_schema(
    pg_url: str, start: Start
) -> None:
    residency = ResidencySettings(
        regions={"ru": "", "eu": ""}, countries={"RU": "ru", "DE": "eu"}, copy_to_control=["RU"]
    )
    gw = await start(pg_url, residency=residency)
    key = await gw.tenant()
    ids = {}
    for to in (RU, DE, FR):
        st, body, _ = await gw.call("POST", "/v1/otp", key, {"to": to})
        assert st == 202, body
        ids[to] = body["id"]
        assert (await gw.call("GET", f"/v1/otp/{body['id']}", key))[0] == 200
    assert ids[RU].startswith("otp_ru_") and ids[DE].startswith("otp_eu_")
    await gw.ctx.disp.drain()
    assert all(gw.sim.texts(to) for to in (RU, DE, FR))  # dispatched from every region's schema

    ring = gw.ctx.db.keyring
    schemas = {"smsgw": FR, region_schema("ru"): RU, region_schema("eu"): DE}
    conn = await asyncpg.connect(pg_url)
    try:
        for _ in range(100):  # Russia: recorded locally first, then a minimal copy in the control store
            if await conn.fetchval("SELECT COUNT(*) FROM smsgw.residency_copies"):
                break
            await asyncio.sleep(0.02)
        for schema, own in schemas.items():
            for table in ("otps", "messages"):
                rows = await conn.fetch(f"SELECT phone_hmac, country FROM {schema}.{table}")
                assert [bytes(r[0]) for r in rows] == [ring.lookup(own)], (schema, table)
            otp_ids = [r[0] for r in await conn.fetch(f"SELECT id FROM {schema}.otps")]
            assert otp_ids == [ids[own]]
        copies = await conn.fetch("SELECT id, phone_hmac FROM smsgw.residency_copies")
        assert [(r[0], bytes(r[1])) for r in copies] == [(ids[RU], ring.lookup(RU))]
        for schema in (region_schema("ru"), region_schema("eu")):
            assert await conn.fetchval(f"SELECT COUNT(*) FROM {schema}.residency_copies") == 0
    finally:
        await conn.close()


async def test_an_outage_answers_503_and_the_gateway_recovers_once_the_server_is_back(start: Start) -> None:
    with pg_process() as server:  # a server of its own, so stopping it touches no other test
        gw = await start(server.url())
        key = await gw.tenant()
        st, before, _ = await gw.call("POST", "/v1/otp", key, {"to": DE})
        assert st == 202, before
        await asyncio.to_thread(server.ctl, "stop", "-m", "fast")
        for method, path, body in (
            ("POST", "/v1/otp", {"to": FR}),
            ("GET", f"/v1/otp/{before['id']}", None),
            ("POST", "/v1/messages", {"to": FR, "sender_id": "ACME", "body": "Hi"}),
        ):
            st, err, headers = await gw.call(method, path, key, body)
            assert st == 503 and err["error"]["code"] == "unavailable", (path, st, err)
            assert int(headers["Retry-After"]) > 0
        st, ready, _ = await gw.call("GET", "/readyz")
        assert st == 503 and ready["checks"]["store"] is False
        await asyncio.to_thread(server.ctl, "start")
        st, after, _ = await gw.call("POST", "/v1/otp", key, {"to": FR})
        assert st == 202, after
        assert (await gw.call("GET", f"/v1/otp/{before['id']}", key))[0] == 200  # accepted before: kept
        assert (await gw.call("GET", "/readyz"))[0] == 200
        await gw.client.close()  # the app stops while its server still runs


async def test_a_lock_held_past_lock_timeout_answers_503_not_500(pg_url: str, start: Start) -> None:
    gw = await start(pg_url + "&lock_timeout=200ms")  # the URL's setting takes precedence over 5 s
    key = await gw.tenant()
    other = await asyncpg.connect(pg_url)
    try:
        tx = other.transaction()
        await tx.start()
        await other.execute("LOCK TABLE smsgw.messages IN ACCESS EXCLUSIVE MODE")  # e.g. a long migration
        st, err, _ = await gw.call("POST", "/v1/otp", key, {"to": DE})
        assert st == 503 and err["error"]["code"] == "unavailable", err
        await tx.rollback()
    finally:
        await other.close()
    st, body, _ = await gw.call("POST", "/v1/otp", key, {"to": DE})
    assert st == 202, body


async def test_processes_starting_together_migrate_once_and_share_one_data_key(pg_url: str) -> None:
    key = secrets.token_bytes(32)
    stores = [PgStore(pg_url, key) for _ in range(4)]
    await asyncio.gather(*(s.open() for s in stores))
    try:
        assert {s.keyring.active_id for s in stores} == {1}
        sealed = stores[0].keyring.seal(b"x", "phone")
        assert all(s.keyring.open(sealed, "phone") == b"x" for s in stores)
        conn = await asyncpg.connect(pg_url)
        try:
            versions = [r[0] for r in await conn.fetch("SELECT version FROM smsgw.schema_version")]
        finally:
            await conn.close()
        assert versions == list(range(1, len(PG_MIGRATIONS) + 1))
    finally:
        for s in stores:
            await s.close()


def test_the_cli_creates_tenants_and_verifies_the_audit_log_on_postgresql(
    pg_url: str, tmp_path: Path
) -> None:
    env = {**os.environ, "SMSGW_DATABASE_URL": pg_url, "SMSGW_MASTER_KEY": MASTER_KEY}
    env.pop("SMSGW_CONFIG", None)

    def smsgw(*args: str) -> subprocess.CompletedProcess[str]:
        cmd = [sys.executable, "-m", "gateway", *args]
        return subprocess.run(cmd, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60)

    made = smsgw("tenant", "create", "acme", "--scopes", "send,verify", "--countries", "DE")
    assert made.returncode == 0, made.stderr
    tenant_id = json.loads(made.stdout)["tenant_id"]
    verified = smsgw("audit", "verify")
    assert verified.returncode == 0 and "1 record(s)" in verified.stdout, verified.stdout + verified.stderr
    assert not list(tmp_path.glob("*.db")), "no SQLite file when the store is PostgreSQL"

    async def stored() -> tuple[object, ...]:
        conn = await asyncpg.connect(pg_url)
        try:
            row = await conn.fetchrow("SELECT id, countries FROM smsgw.tenants")
            return tuple(row)
        finally:
            await conn.close()

    assert asyncio.run(stored()) == (tenant_id, "DE")


async def test_concurrent_writes_share_transactions(pg_url: str) -> None:
    """Group commit: the writes queued while a batch commits go together, not one transaction each."""
    from tests.gateway.test_store_contract import message

    store = PgStore(pg_url, secrets.token_bytes(32))
    await store.open()
    try:
        assert store.writer is not None
        before = (store.writer.batches, store.writer.operations)
        await asyncio.gather(*(store.insert_message(message(store.keyring)) for _ in range(60)))
        batches, ops = store.writer.batches - before[0], store.writer.operations - before[1]
        assert ops == 60 and batches <= 3, (batches, ops)
        assert await store.count_by_status() == {"queued": 60}
    finally:
        await store.close()


async def test_a_value_sealed_under_a_key_another_process_added_opens_at_once(pg_url: str) -> None:
    """Keyring.fetch_key: the reader learns the new data key when it first meets it, not only at the
    next refresh."""
    key = secrets.token_bytes(32)
    rotator, reader = PgStore(pg_url, key), PgStore(pg_url, key)
    await rotator.open()
    await reader.open()
    try:
        assert await rotator.add_data_key(1.0) == 2
        await rotator.put_webhook("t1", "https://t1.example/hook", "s3cret", 1.0)
        hook = await reader.get_webhook("t1")
        assert hook is not None and hook.secret == b"s3cret" and 2 in reader.keyring.data_keys
    finally:
        await rotator.close()
        await reader.close()


def test_open_stores_picks_each_regions_engine_from_its_location(tmp_path: Path) -> None:
    from gateway.app import open_stores
    from gateway.config import Settings
    from gateway.store import SqliteStore

    url, ap_url = "postgresql://smsgw@db/smsgw", "postgresql://smsgw@ap-db/smsgw"
    residency = ResidencySettings(
        regions={"ru": "", "eu": str(tmp_path / "eu.db"), "ap": ap_url}, countries={"RU": "ru"}
    )
    stores = open_stores(Settings(database_url=url, master_key=MASTER_KEY, residency=residency))
    assert isinstance(stores.control, PgStore) and (stores.control.dsn, stores.control.schema) == (
        url,
        "smsgw",
    )
    ru, eu, ap = stores.regions["ru"], stores.regions["eu"], stores.regions["ap"]
    assert isinstance(ru, PgStore) and (ru.dsn, ru.schema) == (url, "smsgw_ru")
    assert isinstance(eu, SqliteStore) and eu.path == str(tmp_path / "eu.db")
    assert isinstance(ap, PgStore) and (ap.dsn, ap.schema) == (ap_url, "smsgw_ap")
