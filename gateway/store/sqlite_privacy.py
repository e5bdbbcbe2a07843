"""Audit chain, data-subject requests, consent, conversion events, residency copies and retention
on SQLite."""

from __future__ import annotations

import sqlite3
from typing import Any

from gateway.privacy.audit import GENESIS, AuditRecord, canonical, record_mac
from gateway.store.base import RetentionPolicy
from gateway.store.sqlite import SqliteEngine
from gateway.store.tables import MSG_COLS, OTP_COLS, PURGE_BATCH, PurgeJob, message_from, purge_in_batches

__all__ = ["PURGE_BATCH", "PrivacyMixin", "RetentionPolicy"]


class PrivacyMixin(SqliteEngine):
    # ------------------------------------------------------------------ audit
    async def append_audit(
        self, *, at: float, actor: str, tenant_id: str, action: str, target: str, details: dict[str, Any]
    ) -> int:
        key = self.keyring.audit_key
        body = canonical(details)

        def append(db: sqlite3.Connection) -> int:
            row = db.execute("SELECT seq, mac FROM audit ORDER BY seq DESC LIMIT 1").fetchone()
            seq, prev = (row[0] + 1, row[1]) if row else (1, GENESIS)
            mac = record_mac(key, prev, seq, at, actor, tenant_id, action, target, body)
            db.execute(
                "INSERT INTO audit(seq, at, actor, tenant_id, action, target, details, prev, mac) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (seq, at, actor, tenant_id, action, target, body, prev, mac),
            )
            return int(seq)

        assert self.writer is not None
        seq: int = await self.writer.run_fn(append)
        return seq

    async def audit_records(
        self, tenant_id: str | None = None, limit: int = 0, target: str | None = None
    ) -> list[AuditRecord]:
        sql = "SELECT seq, at, actor, tenant_id, action, target, details, prev, mac FROM audit"
        params: tuple[Any, ...] = ()
        if tenant_id is not None:
            sql += " WHERE tenant_id = ?"
            params = (tenant_id,)
            if target is not None:
                sql += " AND target = ?"
                params = (tenant_id, target)
        sql += " ORDER BY seq"
        if limit:
            newest = sql.replace(" ORDER BY seq", " ORDER BY seq DESC")
            sql = f"SELECT * FROM ({newest} LIMIT {int(limit)}) ORDER BY seq"
        rows = await self._read_all(sql, params)
        return [AuditRecord(*tuple(r)) for r in rows]

    # ------------------------------------------------------------------ data-subject requests

    async def privacy_requests(self, tenant_id: str) -> list[dict[str, Any]]:
        rows = await self._read_all(
            "SELECT id, kind, subject_masked, received_at, due_at, completed_at, result "
            "FROM privacy_requests WHERE tenant_id = ? ORDER BY received_at DESC LIMIT 500",
            (tenant_id,),
        )
        return [
            dict(
                zip(
                    ("id", "kind", "subject", "received_at", "due_at", "completed_at", "result"),
                    r,
                    strict=True,
                )
            )
            for r in rows
        ]

    async def subject_data(self, tenant_id: str, phone_hmac: bytes) -> dict[str, list[Any]]:
        """Every row about one number within one tenant (sealed values still sealed)."""
        key = (tenant_id, phone_hmac)
        otps = await self._read_all(
            f"SELECT {', '.join(OTP_COLS)} FROM otps WHERE tenant_id = ? AND phone_hmac = ?", key
        )
        msgs = await self._read_all(
            f"SELECT {', '.join(MSG_COLS)} FROM messages WHERE tenant_id = ? AND phone_hmac = ?", key
        )
        events = await self._read_all(
            "SELECT id, message_id, otp_id, event, country, route, at FROM events "
            "WHERE tenant_id = ? AND phone_hmac = ?",
            key,
        )
        consent = await self._read_all(
            "SELECT status, source, updated_at FROM consent WHERE tenant_id = ? AND phone_hmac = ?", key
        )
        copies = await self._read_all(
            "SELECT id, kind, region, country, created_at FROM residency_copies "
            "WHERE tenant_id = ? AND phone_hmac = ?",
            key,
        )
        return {
            "otps": [dict(zip(OTP_COLS, r, strict=True)) for r in otps],
            "messages": [message_from(r) for r in msgs],
            "events": [
                dict(zip(("id", "message_id", "otp_id", "event", "country", "route", "at"), r, strict=True))
                for r in events
            ],
            "consent": [dict(zip(("status", "source", "updated_at"), r, strict=True)) for r in consent],
            "copies": [
                dict(zip(("id", "kind", "region", "country", "created_at"), r, strict=True)) for r in copies
            ],
        }

    async def erase_subject(self, tenant_id: str, phone_hmac: bytes, now: float) -> dict[str, int]:
        """Delete one number's rows within one tenant, in one transaction. An opt-out survives as a
        suppression entry (HMAC only, no number) so marketing cannot resume after erasure."""

        def erase(db: sqlite3.Connection) -> dict[str, int]:
            key = (tenant_id, phone_hmac)
            counts = {
                "events": db.execute(
                    "DELETE FROM events WHERE tenant_id = ? AND phone_hmac = ?", key
                ).rowcount,
                "otps": db.execute("DELETE FROM otps WHERE tenant_id = ? AND phone_hmac = ?", key).rowcount,
                "messages": db.execute(
                    "DELETE FROM messages WHERE tenant_id = ? AND phone_hmac = ?", key
                ).rowcount,
                "copies": db.execute(
                    "DELETE FROM residency_copies WHERE tenant_id = ? AND phone_hmac = ?", key
                ).rowcount,
                "consent": db.execute(
                    "DELETE FROM consent WHERE tenant_id = ? AND phone_hmac = ? AND status != 'opted_out'",
                    key,
                ).rowcount,
            }
            db.execute(
                "UPDATE consent SET source = 'suppression after erasure', updated_at = ? "
                "WHERE tenant_id = ? AND phone_hmac = ?",
                (now, *key),
            )
            return counts

        assert self.writer is not None
        counts: dict[str, int] = await self.writer.run_fn(erase)
        return counts

    # ------------------------------------------------------------------ consent
    async def set_consent(
        self, tenant_id: str, phone_hmac: bytes, status: str, source: str, now: float
    ) -> None:
        await self._write(
            [
                (
                    "INSERT INTO consent(tenant_id, phone_hmac, status, source, updated_at) "
                    "VALUES (?, ?, ?, ?, ?) "
                    "ON CONFLICT(tenant_id, phone_hmac) DO UPDATE SET status = excluded.status, "
                    "source = excluded.source, updated_at = excluded.updated_at",
                    (tenant_id, phone_hmac, status, source, now),
                )
            ]
        )

    # ------------------------------------------------------------------ events and copies
    async def insert_event(
        self,
        *,
        event_id: str,
        tenant_id: str,
        message_id: str | None,
        otp_id: str | None,
        event: str,
        country: str,
        route: str | None,
        phone_hmac: bytes | None,
        at: float,
    ) -> None:
        await self._write(
            [
                (
                    "INSERT INTO events(id, tenant_id, message_id, otp_id, event, country, route, "
                    "phone_hmac, at) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (event_id, tenant_id, message_id, otp_id, event, country, route, phone_hmac, at),
                )
            ]
        )

    async def insert_copy(
        self,
        *,
        copy_id: str,
        kind: str,
        region: str,
        tenant_id: str,
        phone_hmac: bytes,
        phone_enc: bytes,
        country: str,
        created_at: float,
    ) -> None:
        await self._write(
            [
                (
                    "INSERT INTO residency_copies(id, kind, region, tenant_id, phone_hmac, phone_enc, "
                    "country, created_at) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (copy_id, kind, region, tenant_id, phone_hmac, phone_enc, country, created_at),
                )
            ]
        )

    # ------------------------------------------------------------------ tracked links
    async def insert_links(
        self, tenant_id: str, message_id: str, links: list[tuple[str, str]], now: float
    ) -> None:
        """``links``: (link id, URL); URLs are sealed (they may carry personal data)."""
        await self._write(
            [
                (
                    "INSERT INTO links(id, tenant_id, message_id, url_enc, created_at) "
                    "VALUES (?, ?, ?, ?, ?)",
                    (link_id, tenant_id, message_id, self.keyring.seal(url.encode(), "link_url"), now),
                )
                for link_id, url in links
            ]
        )

    async def get_link(self, link_id: str) -> tuple[str, str, str] | None:
        """(tenant id, message id, URL) of a link."""
        row = await self._read_one(
            "SELECT tenant_id, message_id, url_enc FROM links WHERE id = ?", (link_id,)
        )
        if row is None:
            return None
        return str(row[0]), str(row[1]), self.keyring.open(row[2], "link_url").decode()

    # ------------------------------------------------------------------ retention
    async def purge(self, policy: RetentionPolicy, now: float) -> dict[str, int]:
        """Delete what outlived its class's time to live, in batches of PURGE_BATCH rows per transaction
        so the API never waits long behind it. Returns rows touched per class."""

        async def one_batch(job: PurgeJob, cutoff: float) -> int:
            change = f"UPDATE {job.table} SET {job.strip}" if job.strip else f"DELETE FROM {job.table}"
            sql = (
                f"{change} WHERE rowid IN (SELECT rowid FROM {job.table} "
                f"WHERE {job.condition('?')} {job.order} LIMIT ?)"
            )
            n, _ = await self._write([(sql, (cutoff, PURGE_BATCH))])
            return n

        return await purge_in_batches(policy, now, one_batch)
