"""Route selection: which carrier route takes a message, and why. Pure: plain values in, a choice out.

Eligibility, in this order (the first rule a route breaks is the reason it is left out):

1. not tried before for this message (a route that may hold it is never used again for it);
2. covers the destination: its countries (``*`` = any) and, when it lists number prefixes, one of
   them; the longest matching prefix is the route's specificity;
3. fits the message's brand class: international traffic NEVER goes on a ``local`` route; a local brand
   may use a ``local`` or an ``any`` route, never an ``international`` one (:func:`brand_fits`);
4. carries the sender: the route lists it, or ``*``; the empty sender (the route's own default) fits
   every route;
5. is up: its carrier can take traffic and its breaker lets it (``availability`` says why not).

Ranking, lowest first: the expected cost of the outcome the sender pays for —

* OTP: cost per verified code = price × segments / smoothed fill-back (verified / sent);
* other messages: cost per delivered message = price × segments / smoothed delivery rate
  (delivered / final receipts);

each rate smoothed with a Beta prior, so a route with no data reads the prior mean and a few samples
move it a little. Then priority, then the more specific prefix, then the name. Price per segment is
the route's price for the longest matching ``+prefix`` entry, else the country's entry, else its
default price.

Exploration: a small deterministic share of messages (by a hash of the message id, so a retry draws the
same) goes to the runner-up with the fewest recent samples, when it has fewer than
``explore_below`` — so a cheap route that recovered is measured again and wins back its traffic.

Every decision comes with a reason listing the candidates with their scores and why the others were
left out; the gateway stores it with the message.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

BRAND_CLASSES = ("international", "local")
ROUTE_CLASSES = ("international", "local", "any")


@dataclass(frozen=True, slots=True)
class Route:
    name: str
    carrier: str
    countries: frozenset[str]  # ISO codes; "*" = any
    prefixes: tuple[str, ...] = ()  # E.164 digits without "+"; empty = any
    brand_class: str = "any"  # international | local | any
    senders: frozenset[str] = frozenset({"*"})
    price: float = 0.01  # per segment, when no entry of ``prices`` matches
    priority: int = 100
    prices: tuple[tuple[str, float], ...] = ()  # ("DE", 0.02), ("+4915", 0.03): per country or prefix

    def match(self, country: str, e164: str) -> int | None:
        """None when the route does not cover the number, else the length of the prefix it matched
        (0 when it covers by country alone)."""
        if "*" not in self.countries and country not in self.countries:
            return None
        if not self.prefixes:
            return 0
        digits = e164.lstrip("+")
        best = max((len(p) for p in self.prefixes if digits.startswith(p)), default=-1)
        return best if best >= 0 else None

    def covers(self, country: str, e164: str) -> bool:
        return self.match(country, e164) is not None

    def price_for(self, country: str, e164: str) -> tuple[float, str]:
        """(price per segment, which entry set it): longest ``+prefix`` entry, then country, then default."""
        digits = e164.lstrip("+")
        best: tuple[int, float, str] | None = None
        for key, price in self.prices:
            if key.startswith("+") and digits.startswith(key[1:]) and (best is None or len(key) > best[0]):
                best = (len(key), price, key)
        if best is not None:
            return best[1], best[2]
        for key, price in self.prices:
            if key == country:
                return price, key
        return self.price, "default"


@dataclass(frozen=True, slots=True)
class Message:
    """What routing needs to know about one message (no text, no sealed data)."""

    country: str
    e164: str
    brand_class: str = "international"  # of the sender's brand in the destination country
    sender: str = ""  # "" = the route's own default sender
    segments: int = 1
    otp: bool = False
    key: str = ""  # stable per message (its id): the exploration draw


@dataclass(frozen=True, slots=True)
class Prior:
    """Beta(alpha, beta): what we believe about a rate before seeing data."""

    alpha: float
    beta: float

    @classmethod
    def from_mean(cls, mean: float, strength: float) -> Prior:
        if not 0 < mean < 1 or strength <= 0:
            raise ValueError("prior mean must be in (0, 1) and strength > 0")
        return cls(mean * strength, (1 - mean) * strength)

    def smoothed(self, successes: int, trials: int) -> float:
        return (successes + self.alpha) / (trials + self.alpha + self.beta)


@dataclass(frozen=True, slots=True)
class RouteStats:
    """Recent outcomes of one route for one destination country."""

    delivered: int = 0  # final receipts: delivered
    undelivered: int = 0  # final receipts: failed or expired
    otp_sent: int = 0  # fill-back window: OTPs sent
    otp_verified: int = 0  # ... of which verified


NO_STATS = RouteStats()


@dataclass(frozen=True, slots=True)
class Policy:
    delivery_prior: Prior = field(default_factory=lambda: Prior.from_mean(0.9, 20))
    fillback_prior: Prior = field(default_factory=lambda: Prior.from_mean(0.6, 20))
    explore_share: float = 0.02  # share of messages that may explore
    explore_below: int = 200  # a runner-up with fewer recent samples than this is worth exploring


@dataclass(frozen=True, slots=True)
class Scored:
    route: Route
    cost: float  # expected cost per delivered (or verified) message
    price: float  # per segment
    basis: str  # which price entry applied
    rate: float  # smoothed delivery or fill-back rate
    successes: int
    trials: int
    specificity: int

    def explain(self, segments: int, otp: bool) -> str:
        what, unit = ("fill-back", "verified") if otp else ("delivery", "delivered")
        return (
            f"{self.route.name} {self.cost:.4f}/{unit} (price {self.price:.4f} {self.basis} × {segments}"
            f" / {what} {self.rate:.2f} from {self.successes}/{self.trials})"
        )


@dataclass(frozen=True, slots=True)
class RouteChoice:
    route: Route | None  # None: no eligible route
    reason: str
    ranked: tuple[Scored, ...] = ()
    excluded: tuple[tuple[str, str], ...] = ()  # (route name, why)
    explored: bool = False


def brand_fits(route_class: str, brand_class: str) -> bool:
    """International traffic never on a local route; a local brand on a local or "any" route.
    An unknown brand class is treated as international (the safe side)."""
    if route_class == "any":
        return True
    if brand_class not in BRAND_CLASSES:
        brand_class = "international"
    return route_class == brand_class


def exclusion(route: Route, msg: Message, availability: Callable[[Route], str | None]) -> str | None:
    """Why ``route`` cannot take ``msg`` (None: it can). ``availability`` is asked last."""
    if route.match(msg.country, msg.e164) is None:
        what = f"{msg.country}" if route.prefixes == () else f"{msg.country} with its number prefix"
        return f"does not cover {what}"
    if not brand_fits(route.brand_class, msg.brand_class):
        return f"{route.brand_class} route, brand is {msg.brand_class} in {msg.country}"
    if msg.sender and "*" not in route.senders and msg.sender not in route.senders:
        return f"sender {msg.sender!r} not registered on it"
    return availability(route)


def eligible(
    routes: Iterable[Route],
    msg: Message,
    availability: Callable[[Route], str | None],
    exclude: frozenset[str] = frozenset(),
) -> tuple[list[Route], list[tuple[str, str]]]:
    ok: list[Route] = []
    out: list[tuple[str, str]] = []
    for r in routes:
        why = "tried before for this message" if r.name in exclude else exclusion(r, msg, availability)
        if why is None:
            ok.append(r)
        else:
            out.append((r.name, why))
    return ok, out


def score(route: Route, msg: Message, stats: RouteStats, policy: Policy) -> Scored:
    price, basis = route.price_for(msg.country, msg.e164)
    if msg.otp:
        successes, trials = stats.otp_verified, stats.otp_sent
        rate = policy.fillback_prior.smoothed(successes, trials)
    else:
        successes, trials = stats.delivered, stats.delivered + stats.undelivered
        rate = policy.delivery_prior.smoothed(successes, trials)
    cost = price * max(msg.segments, 1) / max(rate, 1e-6)
    return Scored(route, cost, price, basis, rate, successes, trials, route.match(msg.country, msg.e164) or 0)


def rank(
    routes: Iterable[Route], msg: Message, stats: Mapping[str, RouteStats], policy: Policy
) -> list[Scored]:
    scored = [score(r, msg, stats.get(r.name, NO_STATS), policy) for r in routes]
    scored.sort(key=lambda s: (round(s.cost, 9), s.route.priority, -s.specificity, s.route.name))
    return scored


def draw(key: str) -> float:
    """A uniform number in [0, 1) fixed by ``key``."""
    digest = hashlib.blake2b(key.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


def choose(
    routes: Iterable[Route],
    msg: Message,
    *,
    availability: Callable[[Route], str | None],
    stats: Mapping[str, RouteStats] | None = None,
    policy: Policy | None = None,
    exclude: frozenset[str] = frozenset(),
) -> RouteChoice:
    """The route for ``msg`` and the reason (see the module docstring); ``route`` is None when no
    route is eligible, and the reason then says why each was left out."""
    policy = policy or Policy()
    cands, excluded = eligible(routes, msg, availability, exclude)
    left_out = "; ".join(f"{name} ({why})" for name, why in excluded)
    if not cands:
        reason = f"no eligible route for {msg.country} ({msg.brand_class})"
        return RouteChoice(None, reason + (f": {left_out}" if left_out else ""), (), tuple(excluded))
    ranked = rank(cands, msg, stats or {}, policy)
    pick, explored = ranked[0], False
    if msg.key and len(ranked) > 1 and draw(msg.key) < policy.explore_share:
        thin = [s for s in ranked[1:] if s.trials < policy.explore_below]
        if thin:
            pick, explored = min(thin, key=lambda s: (s.trials, s.cost)), True
    kind = "otp" if msg.otp else "message"
    seg = f"{msg.segments} segment{'s' if msg.segments != 1 else ''}"
    scores = "; ".join(s.explain(msg.segments, msg.otp) for s in ranked)
    if explored:
        head = (
            f"exploring {pick.route.name} ({pick.trials} recent samples < {policy.explore_below}; "
            f"{policy.explore_share:.0%} of messages explore) instead of {ranked[0].route.name}"
        )
    else:
        head = f"cheapest eligible of {len(ranked)}"
    reason = f"{head} for {msg.country} ({kind}, {msg.brand_class}, {seg}): {scores}"
    if left_out:
        reason += f"; left out: {left_out}"
    return RouteChoice(pick.route, reason, tuple(ranked), tuple(excluded), explored)
