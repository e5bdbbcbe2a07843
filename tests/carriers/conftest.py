"""Fixtures for the SMPP tests: the independent node-smpp SMSC (tests/peers/smsc.js) and our sim SMSC.

``node_smsc(mode=..., receipt=...)`` starts ``node tests/peers/smsc.js --port 0`` (the SMSC picks a
free port and prints it), installs the pinned npm package first when node_modules is missing
(``npm ci --prefix tests/peers``), and stops every process it started, by PID, at teardown. The peer
reports what it saw as JSON lines; :meth:`NodeSmsc.wait_for` waits for one without sleeping blindly.
``await sim_smsc(**options)`` runs our own sim SMSC on the test's event loop.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import pytest

from carriers.sim.smpp_server import SmppSim, SmppSimOptions
from tests.carriers.smpp_peers import NodeSmsc, Receipts, RunningSim, SimInbox, start_node_smsc


@pytest.fixture
def node_smsc() -> Iterator[Callable[..., NodeSmsc]]:
    started: list[NodeSmsc] = []

    def start(mode: str = "normal", receipt: str = "tlv", *extra: str) -> NodeSmsc:
        peer = start_node_smsc("--mode", mode, "--receipt", receipt, *extra)
        started.append(peer)
        return peer

    yield start
    for peer in started:
        peer.stop()


@pytest.fixture
def receipts() -> Receipts:
    return Receipts()


@pytest.fixture
async def sim_smsc() -> AsyncIterator[Callable[..., Awaitable[RunningSim]]]:
    """``await sim_smsc(**SmppSimOptions fields)`` → a RunningSim on 127.0.0.1, closed at teardown."""
    running: list[SmppSim] = []

    async def start(**options: Any) -> RunningSim:
        inbox = SimInbox()
        sim = SmppSim(inbox, SmppSimOptions(**{"seed": 7, "receipt_delay_ms": 5.0, **options}))
        server = await sim.start("127.0.0.1", 0)
        running.append(sim)
        return RunningSim(sim, inbox, server.sockets[0].getsockname()[1])

    yield start
    for sim in running:
        await sim.close()
