"""Brand classification: does a tenant's brand count as *international* or *local* in a country?

The class drives price and which routes the traffic may take (international traffic never goes on a
local route). Rules, first match wins; every step adds a reason sentence and a reason code:

1. No brand profile on file                → international (``no_profile``).
2. The brand is a well-known global brand  → international, whatever its local presence
                                             (``well_known_brand``; operator practice, hardest in India).
3. The brand's local presence in the country meets the country's requirement → local, else
   international (``missing_local_<factor>`` / ``no_local_presence``).

The requirement per country (:class:`BrandRule`) comes from ``data/brand_rules.csv``: its free-text
column ``local_requires`` is turned into factors by :func:`parse_local_requires` (documented there, each
row pinned by a test), and config can override it. A country without a row uses the default rule: any
local presence (entity, team or servers) makes the brand local.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from senderid.errors import Problem, RequestInvalid

__all__ = [
    "DEFAULT_BRAND_RULE",
    "BrandClass",
    "BrandProfile",
    "BrandRule",
    "Classification",
    "LocalFactor",
    "Presence",
    "Segmentation",
    "classify",
    "parse_local_requires",
    "parse_profile",
]


class BrandClass(enum.StrEnum):
    INTERNATIONAL = "international"
    LOCAL = "local"


class LocalFactor(enum.StrEnum):
    """A kind of local presence; the value is the ``Presence`` field name without ``local_``."""

    ENTITY = "entity"
    TEAM = "team"
    SERVERS = "servers"


_FACTOR_WORDS = {
    LocalFactor.ENTITY: "a local legal entity",
    LocalFactor.TEAM: "a local team",
    LocalFactor.SERVERS: "local servers (all message systems in the country)",
}


class Segmentation(enum.StrEnum):
    """Whether the country's operators split traffic into international and local."""

    YES = "yes"
    NO = "no"
    PARTIAL = "partial"
    UNKNOWN = "unknown"


@dataclass(frozen=True, slots=True)
class BrandRule:
    """What makes a brand local in one country.

    Local when every factor of ``all_of`` is present and, if ``any_of`` is not empty, at least one of
    ``any_of``. ``operator_decides`` marks countries where operators may still refuse local status.
    """

    iso2: str
    segmentation: Segmentation = Segmentation.UNKNOWN
    all_of: frozenset[LocalFactor] = frozenset()
    any_of: frozenset[LocalFactor] = frozenset(LocalFactor)
    operator_decides: bool = False
    local_requires: str = ""
    international_restrictions: str = ""
    local_restrictions: str = ""
    in_dataset: bool = False

    def satisfied_by(self, present: frozenset[LocalFactor]) -> bool:
        return self.all_of <= present and (not self.any_of or bool(self.any_of & present))

    def describe(self) -> str:
        """The requirement as a phrase, e.g. 'a local legal entity and local servers (...)'."""
        parts = [_FACTOR_WORDS[f] for f in LocalFactor if f in self.all_of]
        text = " and ".join(parts)
        if self.any_of:
            alternatives = " or ".join(_FACTOR_WORDS[f] for f in LocalFactor if f in self.any_of)
            text = f"{text} and {alternatives}" if text else alternatives
        return text


DEFAULT_BRAND_RULE = BrandRule(iso2="*")
"""For countries without a row: segmentation unknown, any local presence makes the brand local."""


def parse_local_requires(text: str) -> tuple[frozenset[LocalFactor], frozenset[LocalFactor], bool]:
    """Read a ``local_requires`` sentence of ``brand_rules.csv`` as ``(all_of, any_of, operator_decides)``.

    The column is prose from the sources, so the reading is deliberately small and conservative:

    - ``n/a ...`` (traffic not segregated): the default, any presence counts.
    - anything else: a local legal entity is required (the usual operator test: incorporation,
      trade licence, commercial registration; also for ``unknown``, since international traffic on a
      local route is the costly mistake);
    - plus local servers when the text speaks of ``servers`` or of systems ``in <country>``
      (India: TRAI counts any system abroad as international);
    - ``operator_decides`` when the text says a licence is ``not sufficient alone`` or that operators
      decide (Vietnam).
    """
    t = " ".join(text.lower().split())
    if t.startswith("n/a"):
        return frozenset(), frozenset(LocalFactor), False
    all_of = {LocalFactor.ENTITY}
    if "servers" in t or "systems in " in t:
        all_of.add(LocalFactor.SERVERS)
    operator_decides = "not sufficient alone" in t or "operators decide" in t
    return frozenset(all_of), frozenset(), operator_decides


@dataclass(frozen=True, slots=True)
class Presence:
    """A brand's declared presence in one country."""

    local_entity: bool = False
    local_team: bool = False
    local_servers: bool = False

    def factors(self) -> frozenset[LocalFactor]:
        have = (
            (LocalFactor.ENTITY, self.local_entity),
            (LocalFactor.TEAM, self.local_team),
            (LocalFactor.SERVERS, self.local_servers),
        )
        return frozenset(f for f, on in have if on)


