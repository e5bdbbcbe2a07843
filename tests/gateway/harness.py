"""Helpers for gateway tests: a manual clock, the sim-carrier handle, the gateway handle."""

from __future__ import annotations

import asyncio
import base64
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestClient

from carriers.sim.http_server import Inbox, SimHttp
from gateway.auth import create_tenant
from gateway.config import (
    CarrierSettings,
    DispatchSettings,
    OtpSettings,
    RouteSettings,
    ServerSettings,
    Settings,
)
from gateway.context import CTX, Context

MASTER_KEY = base64.b64encode(bytes(range(32))).decode()


class ManualClock:
    def __init__(self, t: float | None = None) -> None:
        self.t = time.time() if t is None else t

    def __call__(self) -> float:
        return self.t

    def advance(self, seconds: float) -> None:
        self.t += seconds


@dataclass
class Sim:
    http: SimHttp
    url: str

    @property
    def inbox(self) -> Inbox:
        return self.http.inbox

    def texts(self, to: str) -> list[str]:
        return [m.text for m in self.inbox.by_to.get(to, [])]


@dataclass
class Gw:
    client: TestClient[web.Request, web.Application]
    app: web.Application
    clock: ManualClock
    sim: Sim
    db_path: Path  # the SQLite file (when the stack's engine is SQLite)
    keys: dict[str, str] = field(default_factory=dict)
    at_rest: Callable[[], bytes] = lambda: b""  # every byte the store wrote (its files, WAL included)

    @property
    def ctx(self) -> Context:
        return self.app[CTX]

    async def tenant(
        self,
        name: str = "acme",
        scopes: str = "send,verify",
        countries: str = "*",
        fraud_mode: str = "monitor",
    ) -> str:
        """A tenant and its key. Anti-fraud runs in monitor mode unless a test asks for "enforce": tests of
        other features send bursts of synthetic traffic that the pumping detector rightly finds odd."""
        tenant, key = await create_tenant(
            self.ctx.db, name, frozenset(scopes.split(",")), frozenset(countries.split(",")), self.clock()
        )
        await self.ctx.db.update_tenant_settings(tenant.id, {"fraud_mode": fraud_mode})
        return key

    async def call(
        self, method: str, path: str, key: str | None = None, json: Any = None, data: bytes | None = None
    ) -> tuple[int, Any, Any]:
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        resp = await self.client.request(method, path, json=json, data=data, headers=headers)
        try:
            body = await resp.json(content_type=None)
        except ValueError:
            body = await resp.text()
        return resp.status, body, resp.headers

    def code_for(self, to: str) -> str:
        import re

        texts = self.sim.texts(to)
        assert texts, f"nothing in the sim inbox for {to[:4]}…"
        m = re.search(r"\b(\d{4,10})\b", texts[-1])
        assert m
        return m.group(1)

    async def settle(self) -> None:
        """Dispatch everything queued, then give the sim's receipts a moment to come back."""
        await self.ctx.disp.drain()
        for _ in range(100):
            counts = await self.ctx.db.count_by_status()
            if not counts.get("submitted") and not counts.get("queued") and not counts.get("sending"):
                return
            await asyncio.sleep(0.01)


def make_settings(tmp_path: Path, sim_url: str, port: int, redis_url: str = "", **over: Any) -> Settings:
    return Settings(
        server=ServerSettings(port=port),
        db_path=str(tmp_path / "smsgw.db"),
        redis_url=redis_url,
        master_key=MASTER_KEY,
        otp=over.pop("otp", OtpSettings()),
        dispatch=over.pop("dispatch", DispatchSettings(workers=8, sweep_interval_seconds=0.2)),
        carriers=[CarrierSettings(name="sim", url=f"{sim_url}/messages", timeout_seconds=2.0)],
        routes=[RouteSettings(name="sim-default", carrier="sim")],
        **over,
    )
