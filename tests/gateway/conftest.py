"""A real gateway app in front of a real in-process sim-carrier, on each store engine and state backend.

``stack`` is the one place that picks them: SQLite with both state backends, and PostgreSQL with the
in-memory state (the engine's behaviour does not depend on where the hot state lives, and Redis with
SQLite already covers the state side), so the whole gateway matrix runs on both engines for the cost
of one more pass."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from carriers.sim.http_server import Inbox, SimHttp, SimOptions
from gateway.app import create_app
from tests.conftest import PgServer, free_port
from tests.gateway.harness import Gw, ManualClock, Sim, make_settings

ClientFactory = Callable[..., Awaitable[TestClient[web.Request, web.Application]]]


@pytest.fixture
async def sim(aiohttp_server: Callable[..., Awaitable[TestServer]]) -> Sim:
    http = SimHttp(Inbox(), SimOptions(receipt_delay_ms=0, seed=7))
    server = await aiohttp_server(http.app())
    return Sim(http, f"http://127.0.0.1:{server.port}")


# (store engine, state backend)
STACKS = [("sqlite", "memory"), ("sqlite", "redis"), ("postgresql", "memory")]
SQLITE_STACKS = [s for s in STACKS if s[0] == "sqlite"]


@pytest.fixture(params=STACKS, ids=["-".join(s) for s in STACKS])
def stack(request: pytest.FixtureRequest) -> tuple[str, str]:
    """A test that needs one engine parametrises ``stack`` itself (e.g. with ``SQLITE_STACKS``)."""
    engine, state = request.param
    return str(engine), str(state)


@pytest.fixture
async def gw(
    request: pytest.FixtureRequest,
    stack: tuple[str, str],
    tmp_path: Path,
    sim: Sim,
    aiohttp_client: ClientFactory,
) -> AsyncIterator[Gw]:
    engine, state = stack
    redis_url = request.getfixturevalue("redis_url") if state == "redis" else ""
    db_path = tmp_path / "smsgw.db"
    if engine == "postgresql":
        pg: PgServer = request.getfixturevalue("pg_server")
        database_url = str(request.getfixturevalue("pg_url"))

        def at_rest() -> bytes:
            return pg.files_of(database_url)
    else:
        database_url = ""

        def at_rest() -> bytes:
            return b"".join(p.read_bytes() for p in sorted(tmp_path.glob("smsgw.db*")))

    port = free_port()
    clock = ManualClock()
    settings = make_settings(tmp_path, sim.url, port, redis_url, database_url=database_url)
    app = create_app(settings, clock=clock)
    client = await aiohttp_client(TestServer(app, port=port))
    yield Gw(client, app, clock, sim, db_path, at_rest=at_rest)
