"""Three gateway processes on one PostgreSQL and one Redis under load; one is killed with SIGKILL and
started again: every accepted message reaches the carrier exactly once (the claims of the dead process
are taken over by the others once their lease runs out, and no message is claimed twice)."""

from __future__ import annotations

import asyncio
import signal
import time
from pathlib import Path
from urllib.parse import quote

import aiohttp

from tests.conftest import free_port
from tests.e2e.procs import Procs, get_json, sim_config, spread, wait_until

DISPATCH = "[dispatch]\nworkers = 2\nclaim_lease_seconds = 1.0\nsweep_interval_seconds = 0.2\n"


async def _load(
    ports: list[int], key: str, numbers: list[str], kill_after: int, kill: object
) -> tuple[list[str], list[str]]:
    """Send ``numbers`` round-robin to the gateways, 8 at a time; after ``kill_after`` sends, call
    ``kill``. Returns the numbers whose request got a 202, and those that got no answer at all."""
    accepted: list[str] = []
    unanswered: list[str] = []
    sem = asyncio.Semaphore(8)
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {key}"}) as s:

        async def one(i: int, to: str) -> None:
            async with sem:
                if i == kill_after:
                    kill()  # type: ignore[operator]
                try:
                    async with s.post(f"http://127.0.0.1:{ports[i % 3]}/v1/otp", json={"to": to}) as r:
                        if r.status == 202:
                            accepted.append(to)
                except aiohttp.ClientError:
                    unanswered.append(to)  # the killed process: committed or not, the client can't tell

        await asyncio.gather(*(one(i, to) for i, to in enumerate(numbers)))
    return accepted, unanswered


def test_three_processes_one_killed_every_accepted_message_once(
    tmp_path: Path, redis_url: str, pg_url: str
) -> None:
    procs = Procs(tmp_path, env={"REDIS_URL": redis_url, "SMSGW_DATABASE_URL": pg_url})
    try:
        sim_port = procs.sim_carrier("--latency-ms", "60")
        sim = f"http://127.0.0.1:{sim_port}"
        ports = [free_port() for _ in range(3)]
        gws = [procs.gateway(p, sim_config(p, sim_port, sections=DISPATCH)) for p in ports]
        key = procs.tenant()
        numbers = [spread(n) for n in range(240)]
        victim = gws[1]

        def kill() -> None:
            victim.send_signal(signal.SIGKILL)

        accepted, unanswered = asyncio.run(_load(ports, key, numbers, 150, kill))
        victim.wait(10)
        assert len(accepted) >= 200, len(accepted)
        # 3 processes x 2 submissions in flight x 60 ms: much was still waiting when the victim died
        before = get_json(f"{sim}/stats")["received"]
        assert before < len(accepted) - 20, f"{before} of {len(accepted)} delivered: the kill came too late"
        # the survivors take over the dead process's claims once their lease (1 s) runs out
        wait_until(lambda: get_json(f"{sim}/stats")["received"] >= len(accepted), 60, "every message")
        # and the restarted process finds nothing left to send
        procs.gateway(ports[1], sim_config(ports[1], sim_port, sections=DISPATCH))
        time.sleep(1.5)
        for to in accepted:
            assert len(get_json(f"{sim}/inbox?to={quote(to)}")) == 1, "one accepted OTP, one SMS"
        stats = get_json(f"{sim}/stats")
        # beyond the accepted, only requests whose answer the kill swallowed may have been delivered
        assert len(accepted) <= stats["received"] <= len(accepted) + len(unanswered), stats
        for to in unanswered:
            assert len(get_json(f"{sim}/inbox?to={quote(to)}")) <= 1
        # a resubmission is possible only for what the dead process had in flight at the carrier (its
        # 2 dispatch workers): the carrier de-duplicates it by our message id
        assert stats["duplicates"] <= 2, stats
    finally:
        procs.stop_all()
