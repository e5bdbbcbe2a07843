"""Sender-ID registrations (the workflow's state as JSON), their documents (sealed), brand profiles and
tenant settings, on PostgreSQL."""

from __future__ import annotations

import json
from typing import Any

import asyncpg

from gateway.store.pg import PgEngine


class PgSenderIdMixin(PgEngine):
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
                    "VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (id) DO UPDATE SET data = excluded.data, "
                    "updated_at = excluded.updated_at "
                    "WHERE sender_registrations.tenant_id = excluded.tenant_id",
                    (reg_id, tenant_id, sender, json.dumps(data, sort_keys=True), created_at, updated_at),
                )
            ]
        )
        if not changed:  # the id is another tenant's: never overwrite it
            raise asyncpg.UniqueViolationError(f"registration {reg_id} belongs to another tenant")

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
                    "content_type, size, content_enc, uploaded_at) "
                    "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
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
                    "INSERT INTO brand_profiles(tenant_id, profile, updated_at) VALUES ($1, $2, $3) "
                    "ON CONFLICT (tenant_id) DO UPDATE SET profile = excluded.profile, "
                    "updated_at = excluded.updated_at",
                    (tenant_id, json.dumps(profile, sort_keys=True), now),
                )
            ]
        )

    async def update_tenant_settings(self, tenant_id: str, changes: dict[str, Any]) -> dict[str, Any]:
        """One statement (``settings || changes``): concurrent merges from any process keep every key."""
        _, rows = await self._write(
            [
                (
                    "UPDATE tenants SET settings = settings || $2::jsonb WHERE id = $1 RETURNING settings",
                    (tenant_id, json.dumps(changes)),
                )
            ],
            fetch=True,
        )
        return dict(json.loads(rows[0][0])) if rows else dict(changes)

    async def senderid_version(self) -> tuple[float, float, int]:
        row = await self._read_one(
            "SELECT (SELECT COALESCE(MAX(updated_at), 0) FROM sender_registrations), "
            "(SELECT COALESCE(MAX(updated_at), 0) FROM brand_profiles), "
            "(SELECT COUNT(*) FROM sender_registrations)",
            (),
        )
        assert row is not None
        return float(row[0]), float(row[1]), int(row[2])
