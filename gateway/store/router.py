"""Data residency: which store holds a record.

One store per region, each its own database (a separate SQLite file now; any engine that fills
``Store`` later). The *control* store (region ``""``) holds tenants, keys, registrations and the audit
log, and every record about a number whose country is not mapped. A record about a number of a mapped
country is written only to its region's store, and its id names the region (``otp_ru_…``), so reads,
export and erasure go straight there. A country listed in ``copy_to_control`` (e.g. Russia: record
locally first, then a copy may leave) also gets a minimal copy in the control store after the local
commit.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field

from gateway.store.base import Store

CONTROL = ""
_REGION_IN_ID = re.compile(r"^[a-z]+_([a-z0-9]{1,12})_(?:[0-9a-f]{8})?[0-9a-f]{20}$")  # before ids had time


def region_of_id(obj_id: str) -> str:
    m = _REGION_IN_ID.match(obj_id)
    return m.group(1) if m else CONTROL


@dataclass
class Stores:
    control: Store
    regions: dict[str, Store] = field(default_factory=dict)
    country_region: Mapping[str, str] = field(default_factory=dict)
    copy_to_control: frozenset[str] = frozenset()

    def region_for(self, country: str) -> str:
        return self.country_region.get(country, CONTROL)

    def for_country(self, country: str) -> tuple[str, Store]:
        region = self.region_for(country)
        return region, self.get(region)

    def get(self, region: str) -> Store:
        return self.control if region == CONTROL else self.regions[region]

    @property
    def unavailable(self) -> tuple[type[Exception], ...]:
        """Every engine's "cannot serve now" exception types (regions may run different engines)."""
        seen: dict[type[Exception], None] = {}
        for store in (self.control, *self.regions.values()):
            seen.update(dict.fromkeys(store.unavailable))
        return tuple(seen)

    def for_id(self, obj_id: str) -> Store | None:
        region = region_of_id(obj_id)
        if region == CONTROL:
            return self.control
        return self.regions.get(region)

    def all(self) -> Iterator[tuple[str, Store]]:
        yield CONTROL, self.control
        yield from self.regions.items()

    async def open(self) -> None:
        for _, store in self.all():
            await store.open()

    async def close(self) -> None:
        for _, store in self.all():
            await store.close()
