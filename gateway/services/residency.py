"""Local-first countries: after the record is committed in its region, a minimal copy (sealed number,
ids, country) goes to the control store, as laws like Russia's 242-FZ allow once the local primary exists."""

from __future__ import annotations

from gateway.context import Context


async def keep_copy(
    ctx: Context, region: str, kind: str, obj_id: str, tenant_id: str, e164: str, country: str, now: float
) -> None:
    stores = ctx.regions
    if not region or country not in stores.copy_to_control:
        return
    ring = stores.control.keyring
    await stores.control.insert_copy(
        copy_id=obj_id,
        kind=kind,
        region=region,
        tenant_id=tenant_id,
        phone_hmac=ring.lookup(e164),
        phone_enc=ring.seal(e164.encode(), "phone"),
        country=country,
        created_at=now,
    )
