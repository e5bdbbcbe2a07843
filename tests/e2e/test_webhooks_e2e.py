"""Status callbacks survive a SIGKILL: the tenant's webhook is down while messages go out, the gateway is
killed, the receiver comes back, the gateway restarts, and every pending callback arrives (its
``event_id`` unchanged), taken over from the outbox once the dead process's lease ran out."""

from __future__ import annotations

import json
import signal
import sqlite3
import threading
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from tests.conftest import free_port
from tests.e2e.procs import Procs, sim_config, spread, wait_until


@contextmanager
def receiver(port: int) -> Iterator[list[dict[str, Any]]]:
    """A tenant's webhook endpoint on ``port``: records every callback body, answers 200."""
    got: list[dict[str, Any]] = []

    class Hook(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            got.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            return None

    server = ThreadingHTTPServer(("127.0.0.1", port), Hook)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield got
    finally:
        server.shutdown()
        server.server_close()


def call(method: str, url: str, key: str, body: dict[str, Any]) -> tuple[int, Any]:
    req = urllib.request.Request(
        url,
        method=method,
        data=json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=10) as r:
        return r.status, json.loads(r.read())


def pending(procs: Procs) -> list[str]:
    with sqlite3.connect(procs.workdir / "smsgw.db") as db:
        return [str(r[0]) for r in db.execute("SELECT event_id FROM webhook_outbox")]


def test_callbacks_pending_at_a_sigkill_are_delivered_after_the_restart(procs: Procs) -> None:
    sim_port = procs.sim_carrier("--receipt-rate", "0")  # one status change per message: submitted
    port, hook_port = free_port(), free_port()
    hooks = (
        "[webhooks]\nallow_private_hosts = true\nbackoff_seconds = 0.2\nmax_backoff_seconds = 0.5\n"
        "max_attempts = 20\nclaim_lease_seconds = 2\nsweep_seconds = 0.2\ntimeout_seconds = 1\n"
    )
    config = sim_config(port, sim_port, sections=hooks)
    gw = procs.gateway(port, config)
    base = f"http://127.0.0.1:{port}"
    key = procs.tenant(scopes="send,admin")
    st, _ = call(
        "PUT", f"{base}/v1/webhook", key, {"url": f"http://127.0.0.1:{hook_port}/hook", "secret": "s" * 24}
    )
    assert st == 200
    sent = []
    for n in range(5):
        st, body = call(
            "POST", f"{base}/v1/messages", key, {"to": spread(n), "sender_id": "ACME", "body": "Hi"}
        )
        assert st == 202
        sent.append(body["id"])
    # the receiver is down: the callbacks wait in the outbox, retried
    wait_until(lambda: len(pending(procs)) == len(sent), 20, "a pending callback per message")
    before = set(pending(procs))
    gw.send_signal(signal.SIGKILL)
    gw.wait(10)
    assert set(pending(procs)) == before  # nothing lost with the process

    with receiver(hook_port) as got:
        procs.gateway(port, config)
        wait_until(lambda: {e["message_id"] for e in got} >= set(sent), 30, "every pending callback")
        wait_until(lambda: not pending(procs), 10, "the outbox emptied")
        assert {e["event_id"] for e in got} == before  # the same events, not new ones
        assert all(e["status"] == "submitted" and e["attempt"] > 1 for e in got)