@dataclass(frozen=True, slots=True)
class BrandProfile:
    """A tenant's brand: name, whether it is a well-known global brand, presence per country (ISO2)."""

    name: str
    well_known: bool = False
    countries: Mapping[str, Presence] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Classification:
    """The answer: ``cls`` with human-readable ``reasons`` and one stable ``codes`` entry per reason."""

    country: str
    cls: BrandClass
    reasons: tuple[str, ...]
    codes: tuple[str, ...]

    def as_json(self) -> dict[str, Any]:
        """The contract's shape: ``{"country", "class", "reasons"}`` (plus ``codes``)."""
        return {
            "country": self.country,
            "class": self.cls.value,
            "reasons": list(self.reasons),
            "codes": list(self.codes),
        }


def classify(
    profile: BrandProfile | None, country: str, brand_rules: Mapping[str, BrandRule]
) -> Classification:
    """Classify ``profile`` in ``country`` (ISO2) under ``brand_rules`` (ISO2 -> rule; missing = default)."""
    c = country.upper()
    rule = brand_rules.get(c) or DEFAULT_BRAND_RULE
    reasons: list[str] = []
    codes: list[str] = []

    def done(cls: BrandClass) -> Classification:
        if rule.segmentation is Segmentation.NO:
            reasons.append(
                f"Operators in {c} do not split traffic into international and local; "
                "the class is kept for reporting only."
            )
            codes.append("not_segmented")
        return Classification(c, cls, tuple(reasons), tuple(codes))

    if profile is None:
        reasons.append(
            f"No brand profile is on file, so traffic to {c} counts as international (the default)."
        )
        codes.append("no_profile")
        return done(BrandClass.INTERNATIONAL)
    name = profile.name or "The brand"
    if profile.well_known:
        reasons.append(
            f"{name} is a well-known global brand; operators treat such brands as international "
            f"in {c} whatever their local presence."
        )
        codes.append("well_known_brand")
        return done(BrandClass.INTERNATIONAL)
    present = profile.countries.get(c, Presence()).factors()
    for f in LocalFactor:
        if f in present:
            reasons.append(f"{name} has {_FACTOR_WORDS[f]} in {c}.")
            codes.append(f"local_{f.value}")
    basis = "" if rule.in_dataset else " (default rule: no country-specific rule on file)"
    if rule.satisfied_by(present):
        reasons.append(f"In {c} a brand is local with {rule.describe()}{basis}, which {name} meets.")
        codes.append("local_requirement_met")
        if rule.operator_decides:
            reasons.append(
                f"Operators in {c} make the final decision on local status; local registration "
                "may still be refused."
            )
            codes.append("operator_decides")
        return done(BrandClass.LOCAL)
    if not present:
        reasons.append(
            f"{name} declares no local presence in {c}, so its traffic there counts as international."
        )
        codes.append("no_local_presence")
    else:
        lacking = [f for f in LocalFactor if f in rule.all_of and f not in present]
        for f in lacking:
            reasons.append(f"{c} requires {_FACTOR_WORDS[f]} for a local brand; {name} has none.")
            codes.append(f"missing_local_{f.value}")
        if not lacking:
            reasons.append(f"In {c} a brand is local with {rule.describe()}{basis}; {name} does not meet it.")
            codes.append("local_requirement_not_met")
    return done(BrandClass.INTERNATIONAL)


def parse_profile(data: Mapping[str, Any]) -> BrandProfile:
    """Build a profile from the ``PUT /v1/brand`` JSON body; raise ``RequestInvalid`` listing every problem.

    Shape: ``{"name": str, "well_known": bool, "countries": {"XX": {"local_entity"?, "local_team"?,
    "local_servers"?: bool}}}``.
    """
    problems: list[Problem] = []

    def bad(key: str, message: str) -> None:
        problems.append(Problem("brand profile", key, message))

    known = {"name", "well_known", "countries"}
    for key in sorted(set(data) - known):
        bad(key, "unknown field")
    name = data.get("name")
    if not isinstance(name, str) or not name.strip() or len(name) > 200:
        bad("name", "must be a non-empty string of at most 200 characters")
        name = ""
    well_known = data.get("well_known", False)
    if not isinstance(well_known, bool):
        bad("well_known", "must be true or false")
        well_known = False
    countries: dict[str, Presence] = {}
    raw = data.get("countries", {})
    if not isinstance(raw, Mapping):
        bad("countries", "must be an object keyed by ISO 3166-1 alpha-2 country code")
        raw = {}
    fields = ("local_entity", "local_team", "local_servers")
    for code, entry in raw.items():
        key = f"countries.{code}"
        if not (isinstance(code, str) and len(code) == 2 and code.isascii() and code.isalpha()):
            bad(key, "country must be an ISO 3166-1 alpha-2 code")
            continue
        if not isinstance(entry, Mapping):
            bad(key, "must be an object of booleans")
            continue
        for k in sorted(set(entry) - set(fields)):
            bad(f"{key}.{k}", "unknown field")
        flags = {k: entry.get(k, False) for k in fields}
        for k, v in flags.items():
            if not isinstance(v, bool):
                bad(f"{key}.{k}", "must be true or false")
        if code.upper() in countries:
            bad(key, "country given twice")
        countries[code.upper()] = Presence(*(v is True for v in flags.values()))
    if problems:
        raise RequestInvalid(tuple(problems))
    return BrandProfile(name=str(name).strip(), well_known=well_known, countries=countries)
