"""Route selection: which carrier route takes a message, and why.

Pure: takes the route table and a message's attributes, returns the ranked eligible routes with a
human-readable reason for the choice. Eligibility: the route is up, covers the destination (country
or number prefix), matches the message's brand class, carries its sender ID and was not tried
before for this message. Ranking: lowest expected cost per delivered message (price / delivery
rate), then priority.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Route:
    name: str
    carrier: str
    countries: frozenset[str]  # "*" = any
    prefixes: tuple[str, ...] = ()  # E.164 digits without "+"; empty = any
    brand_class: str = "any"  # international | local | any
    senders: frozenset[str] = frozenset({"*"})
    price: float = 0.01
    priority: int = 100

    def covers(self, country: str, e164: str) -> bool:
        if "*" not in self.countries and country not in self.countries:
            return False
        return not self.prefixes or any(e164.lstrip("+").startswith(p) for p in self.prefixes)


@dataclass(frozen=True, slots=True)
class RouteChoice:
    route: Route
    reason: str


def eligible(
    routes: Iterable[Route],
    *,
    country: str,
    e164: str,
    brand_class: str,
    sender: str,
    is_up: Callable[[Route], bool],
    exclude: frozenset[str] = frozenset(),
) -> list[Route]:
    out = []
    for r in routes:
        if r.name in exclude or not r.covers(country, e164):
            continue
        if r.brand_class != "any" and brand_class != r.brand_class:
            continue
        if "*" not in r.senders and sender not in r.senders:
            continue
        if not is_up(r):
            continue
        out.append(r)
    return out


def choose(
    routes: Iterable[Route],
    *,
    country: str,
    e164: str,
    brand_class: str,
    sender: str,
    is_up: Callable[[Route], bool],
    delivery_rate: Mapping[str, float] | None = None,
    exclude: frozenset[str] = frozenset(),
) -> RouteChoice | None:
    cands = eligible(
        routes,
        country=country,
        e164=e164,
        brand_class=brand_class,
        sender=sender,
        is_up=is_up,
        exclude=exclude,
    )
    if not cands:
        return None
    rates = delivery_rate or {}

    def cost(r: Route) -> tuple[float, int, str]:
        return (r.price / max(rates.get(r.name, 1.0), 0.05), r.priority, r.name)

    cands.sort(key=cost)
    best = cands[0]
    reason = (
        f"cheapest eligible of {len(cands)} route(s) for {country}: "
        f"{best.price:.4f}/segment at delivery rate {rates.get(best.name, 1.0):.2f}"
    )
    if exclude:
        reason += f"; tried before: {', '.join(sorted(exclude))}"
    return RouteChoice(best, reason)
