"""The ceiling for bench/otp_throughput.py: a bare aiohttp handler that reads the body and answers 202,
on the same event loop as ``smsgw serve`` (uvloop when installed), so the ratio measures our code."""

from __future__ import annotations

import sys

from aiohttp import web

from gateway.cli import event_loop


async def handle(request: web.Request) -> web.Response:
    await request.read()
    return web.json_response({"id": "otp_0", "status": "pending"}, status=202)


def main() -> None:
    app = web.Application()
    app.router.add_route("POST", "/{tail:.*}", handle)
    web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), print=None, access_log=None, loop=event_loop())


if __name__ == "__main__":
    main()
