"""The carrier seam: what the gateway hands a carrier and what it gets back.

Every way of reaching a phone (HTTP aggregator, SMPP 3.4 bind, the development sim-carrier) implements
:class:`Carrier`. Implementations take plain values in and report plain values out; they never import
``gateway``. Delivery receipts arrive asynchronously and are handed to the ``on_receipt`` callback the
gateway registers, keyed by the carrier's own message id.
"""

from __future__ import annotations

import enum
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable


@dataclass(frozen=True, slots=True)
class Submission:
    """One SMS to hand to a carrier. ``ref`` is the gateway's message id: carriers that support a
    client reference use it to de-duplicate a resubmission after a crash."""

    ref: str
    sender: str
    to: str  # E.164 with leading "+"
    text: str
    dlr_url: str | None = None


class SubmitOutcome(enum.Enum):
    ACCEPTED = "accepted"
    THROTTLED = "throttled"  # try again later (same or another route)
    TEMPORARY = "temporary"  # transient failure: another route may succeed
    PERMANENT = "permanent"  # the message itself is refused (bad number, bad sender...)


@dataclass(frozen=True, slots=True)
class SubmitResult:
    outcome: SubmitOutcome
    carrier_message_id: str | None = None
    segments: int = 1
    error_code: str | None = None
    reason: str = ""
    maybe_accepted: bool = False  # the answer was lost (timeout, connection dropped after sending):
    # the carrier may hold the message, so it is never resubmitted to this route


class ReceiptStatus(enum.Enum):
    DELIVERED = "delivered"
    FAILED = "failed"
    EXPIRED = "expired"
    ENROUTE = "enroute"  # intermediate, not final


@dataclass(frozen=True, slots=True)
class DeliveryReceipt:
    carrier_message_id: str
    status: ReceiptStatus
    error_code: str | None = None
    raw: dict[str, str] = field(default_factory=dict)


ReceiptCallback = Callable[[str, DeliveryReceipt], Awaitable[None]]
"""Called with (carrier name, receipt)."""


class CarrierError(Exception):
    """Root of carrier errors; raised only for programming/config faults, never for submit outcomes."""


@runtime_checkable
class Carrier(Protocol):
    name: str

    async def start(self, on_receipt: ReceiptCallback) -> None:
        """Open connections (binds, HTTP session) and start delivering receipts to ``on_receipt``."""

    async def submit(self, sub: Submission) -> SubmitResult:
        """Hand one message over. Never raises for network faults: returns a non-ACCEPTED outcome."""

    def is_up(self) -> bool:
        """True while the carrier can take submissions (bound, not circuit-broken at transport level)."""

    async def close(self) -> None:
        """Drain what is outstanding within a short grace period, then close."""
