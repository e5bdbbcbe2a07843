"""Anti-fraud fixtures: the same engine on the memory backend and on a real Redis (flushed per test)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

import pytest
import redis.asyncio as aioredis

from antifraud import (
    FraudEngine,
    FraudRequest,
    FraudSettings,
    MemoryFraudBackend,
    RedisFraudBackend,
    RulesOnlyScorer,
    Scorer,
    TenantPolicy,
)
from antifraud.limits import FraudBackend
from tests.conftest import shared_redis

T0 = 1_772_409_600.0  # 2026-03-02 00:00 UTC


@dataclass
class Clock:
    now: float = T0

    def __call__(self) -> float:
        return self.now


@dataclass
class Rig:
    """An engine on one backend, a manual clock, and helpers to send requests."""

    engine: FraudEngine
    backend: FraudBackend
    clock: Clock
    client: aioredis.Redis | None = None

    def req(
        self,
        e164: str,
        *,
        tenant: str = "t1",
        country: str = "",
        ip: str | None = "100.1.2.3",
        device: str | None = None,
        session: str | None = None,
        passed: bool = False,
        at: float | None = None,
    ) -> FraudRequest:
        return FraudRequest(
            tenant, e164, country, ip, device, session, passed, self.clock.now if at is None else at
        )

    async def send(self, e164: str, **kw: object) -> str:
        d = await self.engine.evaluate(self.req(e164, **kw))  # type: ignore[arg-type]
        return d.action


@pytest.fixture(params=["memory", "redis", "cluster"])
def backend_kind(request: pytest.FixtureRequest) -> str:
    """Here also on a real 3-node Redis Cluster: one request's keys share a hash tag."""
    return str(request.param)


@pytest.fixture
async def make_rig(backend_kind: str, request: pytest.FixtureRequest) -> AsyncIterator[Callable[..., Rig]]:
    """``make_rig(policy=..., model=..., settings=...)`` → a :class:`Rig` on the parametrised backend."""
    clients: list[aioredis.Redis] = []

    def make(
        *,
        policy: TenantPolicy | None = None,
        model: Scorer | None = None,
        settings: FraudSettings | None = None,
    ) -> Rig:
        s = settings or FraudSettings(default_policy=policy or TenantPolicy(allowed_countries=None))
        clock = Clock()
        client = None
        backend: FraudBackend
        if backend_kind != "memory":
            client = shared_redis(request, backend_kind)
            clients.append(client)
            backend = RedisFraudBackend(client)
        else:
            backend = MemoryFraudBackend()
        engine = FraudEngine(s, backend, model or RulesOnlyScorer(), clock=clock)
        return Rig(engine, backend, clock, client)

    yield make
    for c in clients:
        await c.aclose()
