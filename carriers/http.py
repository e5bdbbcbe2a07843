"""HTTP carrier adapter: JSON POSTs, receipts posted back to the gateway.

Wire format (the sim-carrier's, and the shape most HTTP aggregators share):
``POST {url}`` ``{"from", "to", "text", "dlr_url", "ref"}`` → ``{"id"}``, or, with ``batch_max`` > 1,
an array of such objects → an array of ``{"id"}`` / ``{"error", "status"}`` in the same order (bulk
submission: under load one request carries many messages). Receipts arrive as
``{"id", "status": "delivered"|"failed"|"expired"|"enroute", "err"?}`` (one, or an array) and are
handed to :meth:`HttpCarrier.handle_receipt` by the gateway's receipt endpoint. ``ref`` is our message
id: the carrier de-duplicates on it, so a resubmission after a crash reaches the phone once.

A transport failure or a 503 takes the carrier down for ``down_for`` seconds; after that it is up
again and the next submission probes it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp

from carriers.base import (
    DeliveryReceipt,
    ReceiptCallback,
    ReceiptStatus,
    Submission,
    SubmitOutcome,
    SubmitResult,
)

log = logging.getLogger("smsgw.carriers.http")

_STATUS = {s.value: s for s in ReceiptStatus}


def _outcome_for_status(status: int, text: str) -> SubmitResult:
    if status == 429:
        return SubmitResult(SubmitOutcome.THROTTLED, error_code="http_429", reason="carrier throttled")
    if status >= 500:
        return SubmitResult(
            SubmitOutcome.TEMPORARY, error_code=f"http_{status}", reason="carrier server error"
        )
    return SubmitResult(SubmitOutcome.PERMANENT, error_code=f"http_{status}", reason=text[:200])


class HttpCarrier:
    def __init__(
        self,
        name: str,
        url: str,
        session: aiohttp.ClientSession,
        *,
        timeout: float = 10.0,
        batch_max: int = 1,
        down_for: float = 5.0,
        segment_counter: Callable[[str], int] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.name = name
        self.url = url
        self._session = session
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._on_receipt: ReceiptCallback | None = None
        self._batch_max = batch_max
        self._down_for = down_for
        self._down_until = 0.0
        self._clock = clock
        self._count_segments: Callable[[str], int] = segment_counter or (lambda text: 1)
        self._pending: list[tuple[dict[str, str], asyncio.Future[SubmitResult]]] = []
        self._flushing = False
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self, on_receipt: ReceiptCallback) -> None:
        self._on_receipt = on_receipt

    def is_up(self) -> bool:
        return self._clock() >= self._down_until

    def _mark(self, ok: bool) -> None:
        if ok:
            self._down_until = 0.0
        elif self._down_until <= self._clock():
            log.warning("carrier down", extra={"carrier": self.name, "for_s": self._down_for})
            self._down_until = self._clock() + self._down_for

    @staticmethod
    def _body(sub: Submission) -> dict[str, str]:
        body = {"from": sub.sender, "to": sub.to, "text": sub.text, "ref": sub.ref}
        if sub.dlr_url:
            body["dlr_url"] = sub.dlr_url
        return body

    async def submit(self, sub: Submission) -> SubmitResult:
        segments = int(self._count_segments(sub.text))
        if self._batch_max <= 1:
            res = await self._post_one(self._body(sub))
        else:
            fut: asyncio.Future[SubmitResult] = asyncio.get_running_loop().create_future()
            self._pending.append((self._body(sub), fut))
            if not self._flushing:
                self._flushing = True
                asyncio.get_running_loop().call_soon(self._flush)
            res = await fut
        if res.outcome is SubmitOutcome.ACCEPTED:
            return SubmitResult(
                SubmitOutcome.ACCEPTED, carrier_message_id=res.carrier_message_id, segments=segments
            )
        return res

    async def _post_one(self, body: dict[str, str]) -> SubmitResult:
        try:
            async with self._session.post(self.url, json=body, timeout=self._timeout) as resp:
                if resp.status >= 400:
                    self._mark(resp.status not in (502, 503, 504))
                    return _outcome_for_status(resp.status, await resp.text())
                data = await resp.json(content_type=None)
        except (TimeoutError, aiohttp.ClientError, ValueError) as e:
            self._mark(False)
            return SubmitResult(
                SubmitOutcome.TEMPORARY,
                error_code="http_transport",
                reason=type(e).__name__,
                maybe_accepted=not isinstance(e, aiohttp.ClientConnectorError),
            )
        self._mark(True)
        return self._accepted(data)

    @staticmethod
    def _accepted(data: Any) -> SubmitResult:
        cmid = data.get("id") if isinstance(data, dict) else None
        if not isinstance(cmid, str) or not cmid:
            err = data.get("status") if isinstance(data, dict) else None
            if isinstance(err, int) and err >= 400:
                return _outcome_for_status(err, str(data.get("error", "")))
            return SubmitResult(
                SubmitOutcome.TEMPORARY, error_code="http_bad_answer", reason="no id in answer"
            )
        return SubmitResult(SubmitOutcome.ACCEPTED, carrier_message_id=cmid)

    def _flush(self) -> None:
        """Send what is pending as bulk requests of at most ``batch_max`` messages each."""
        self._flushing = False
        while self._pending:
            batch = self._pending[: self._batch_max]
            del self._pending[: self._batch_max]
            task = asyncio.get_running_loop().create_task(self._post_batch(batch))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _post_batch(self, batch: list[tuple[dict[str, str], asyncio.Future[SubmitResult]]]) -> None:
        results: list[SubmitResult]
        try:
            async with self._session.post(
                self.url, json=[b for b, _ in batch], timeout=self._timeout
            ) as resp:
                if resp.status >= 400:
                    self._mark(resp.status not in (502, 503, 504))
                    results = [_outcome_for_status(resp.status, await resp.text())] * len(batch)
                else:
                    data = await resp.json(content_type=None)
                    if not isinstance(data, list) or len(data) != len(batch):
                        raise ValueError("bulk answer does not match the request")
                    self._mark(True)
                    results = [self._accepted(d) for d in data]
        except (TimeoutError, aiohttp.ClientError, ValueError) as e:
            self._mark(False)
            lost = SubmitResult(
                SubmitOutcome.TEMPORARY,
                error_code="http_transport",
                reason=type(e).__name__,
                maybe_accepted=not isinstance(e, aiohttp.ClientConnectorError),
            )
            results = [lost] * len(batch)
        for (_, fut), res in zip(batch, results, strict=True):
            if not fut.done():
                fut.set_result(res)

    async def handle_receipt(self, payload: Any) -> int:
        """Parse posted receipts (one object or an array of them) and pass each on, all at once (the
        gateway applies those that arrive together in one write); returns how many were well-formed,
        once every one was taken."""
        items = payload if isinstance(payload, list) else [payload]
        taken: list[Awaitable[None]] = []
        for item in items:
            if not isinstance(item, dict) or self._on_receipt is None:
                continue
            cmid, status = item.get("id"), _STATUS.get(str(item.get("status", "")))
            if not isinstance(cmid, str) or status is None:
                continue
            err = item.get("err")
            taken.append(
                self._on_receipt(self.name, DeliveryReceipt(cmid, status, str(err) if err else None))
            )
        if taken:
            await asyncio.gather(*taken)
        return len(taken)

    async def close(self) -> None:
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=5)
