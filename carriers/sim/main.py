"""Runs the sim-carrier: HTTP side (and the SMPP side when its port is not 0) sharing one inbox."""

from __future__ import annotations

import asyncio
import logging
import signal
from dataclasses import dataclass

from aiohttp import web

from carriers.sim.http_server import Inbox, SimHttp, SimOptions
from carriers.sim.smpp_server import SmppSim, SmppSimOptions

log = logging.getLogger("smsgw.sim")


@dataclass(frozen=True)
class SimCarrierOptions:
    host: str = "127.0.0.1"
    http_port: int = 8025
    smpp_port: int = 2775
    latency_ms: float = 0.0
    failure_rate: float = 0.0
    throttle_rate: float = 0.0
    receipt_rate: float = 1.0
    receipt_delay_ms: float = 50.0
    undeliverable_rate: float = 0.0
    seed: int | None = None


async def run_sim_carrier(opts: SimCarrierOptions, stop: asyncio.Event | None = None) -> None:
    inbox = Inbox()
    sim = SimHttp(
        inbox,
        SimOptions(
            latency_ms=opts.latency_ms,
            failure_rate=opts.failure_rate,
            receipt_rate=opts.receipt_rate,
            receipt_delay_ms=opts.receipt_delay_ms,
            undeliverable_rate=opts.undeliverable_rate,
            seed=opts.seed,
        ),
    )
    runner = web.AppRunner(sim.app(), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, opts.host, opts.http_port).start()
    smpp: SmppSim | None = None
    if opts.smpp_port:
        smpp = SmppSim(
            lambda sender, to, text: inbox.add(sender, to, text)[0],
            SmppSimOptions(
                latency_ms=opts.latency_ms,
                failure_rate=opts.failure_rate,
                throttle_rate=opts.throttle_rate,
                receipt_rate=opts.receipt_rate,
                receipt_delay_ms=opts.receipt_delay_ms,
                undeliverable_rate=opts.undeliverable_rate,
                seed=opts.seed,
            ),
        )
        await smpp.start(opts.host, opts.smpp_port)
    log.info("sim-carrier listening", extra={"http_port": opts.http_port, "smpp_port": opts.smpp_port})
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        if smpp is not None:
            await smpp.close()
        await runner.cleanup()
