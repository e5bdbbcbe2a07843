"""Kill the gateway with SIGKILL between acceptance and dispatch, start it again: every accepted message
reaches the carrier's inbox exactly once."""

from __future__ import annotations

import asyncio
import signal
from urllib.parse import quote

import aiohttp

from tests.conftest import free_port
from tests.e2e.procs import Procs, get_json, sim_config, spread, wait_until


async def _send_all(base: str, key: str, numbers: list[str]) -> list[str]:
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {key}"}) as s:

        async def one(to: str) -> str | None:
            async with s.post(f"{base}/v1/otp", json={"to": to}) as r:
                return to if r.status == 202 else None

        return [to for to in await asyncio.gather(*(one(n) for n in numbers)) if to]


def test_sigkill_between_acceptance_and_dispatch_loses_nothing_and_duplicates_nothing(procs: Procs) -> None:
    sim_port = procs.sim_carrier("--latency-ms", "100")
    sim = f"http://127.0.0.1:{sim_port}"
    port = free_port()
    dispatch = "[dispatch]\nworkers = 2\nclaim_lease_seconds = 1.0\nsweep_interval_seconds = 0.2\n"
    config = sim_config(port, sim_port, sections=dispatch)
    gw = procs.gateway(port, config)
    key = procs.tenant()
    numbers = [spread(n) for n in range(80)]
    accepted = asyncio.run(_send_all(f"http://127.0.0.1:{port}", key, numbers))
    gw.send_signal(signal.SIGKILL)
    gw.wait(10)
    assert len(accepted) == len(numbers)
    before = get_json(f"{sim}/stats")["received"]
    # 2 workers × 100 ms per submission: most messages were still waiting when the process died
    assert before < len(accepted) // 2, f"{before} already delivered: the kill came too late to test anything"

    procs.gateway(port, config)
    wait_until(lambda: get_json(f"{sim}/stats")["received"] >= len(accepted), 60, "every accepted message")
    stats = get_json(f"{sim}/stats")
    assert stats["received"] == len(accepted)
    for to in accepted:
        inbox = get_json(f"{sim}/inbox?to={quote(to)}")
        assert len(inbox) == 1, f"{len(inbox)} messages for one accepted OTP"
