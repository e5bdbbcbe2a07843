"""A real gateway app (both state backends) in front of a real in-process sim-carrier."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from carriers.sim.http_server import Inbox, SimHttp, SimOptions
from gateway.app import create_app
from tests.conftest import free_port
from tests.gateway.harness import Gw, ManualClock, Sim, make_settings

ClientFactory = Callable[..., Awaitable[TestClient[web.Request, web.Application]]]


@pytest.fixture
async def sim(aiohttp_server: Callable[..., Awaitable[TestServer]]) -> Sim:
    http = SimHttp(Inbox(), SimOptions(receipt_delay_ms=0, seed=7))
    server = await aiohttp_server(http.app())
    return Sim(http, f"http://127.0.0.1:{server.port}")


@pytest.fixture
async def gw(
    request: pytest.FixtureRequest, backend_kind: str, tmp_path: Path, sim: Sim, aiohttp_client: ClientFactory
) -> AsyncIterator[Gw]:
    redis_url = request.getfixturevalue("redis_url") if backend_kind == "redis" else ""
    port = free_port()
    clock = ManualClock()
    app = create_app(make_settings(tmp_path, sim.url, port, redis_url), clock=clock)
    client = await aiohttp_client(TestServer(app, port=port))
    yield Gw(client, app, clock, sim, tmp_path / "smsgw.db")
