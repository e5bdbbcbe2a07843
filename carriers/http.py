"""HTTP carrier adapter: one JSON POST per message, receipts posted back to the gateway.

Wire format (the sim-carrier's, and the shape most HTTP aggregators share):
``POST {url}`` ``{"from", "to", "text", "dlr_url", "ref"}`` → ``{"id"}``; receipts arrive as
``{"id", "status": "delivered"|"failed"|"expired"|"enroute", "err"?}`` (one, or an array) and are handed to
:meth:`HttpCarrier.handle_receipt` by the gateway's receipt endpoint. ``ref`` is our message id: the
carrier de-duplicates on it, so a resubmission after a crash reaches the phone once.
"""

from __future__ import annotations

import logging
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


class HttpCarrier:
    def __init__(
        self,
        name: str,
        url: str,
        session: aiohttp.ClientSession,
        *,
        timeout: float = 10.0,
        segment_counter: Any = None,
    ) -> None:
        self.name = name
        self.url = url
        self._session = session
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._on_receipt: ReceiptCallback | None = None
        self._up = True
        self._count_segments = segment_counter or (lambda text: 1)

    async def start(self, on_receipt: ReceiptCallback) -> None:
        self._on_receipt = on_receipt

    def is_up(self) -> bool:
        return self._up

    async def submit(self, sub: Submission) -> SubmitResult:
        body = {"from": sub.sender, "to": sub.to, "text": sub.text, "ref": sub.ref}
        if sub.dlr_url:
            body["dlr_url"] = sub.dlr_url
        segments = int(self._count_segments(sub.text))
        try:
            async with self._session.post(self.url, json=body, timeout=self._timeout) as resp:
                if resp.status == 429:
                    return SubmitResult(
                        SubmitOutcome.THROTTLED, error_code="http_429", reason="carrier throttled"
                    )
                if resp.status >= 500:
                    self._up = resp.status != 503
                    return SubmitResult(
                        SubmitOutcome.TEMPORARY,
                        error_code=f"http_{resp.status}",
                        reason="carrier server error",
                    )
                if resp.status >= 400:
                    return SubmitResult(
                        SubmitOutcome.PERMANENT,
                        error_code=f"http_{resp.status}",
                        reason=(await resp.text())[:200],
                    )
                data = await resp.json(content_type=None)
        except (TimeoutError, aiohttp.ClientError, ValueError) as e:
            self._up = False
            return SubmitResult(SubmitOutcome.TEMPORARY, error_code="http_transport", reason=type(e).__name__)
        self._up = True
        cmid = data.get("id") if isinstance(data, dict) else None
        if not isinstance(cmid, str) or not cmid:
            return SubmitResult(
                SubmitOutcome.TEMPORARY, error_code="http_bad_answer", reason="no id in answer"
            )
        return SubmitResult(SubmitOutcome.ACCEPTED, carrier_message_id=cmid, segments=segments)

    async def handle_receipt(self, payload: Any) -> int:
        """Parse posted receipts (one object or an array of them) and pass each on; returns how many
        were well-formed."""
        items = payload if isinstance(payload, list) else [payload]
        ok = 0
        for item in items:
            if not isinstance(item, dict) or self._on_receipt is None:
                continue
            cmid, status = item.get("id"), _STATUS.get(str(item.get("status", "")))
            if not isinstance(cmid, str) or status is None:
                continue
            err = item.get("err")
            await self._on_receipt(self.name, DeliveryReceipt(cmid, status, str(err) if err else None))
            ok += 1
        return ok

    async def close(self) -> None:
        return None
