"""Destinations: geo permissions, per-country priors (price, fill-back, risk), local time.

The country table (``data/countries.csv``) is reference data read once on first use; its figures are
assumptions documented in ``data/README.md``. Local time comes from the time zone ``phonenumbers``
gives for a number (never the geocoder, which costs ~100 MB); the UTC offset of a zone is cached per
quarter hour of UTC so the hot path does one dict lookup.
"""

from __future__ import annotations

import csv
import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

# Where a tenant created without an explicit country list may send: low pumping risk, well-regulated
# markets. ``ALL`` has to be asked for explicitly (Twilio and Stytch default to the home country).
DEFAULT_ALLOWED_COUNTRIES: frozenset[str] = frozenset(
    {"US", "CA", "GB", "DE", "FR", "ES", "IT", "NL", "AU", "JP"}
)


@dataclass(frozen=True, slots=True)
class CountryInfo:
    iso: str
    price_usd: float
    fillback: float  # prior share of OTPs real users verify
    risk: float  # prior probability that unusual traffic there is pumping


UNKNOWN_COUNTRY = CountryInfo("ZZ", price_usd=0.10, fillback=0.70, risk=0.20)


@cache
def country_table() -> dict[str, CountryInfo]:
    text = resources.files("antifraud").joinpath("data/countries.csv").read_text("utf-8")
    table: dict[str, CountryInfo] = {}
    for row in csv.DictReader(text.splitlines()):
        info = CountryInfo(row["iso"], float(row["price_usd"]), float(row["fillback"]), float(row["risk"]))
        if not (0 < info.fillback < 1 and 0 <= info.risk < 1 and info.price_usd > 0):
            raise ValueError(f"countries.csv: implausible row {row}")
        table[info.iso] = info
    return table


def country_info(iso: str) -> CountryInfo:
    return country_table().get(iso, UNKNOWN_COUNTRY)


def is_permitted(allowed: frozenset[str] | None, iso: str) -> bool:
    """``allowed`` None means every country (the CLI's ``--countries ALL``)."""
    return allowed is None or iso in allowed


def parse_country_list(text: str | Iterable[str]) -> frozenset[str] | None:
    """'ALL' → None (every country); 'US,DE' → {'US', 'DE'}."""
    items = [s.strip().upper() for s in (text.split(",") if isinstance(text, str) else text)]
    items = [s for s in items if s]
    if items == ["ALL"]:
        return None
    bad = [s for s in items if len(s) != 2 or not s.isalpha()]
    if bad:
        raise ValueError(f"not ISO 3166-1 alpha-2 country codes: {', '.join(bad)}")
    return frozenset(items)


# Offsets are cached per zone for one quarter hour of UTC: every DST change of the tz database falls on
# a quarter hour of UTC (zones with half- and three-quarter-hour offsets change at :30 or :45 UTC), so a
# cached offset never outlives a change.
_SLICE = 900.0
_NO_ZONE: Any = object()  # not looked up yet


class LocalClock:
    """Local hour of a time zone at a given epoch time; offsets cached per zone and quarter hour."""

    def __init__(self) -> None:
        self._offsets: dict[str, tuple[float, float]] = {}  # zone -> (valid_until, offset_s)
        # the zones themselves, held: ``ZoneInfo`` keeps only 8 zones alive, and a multi-country
        # gateway (or a simulated day replayed in seconds) would read the tz files again and again
        self._zones: dict[str, ZoneInfo | None] = {}

    def offset(self, zone: str | None, now: float) -> float:
        if not zone:
            return 0.0
        hit = self._offsets.get(zone)
        if hit is not None and hit[0] > now >= hit[0] - _SLICE:
            return hit[1]
        tz = self._zones.get(zone, _NO_ZONE)
        if tz is _NO_ZONE:
            try:
                tz = ZoneInfo(zone)
            except (ZoneInfoNotFoundError, ValueError):
                tz = None
            if len(self._zones) > 10_000:
                self._zones.clear()
            self._zones[zone] = tz
        if tz is None:
            off = 0.0
        else:
            delta = dt.datetime.fromtimestamp(now, tz).utcoffset()
            off = delta.total_seconds() if delta is not None else 0.0
        start = now - now % _SLICE
        self._offsets[zone] = (start + _SLICE, off)
        return off

    def hour(self, zone: str | None, now: float) -> float:
        """Local time of day in hours, 0 ≤ h < 24."""
        return ((now + self.offset(zone, now)) % 86400.0) / 3600.0
