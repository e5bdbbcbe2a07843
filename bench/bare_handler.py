"""The ceiling for bench/otp_throughput.py: a bare aiohttp handler that reads the body and answers 202."""

from __future__ import annotations

import sys

from aiohttp import web


async def handle(request: web.Request) -> web.Response:
    await request.read()
    return web.json_response({"id": "otp_0", "status": "pending"}, status=202)


def main() -> None:
    app = web.Application()
    app.router.add_post("/v1/otp", handle)
    web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), print=None, access_log=None)


if __name__ == "__main__":
    main()
