"""Tenant webhooks for status callbacks, in the control store; the secret is sealed (AES-GCM)."""

from __future__ import annotations

from gateway.store.base import Webhook
from gateway.store.sqlite import SqliteEngine

SECRET_COLUMN = "webhook_secret"

__all__ = ["SECRET_COLUMN", "Webhook", "WebhooksMixin"]


class WebhooksMixin(SqliteEngine):
    async def put_webhook(self, tenant_id: str, url: str, secret: str, now: float) -> None:
        await self._write(
            [
                (
                    "INSERT INTO tenant_webhooks(tenant_id, url, secret_enc, created_at) VALUES (?, ?, ?, ?) "
                    "ON CONFLICT(tenant_id) DO UPDATE SET url = excluded.url, "
                    "secret_enc = excluded.secret_enc, created_at = excluded.created_at",
                    (tenant_id, url, self.keyring.seal(secret.encode(), SECRET_COLUMN), now),
                )
            ]
        )

    async def get_webhook(self, tenant_id: str) -> Webhook | None:
        row = await self._read_one(
            "SELECT url, secret_enc, created_at FROM tenant_webhooks WHERE tenant_id = ?", (tenant_id,)
        )
        if row is None:
            return None
        return Webhook(tenant_id, row[0], self.keyring.open(row[1], SECRET_COLUMN), float(row[2]))

    async def delete_webhook(self, tenant_id: str) -> bool:
        n, _ = await self._write([("DELETE FROM tenant_webhooks WHERE tenant_id = ?", (tenant_id,))])
        return n == 1
