"""Tenant webhooks for status callbacks and their outbox, on PostgreSQL; the secret is sealed."""

from __future__ import annotations

from collections.abc import Sequence

from gateway.store.base import OutboxEvent, Webhook
from gateway.store.pg import PgEngine
from gateway.store.sqlite_webhooks import OUTBOX_COLS, SECRET_COLUMN


class PgWebhooksMixin(PgEngine):
    async def put_webhook(self, tenant_id: str, url: str, secret: str, now: float) -> None:
        await self._write(
            [
                (
                    "INSERT INTO tenant_webhooks(tenant_id, url, secret_enc, created_at) "
                    "VALUES ($1, $2, $3, $4) ON CONFLICT (tenant_id) DO UPDATE SET url = excluded.url, "
                    "secret_enc = excluded.secret_enc, created_at = excluded.created_at",
                    (tenant_id, url, self.keyring.seal(secret.encode(), SECRET_COLUMN), now),
                )
            ]
        )

    async def get_webhook(self, tenant_id: str) -> Webhook | None:
        row = await self._read_one(
            "SELECT url, secret_enc, created_at FROM tenant_webhooks WHERE tenant_id = $1", (tenant_id,)
        )
        if row is None:
            return None
        return Webhook(tenant_id, row[0], self.keyring.open(bytes(row[1]), SECRET_COLUMN), float(row[2]))

    # ------------------------------------------------------------------ outbox
    async def outbox_add(
        self, events: Sequence[OutboxEvent], *, worker: str | None, lease_until: float, now: float
    ) -> None:
        if not events:
            return
        until = lease_until if worker is not None else 0.0
        await self._write(
            [
                (
                    "INSERT INTO webhook_outbox(event_id, tenant_id, payload, attempt, due, claimed_by, "
                    "claimed_until, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) "
                    "ON CONFLICT (event_id) DO NOTHING",
                    (e.event_id, e.tenant_id, e.payload, e.attempt, e.due, worker, until, now),
                )
                for e in events
            ]
        )

    async def outbox_claim(self, worker: str, now: float, lease: float, limit: int) -> list[OutboxEvent]:
        """One statement; SKIP LOCKED so processes claiming together take different events."""
        _, rows = await self._write(
            [
                (
                    "UPDATE webhook_outbox SET claimed_by = $1, claimed_until = GREATEST(due, $2) + $3 "
                    "WHERE event_id IN (SELECT event_id FROM webhook_outbox WHERE claimed_until < $2 "
                    "ORDER BY due LIMIT $4 FOR UPDATE SKIP LOCKED) AND claimed_until < $2 "
                    f"RETURNING {OUTBOX_COLS}",
                    (worker, now, lease, limit),
                )
            ],
            fetch=True,
        )
        events = [OutboxEvent(str(r[0]), str(r[1]), str(r[2]), int(r[3]), float(r[4])) for r in rows]
        return sorted(events, key=lambda e: e.due)

    async def outbox_done(self, event_ids: Sequence[str]) -> None:
        if event_ids:
            await self._write(
                [("DELETE FROM webhook_outbox WHERE event_id = ANY($1::text[])", (list(event_ids),))]
            )

    async def outbox_renew(self, worker: str, until: float) -> int:
        n, _ = await self._write(
            [
                (
                    "UPDATE webhook_outbox SET claimed_until = GREATEST(claimed_until, $1) "
                    "WHERE claimed_by = $2",
                    (until, worker),
                )
            ]
        )
        return n

    async def outbox_release(self, worker: str) -> int:
        n, _ = await self._write(
            [("UPDATE webhook_outbox SET claimed_until = 0 WHERE claimed_by = $1", (worker,))]
        )
        return n
