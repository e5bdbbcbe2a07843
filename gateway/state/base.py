"""The state backend interface and its key names (kept together, as arq does)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

KEY_PREFIX = "smsgw:"


# The part in braces is the Redis Cluster hash tag: a number's cooldown and hourly window, which one
# script reads together, always land in the same slot.
def cooldown_key(tenant_id: str, phone_hmac_hex: str) -> str:
    return f"{KEY_PREFIX}cd:{{{tenant_id}:{phone_hmac_hex}}}"


def number_window_key(tenant_id: str, phone_hmac_hex: str) -> str:
    return f"{KEY_PREFIX}nh:{{{tenant_id}:{phone_hmac_hex}}}"


def attempts_key(otp_id: str) -> str:
    return f"{KEY_PREFIX}va:{otp_id}"


class StateUnavailable(Exception):
    """The shared state cannot be reached for an operation that must not fall back to process-local
    state. Verify attempts are one: a per-process counter would give an attacker ``max_attempts``
    guesses per gateway process, so the limit would loosen with every process added. The API answers
    ``503 unavailable`` with ``Retry-After: retry_after`` (whole seconds)."""

    def __init__(self, operation: str, retry_after: float) -> None:
        super().__init__(f"shared state unavailable for {operation}")
        self.operation = operation
        self.retry_after = retry_after


@dataclass(frozen=True, slots=True)
class GateResult:
    allowed: bool
    retry_after: float = 0.0  # seconds
    reason: str = ""  # "" | "cooldown" | "number_hourly"


class StateBackend(Protocol):
    async def send_gate(
        self, tenant_id: str, phone_key: str, *, cooldown: float, hourly_limit: int, now: float, member: str
    ) -> GateResult:
        """Atomically: refuse while the number's resend cooldown runs or its hourly count is reached;
        otherwise count this send (``member`` identifies it) and start the cooldown."""
        ...

    async def release_gate(
        self, tenant_id: str, phone_key: str, *, cooldown: float, now: float, member: str
    ) -> None:
        """Undo the ``send_gate`` that let ``member`` through at ``now``, because the send was not
        accepted after all (its durable write failed): drop it from the hourly window and end the
        cooldown it started, unless a later send has started another since. A retry of the same request
        then goes through instead of being told to wait."""
        ...

    async def verify_attempt(self, otp_id: str, *, ttl: float) -> int:
        """Count one verify attempt for the OTP and return how many there have been (1-based).

        Raises :class:`StateUnavailable` when the count cannot be kept where every gateway process
        sees it (never a count that only this process knows)."""
        ...

    async def forget(self, tenant_id: str, phone_key: str) -> int:
        """Erase the number's resend cooldown and hourly window for the tenant (a data subject's
        erasure); returns how many keys went."""
        ...

    async def ping(self) -> bool: ...

    async def close(self) -> None: ...
