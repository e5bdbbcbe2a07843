"""Quiet hours: when marketing SMS may reach a number, in the destination's own time zones.

Windows come from ``senderid/data/quiet_hours.csv`` (per country, e.g. "Mon-Fri 08:00-20:00; Sat
10:00-18:00", blocked days) with overrides from config. A number with several time zones (the US, say)
must be inside the window in every one of them. Public holidays are not modelled (no calendar data);
countries that block them are noted in docs/compliance.md.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from importlib import resources
from zoneinfo import ZoneInfo

DAYS = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
_SPEC = re.compile(r"(?:(?P<d1>[A-Za-z]{3})(?:-(?P<d2>[A-Za-z]{3}))?\s+)?(?P<a>\d\d:\d\d)-(?P<b>\d\d:\d\d)")


@dataclass(frozen=True)
class Window:
    days: frozenset[int]  # 0 = Monday
    start: time
    end: time


@dataclass(frozen=True)
class QuietRule:
    country: str
    windows: tuple[Window, ...]

    def allows(self, local: datetime) -> bool:
        t = local.time()
        return any(local.weekday() in w.days and w.start <= t < w.end for w in self.windows)


def parse_rule(country: str, spec: str, blocked: str = "none") -> QuietRule:
    """'08:00-21:00' or 'Mon-Fri 08:00-20:00; Sat 10:00-18:00'; blocked like 'Sun;public_holidays'."""
    blocked_days = {
        DAYS.index(d.strip().lower()[:3]) for d in blocked.split(";") if d.strip().lower()[:3] in DAYS
    }
    windows = []
    for part in spec.split(";"):
        m = _SPEC.fullmatch(part.strip())
        if m is None:
            raise ValueError(f"{country}: cannot read quiet-hours window {part.strip()!r}")
        if m["d1"]:
            d1 = DAYS.index(m["d1"].lower())
            d2 = DAYS.index(m["d2"].lower()) if m["d2"] else d1
            days = set(range(d1, d2 + 1))
        else:
            days = set(range(7))
        start, end = time.fromisoformat(m["a"]), time.fromisoformat(m["b"])
        windows.append(Window(frozenset(days - blocked_days), start, end))
    return QuietRule(country, tuple(windows))


def load_rules(overrides: Mapping[str, str] | None = None) -> dict[str, QuietRule]:
    rules: dict[str, QuietRule] = {}
    with resources.files("senderid").joinpath("data/quiet_hours.csv").open(encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            rules[row["iso2"]] = parse_rule(
                row["iso2"], row["marketing_allowed_window_local"], row["days_blocked"]
            )
    for country, spec in (overrides or {}).items():
        rules[country] = parse_rule(country, spec)
    return rules


def allowed_at(rule: QuietRule | None, zones: list[str], when: datetime) -> bool:
    if rule is None:
        return True
    return all(rule.allows(when.astimezone(ZoneInfo(z))) for z in zones or ["UTC"])


def next_allowed(rule: QuietRule | None, zones: list[str], when: datetime) -> datetime | None:
    """The first moment (15-minute steps, within a week) when every zone is inside a window."""
    if allowed_at(rule, zones, when):
        return when
    step = when.replace(second=0, microsecond=0)
    step += timedelta(minutes=15 - step.minute % 15)
    for _ in range(7 * 24 * 4):
        if allowed_at(rule, zones, step):
            return step
        step += timedelta(minutes=15)
    return None
