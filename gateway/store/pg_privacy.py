"""Audit chain, data-subject requests, consent, conversion events, residency copies and retention on
PostgreSQL."""

from __future__ import annotations

from typing import Any

import asyncpg

from gateway.privacy.audit import GENESIS, AuditRecord, canonical, record_mac
from gateway.store.base import RetentionPolicy
from gateway.store.pg import PgEngine, rowcount_of
from gateway.store.tables import MSG_COLS, OTP_COLS, PURGE_BATCH, PurgeJob, message_from, purge_in_batches

_AUDIT_COLS = "seq, at, actor, tenant_id, action, target, details, prev, mac"


class PgPrivacyMixin(PgEngine):
    # ------------------------------------------------------------------ audit
    async def append_audit(
        self, *, at: float, actor: str, tenant_id: str, action: str, target: str, details: dict[str, Any]
    ) -> int:
        """Under a transaction-level advisory lock (released by the commit): appends from every process
        on this schema read the chain's head and insert the next record one at a time."""
        key = self.keyring.audit_key
        body = canonical(details)
        lock = f"smsgw.audit.{self.schema}"

        async def append(conn: asyncpg.Connection) -> int:
            await conn.execute("SELECT pg_advisory_xact_lock(hashtext($1))", lock)
            row = await conn.fetchrow("SELECT seq, mac FROM audit ORDER BY seq DESC LIMIT 1")
            seq, prev = (int(row[0]) + 1, bytes(row[1])) if row else (1, GENESIS)
            mac = record_mac(key, prev, seq, at, actor, tenant_id, action, target, body)
            await conn.execute(
                f"INSERT INTO audit({_AUDIT_COLS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
                seq,
                at,
                actor,
                tenant_id,
                action,
                target,
                body,
                prev,
                mac,
            )
            return seq

        seq: int = await self._run_fn(append)
        return seq

    async def audit_records(
        self, tenant_id: str | None = None, limit: int = 0, target: str | None = None
    ) -> list[AuditRecord]:
        sql = f"SELECT {_AUDIT_COLS} FROM audit"
        params: tuple[Any, ...] = ()
        if tenant_id is not None:
            sql += " WHERE tenant_id = $1"
            params = (tenant_id,)
            if target is not None:
                sql += " AND target = $2"
                params = (tenant_id, target)
        if limit:
            sql = f"SELECT * FROM ({sql} ORDER BY seq DESC LIMIT {int(limit)}) newest ORDER BY seq"
        else:
            sql += " ORDER BY seq"
        rows = await self._read_all(sql, params)
        return [AuditRecord(*tuple(r)) for r in rows]

    # ------------------------------------------------------------------ data-subject requests

    async def privacy_requests(self, tenant_id: str) -> list[dict[str, Any]]:
        rows = await self._read_all(
            "SELECT id, kind, subject_masked, received_at, due_at, completed_at, result "
            "FROM privacy_requests WHERE tenant_id = $1 ORDER BY received_at DESC LIMIT 500",
            (tenant_id,),
        )
        keys = ("id", "kind", "subject", "received_at", "due_at", "completed_at", "result")
        return [dict(zip(keys, r, strict=True)) for r in rows]

    async def subject_data(self, tenant_id: str, phone_hmac: bytes) -> dict[str, list[Any]]:
        key = (tenant_id, phone_hmac)
        where = "WHERE tenant_id = $1 AND phone_hmac = $2"
        otps = await self._read_all(f"SELECT {', '.join(OTP_COLS)} FROM otps {where}", key)
        msgs = await self._read_all(f"SELECT {', '.join(MSG_COLS)} FROM messages {where}", key)
        events = await self._read_all(
            f"SELECT id, message_id, otp_id, event, country, route, at FROM events {where}", key
        )
        consent = await self._read_all(f"SELECT status, source, updated_at FROM consent {where}", key)
        copies = await self._read_all(
            f"SELECT id, kind, region, country, created_at FROM residency_copies {where}", key
        )
        event_keys = ("id", "message_id", "otp_id", "event", "country", "route", "at")
        return {
            "otps": [dict(zip(OTP_COLS, r, strict=True)) for r in otps],
            "messages": [message_from(r) for r in msgs],
            "events": [dict(zip(event_keys, r, strict=True)) for r in events],
            "consent": [dict(zip(("status", "source", "updated_at"), r, strict=True)) for r in consent],
            "copies": [
                dict(zip(("id", "kind", "region", "country", "created_at"), r, strict=True)) for r in copies
            ],
        }

    async def erase_subject(self, tenant_id: str, phone_hmac: bytes, now: float) -> dict[str, int]:
        """One transaction; an opt-out survives as a suppression entry (HMAC only)."""

        async def erase(conn: asyncpg.Connection) -> dict[str, int]:
            where = "WHERE tenant_id = $1 AND phone_hmac = $2"

            async def delete(table: str, extra: str = "") -> int:
                return rowcount_of(
                    await conn.execute(f"DELETE FROM {table} {where}{extra}", tenant_id, phone_hmac)
                )

            counts = {
                "events": await delete("events"),
                "otps": await delete("otps"),
                "messages": await delete("messages"),
                "copies": await delete("residency_copies"),
                "consent": await delete("consent", " AND status <> 'opted_out'"),
            }
            await conn.execute(
                f"UPDATE consent SET source = 'suppression after erasure', updated_at = $3 {where}",
                tenant_id,
                phone_hmac,
                now,
            )
            return counts

        counts: dict[str, int] = await self._run_fn(erase)
        return counts

    # ------------------------------------------------------------------ consent
    async def set_consent(
        self, tenant_id: str, phone_hmac: bytes, status: str, source: str, now: float
    ) -> None:
        await self._write(
            [
                (
                    "INSERT INTO consent(tenant_id, phone_hmac, status, source, updated_at) "
                    "VALUES ($1, $2, $3, $4, $5) "
                    "ON CONFLICT (tenant_id, phone_hmac) DO UPDATE SET status = excluded.status, "
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
                    "phone_hmac, at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
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
                    "country, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                    (copy_id, kind, region, tenant_id, phone_hmac, phone_enc, country, created_at),
                )
            ]
        )

    # ------------------------------------------------------------------ tracked links
    async def insert_links(
        self, tenant_id: str, message_id: str, links: list[tuple[str, str]], now: float
    ) -> None:
        await self._write(
            [
                (
                    "INSERT INTO links(id, tenant_id, message_id, url_enc, created_at) "
                    "VALUES ($1, $2, $3, $4, $5)",
                    (link_id, tenant_id, message_id, self.keyring.seal(url.encode(), "link_url"), now),
                )
                for link_id, url in links
            ]
        )

    async def get_link(self, link_id: str) -> tuple[str, str, str] | None:
        row = await self._read_one(
            "SELECT tenant_id, message_id, url_enc FROM links WHERE id = $1", (link_id,)
        )
        if row is None:
            return None
        return str(row[0]), str(row[1]), self.keyring.open(bytes(row[2]), "link_url").decode()

    # ------------------------------------------------------------------ retention
    async def purge(self, policy: RetentionPolicy, now: float) -> dict[str, int]:
        """``PURGE_JOBS`` in batches of ``PURGE_BATCH`` rows per transaction. The condition is checked
        again on the row itself, so a message that turned queued or sending meanwhile is left alone."""

        async def one_batch(job: PurgeJob, cutoff: float) -> int:
            cond = job.condition("$1")
            change = f"UPDATE {job.table} SET {job.strip}" if job.strip else f"DELETE FROM {job.table}"
            sql = (
                f"{change} WHERE ctid = ANY(ARRAY(SELECT ctid FROM {job.table} WHERE {cond} {job.order} "
                f"LIMIT $2 FOR UPDATE SKIP LOCKED)) AND {cond}"
            )
            n, _ = await self._write([(sql, (cutoff, PURGE_BATCH))])
            return n

        return await purge_in_batches(policy, now, one_batch)
