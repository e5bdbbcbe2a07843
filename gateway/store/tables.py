"""What both engines' schemas share: the columns of the records, the sealed columns and the retention
jobs. Each engine writes its own SQL around these (placeholders, row ids, types); the decisions (which
column holds what, which rows a retention class removes) live only here."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any

from gateway.store.records import MessageRecord, OtpRecord

if TYPE_CHECKING:
    from gateway.store.base import RetentionPolicy

MSG_COLS = [f.name for f in fields(MessageRecord)]
OTP_COLS = [f.name for f in fields(OtpRecord) if f.name != "route"]


def message_from(row: Sequence[Any]) -> MessageRecord:
    """A message from a row whose first columns are ``MSG_COLS`` in order."""
    return MessageRecord(*[row[i] for i in range(len(MSG_COLS))])


# (table, column, SQL giving the value's AEAD label): every sealed value, for key rotation
SEALED: tuple[tuple[str, str, str], ...] = (
    ("otps", "phone_enc", "'phone'"),
    ("messages", "phone_enc", "'phone'"),
    ("messages", "payload_enc", "CASE WHEN kind = 'otp' THEN 'otp_code' ELSE 'body' END"),
    ("residency_copies", "phone_enc", "'phone'"),
    ("links", "url_enc", "'link_url'"),
    ("sender_documents", "content_enc", "'document'"),
    ("tenant_webhooks", "secret_enc", "'webhook_secret'"),
)

PURGE_BATCH = 500  # rows per retention transaction, so the API never waits long behind a purge


@dataclass(frozen=True)
class PurgeJob:
    """One retention class: rows of ``table`` matching ``where`` (``{cutoff}`` stands for the placeholder
    of ``now - ttl``) are deleted, or with ``strip`` updated by that SET clause; ``order`` picks which go
    first (the audit chain is cut only at its start)."""

    name: str  # key in the purge report
    ttl: str  # the RetentionPolicy field giving the time to live
    table: str
    where: str
    strip: str = ""
    order: str = ""

    def condition(self, cutoff: str) -> str:
        return self.where.format(cutoff=cutoff)


PURGE_JOBS: tuple[PurgeJob, ...] = (
    PurgeJob("otps", "otps", "otps", "created_at < {cutoff}"),
    PurgeJob(
        "message_bodies",
        "message_bodies",
        "messages",
        "created_at < {cutoff} AND payload_enc IS NOT NULL AND status NOT IN ('queued', 'sending')",
        strip="payload_enc = NULL",
    ),
    PurgeJob(
        "receipts",
        "receipts",
        "messages",
        "updated_at < {cutoff} AND carrier_message_id IS NOT NULL "
        "AND status IN ('delivered', 'failed', 'expired')",
        strip="carrier_message_id = NULL, error_reason = NULL",
    ),
    PurgeJob(
        "messages", "messages", "messages", "created_at < {cutoff} AND status NOT IN ('queued', 'sending')"
    ),
    PurgeJob("events", "events", "events", "at < {cutoff}"),
    PurgeJob("audit", "audit", "audit", "at < {cutoff}", order="ORDER BY seq"),
    PurgeJob("privacy_requests", "privacy_requests", "privacy_requests", "received_at < {cutoff}"),
    PurgeJob("links", "messages", "links", "created_at < {cutoff}"),
    PurgeJob("webhook_outbox", "receipts", "webhook_outbox", "created_at < {cutoff}"),
    PurgeJob("copies", "messages", "residency_copies", "created_at < {cutoff}"),
)


async def purge_in_batches(
    policy: RetentionPolicy, now: float, one_batch: Callable[[PurgeJob, float], Awaitable[int]]
) -> dict[str, int]:
    """Every job whose class has a time to live, ``one_batch(job, cutoff)`` (one transaction of at most
    ``PURGE_BATCH`` rows, returning how many) repeated until a batch comes back short; rows per class."""
    report: dict[str, int] = {}
    for job in PURGE_JOBS:
        ttl = float(getattr(policy, job.ttl))
        total = 0
        if ttl > 0:
            while True:
                n = max(await one_batch(job, now - ttl), 0)
                total += n
                if n < PURGE_BATCH:
                    break
        report[job.name] = total
    return report
