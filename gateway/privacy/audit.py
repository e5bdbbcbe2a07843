"""The audit log's hash chain: each record's MAC covers its content and the previous record's MAC.

Keyed (HMAC-SHA256 with a key derived from the master key), so someone who can edit the database
file but does not hold the master key cannot forge a consistent chain. Verification reports the first
record whose content or link does not match. Purging old records (retention) cuts the chain at its
start: the first remaining record's ``prev`` is then the trusted anchor.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

GENESIS = b"\x00" * 32


@dataclass(frozen=True, slots=True)
class AuditRecord:
    seq: int
    at: float
    actor: str
    tenant_id: str
    action: str
    target: str
    details: str  # canonical JSON
    prev: bytes
    mac: bytes


def canonical(details: dict[str, Any]) -> str:
    return json.dumps(details, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def record_mac(
    key: bytes,
    prev: bytes,
    seq: int,
    at: float,
    actor: str,
    tenant_id: str,
    action: str,
    target: str,
    details: str,
) -> bytes:
    body = json.dumps([seq, repr(at), actor, tenant_id, action, target, details], ensure_ascii=False)
    return hmac.new(key, prev + body.encode(), hashlib.sha256).digest()


@dataclass(frozen=True, slots=True)
class Verdict:
    ok: bool
    checked: int
    first_bad: int | None = None
    reason: str = ""


def verify_chain(key: bytes, records: Iterable[AuditRecord]) -> Verdict:
    prev: bytes | None = None
    n = 0
    for r in records:
        n += 1
        if prev is not None and r.prev != prev:
            return Verdict(
                False, n, r.seq, "link to the previous record is broken (a record removed or reordered)"
            )
        expected = record_mac(key, r.prev, r.seq, r.at, r.actor, r.tenant_id, r.action, r.target, r.details)
        if not hmac.compare_digest(expected, r.mac):
            return Verdict(False, n, r.seq, "content does not match its MAC (the record was edited)")
        prev = r.mac
    return Verdict(True, n)
