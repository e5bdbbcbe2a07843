"""Sender-ID registrations (the workflow's state as JSON), their documents (sealed), brand profiles and
tenant settings, in the control store."""

from __future__ import annotations

import json
import sqlite3
from typing import Any

from gateway.store.sqlite import SqliteEngine


class SenderIdMixin(SqliteEngine):
    async def save_registration(
        self,
        reg_id: str,
        tenant_id: str,
        sender: str,
        data: dict[str, Any],
        created_at: float,
        updated_at: float,
    ) -> None:
        changed, _ = await self._write(
            [
                (
                    "INSERT INTO sender_registrations(id, tenant_id, sender, data, created_at, updated_at) "
                    "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT(id) DO UPDATE SET data = excluded.data, "
                    "updated_at = excluded.updated_at WHERE tenant_id = excluded.tenant_id",
                    (reg_id, tenant_id, sender, json.dumps(data, sort_keys=True), created_at, updated_at),
                )
            ]
        )
        if not changed:  # the id is another tenant's: never overwrite it
            raise sqlite3.IntegrityError(f"registration {reg_id} belongs to another tenant")

    async def add_document(
        self,
        *,
        doc_id: str,
        registration_id: str,
        tenant_id: str,
        code: str,
        filename: str,
        content_type: str,
        content: bytes,
        uploaded_at: float,
    ) -> None:
        await self._write(
            [
                (
                    "INSERT INTO sender_documents(id, registration_id, tenant_id, code, filename, "
                    "content_type, size, content_enc, uploaded_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        doc_id,
                        registration_id,
                        tenant_id,
                        code,
                        filename,
                        content_type,
                        len(content),
                        self.keyring.seal(content, "document"),
                        uploaded_at,
                    ),
                )
            ]
        )

    async def put_brand(self, tenant_id: str, profile: dict[str, Any], now: float) -> None:
        await self._write(
            [
                (
                    "INSERT INTO brand_profiles(tenant_id, profile, updated_at) VALUES (?, ?, ?) "
                    "ON CONFLICT(tenant_id) DO UPDATE SET profile = excluded.profile, "
                    "updated_at = excluded.updated_at",
                    (tenant_id, json.dumps(profile, sort_keys=True), now),
                )
            ]
        )

    async def update_tenant_settings(self, tenant_id: str, changes: dict[str, Any]) -> dict[str, Any]:
        """Read and write in the writer's one transaction (BEGIN IMMEDIATE holds SQLite's write lock),
        so concurrent merges from any process never lose each other's keys."""

        def merge(db: sqlite3.Connection) -> dict[str, Any]:
            row = db.execute("SELECT settings FROM tenants WHERE id = ?", (tenant_id,)).fetchone()
            current: dict[str, Any] = dict(json.loads(row[0])) if row is not None else {}
            current.update(changes)
            merged = json.dumps(current, sort_keys=True)
            db.execute("UPDATE tenants SET settings = ? WHERE id = ?", (merged, tenant_id))
            return current

        assert self.writer is not None, "store is not open"
        merged: dict[str, Any] = await self.writer.run_fn(merge)
        return merged

    async def senderid_version(self) -> tuple[float, float, int]:
        """Changes anywhere in registrations, brand profiles or tenant settings change this value."""
        row = await self._read_one(
            "SELECT (SELECT COALESCE(MAX(updated_at), 0) FROM sender_registrations), "
            "(SELECT COALESCE(MAX(updated_at), 0) FROM brand_profiles), "
            "(SELECT COUNT(*) FROM sender_registrations)",
            (),
        )
        assert row is not None
        return float(row[0]), float(row[1]), int(row[2])
