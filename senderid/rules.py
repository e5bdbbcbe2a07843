"""Per-country sender-ID rules and brand rules: loaded from ``data/``, validated at start, overridable.

``load_rules(overrides)`` reads ``data/senderid_countries.csv`` and ``data/brand_rules.csv`` (packaged with
the code), validates every row, applies config overrides and returns a :class:`RuleBook` holding a
:class:`CountryRule` for every region ``phonenumbers`` knows: countries missing from the data get the
default rule. Problems are collected and raised together as one :class:`~senderid.errors.RulesError`
naming file, row (line number; 1 is the header) and column.

``unknown`` in the data means "not known", never "no". The policy for unknown values (argued in
``docs/senderid.md``):

- registration unknown  -> enforced: an unregistered alphanumeric sender is refused with a message that
  says the requirement is not known (recoverable by filing a request or by a config override; the
  opposite mistake loses messages silently at the operator);
- documents unknown     -> :data:`BASELINE_DOCUMENTS` are required (the two codes nearly every known
  country asks for) and the rule is marked ``documents_known=False``;
- alphanumeric/numeric support unknown -> accepted with a warning (the operator may overwrite the sender);
- template registration unknown -> not enforced (only 3 of 63 known countries demand it, all known);
- lead time unknown     -> ``None``, shown as "not known".

Override keys (per ISO2 country, or ``"*"`` for the default rule), all optional::

    alphanumeric = "yes" | "limited" | "no" | "unknown"       numeric = (same values)
    registration_required = true | false | "unknown"          template_registration_required = (same)
    priced_apart = true | false | "unknown"                   fallback_allowed = true | false
    required_documents = ["sender_id", ...] | "unknown"
    lead_time_days = 14 | "7-14" | [7, 14] | "unknown"
    name = "..."   notes = "..."
    segmentation = "yes" | "no" | "partial" | "unknown"       operator_decides = true | false
    local_requires = ["entity", "servers"] | "any"
"""

from __future__ import annotations

import csv
import enum
import io
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, replace
from importlib import resources
from typing import Any, TypeVar

import phonenumbers

from senderid.brand import DEFAULT_BRAND_RULE, BrandRule, LocalFactor, Segmentation, parse_local_requires
from senderid.documents import DOCUMENT_LABELS
from senderid.errors import Problem, RulesError

COUNTRIES_FILE = "senderid_countries.csv"
BRANDS_FILE = "brand_rules.csv"
QUIET_HOURS_FILE = "quiet_hours.csv"

BASELINE_DOCUMENTS: frozenset[str] = frozenset({"sender_id", "company_registration"})
"""Documents required where the data does not know which: the two codes most rows ask for."""

KNOWN_REGIONS: frozenset[str] = frozenset(phonenumbers.SUPPORTED_REGIONS)


class Support(enum.StrEnum):
    """Whether a kind of sender is accepted. ``limited``: only on some operators, or may be overwritten."""

    YES = "yes"
    LIMITED = "limited"
    NO = "no"
    UNKNOWN = "unknown"


class Tri(enum.StrEnum):
    """A yes/no fact that may not be known."""

    YES = "yes"
    NO = "no"
    UNKNOWN = "unknown"


class Confidence(enum.StrEnum):
    HIGH = "high"
    MEDIUM = "medium"
    LOW = "low"


@dataclass(frozen=True, slots=True)
class LeadTime:
    """Expected registration lead time in days, as a range (equal ends for a single figure)."""

    min_days: int
    max_days: int

    def __str__(self) -> str:
        if self.max_days == 0:
            return "none (immediate)"
        if self.min_days == self.max_days:
            return f"{self.min_days} days"
        return f"{self.min_days}-{self.max_days} days"


@dataclass(frozen=True, slots=True)
class CountryRule:
    """What one destination country demands of senders (see the module docstring for ``unknown``)."""

    iso2: str
    name: str
    alphanumeric: Support = Support.UNKNOWN
    registration_required: Tri = Tri.UNKNOWN
    numeric: Support = Support.UNKNOWN
    template_registration_required: Tri = Tri.UNKNOWN
    required_documents: frozenset[str] = BASELINE_DOCUMENTS
    documents_known: bool = False
    priced_apart: Tri = Tri.UNKNOWN
    lead_time: LeadTime | None = None
    notes: str = ""
    template_note: str = ""
    pricing_note: str = ""
    data_localization: str = ""
    sources: tuple[str, ...] = ()
    confidence: Confidence | None = None
    fallback_allowed: bool = True
    in_dataset: bool = False

    @property
    def registration_enforced(self) -> bool:
        """Alphanumeric senders must be approved before use (``yes``, and ``unknown`` by policy)."""
        return self.registration_required is not Tri.NO

    @property
    def templates_enforced(self) -> bool:
        """Message text must match a registered template (``yes`` only, by policy)."""
        return self.template_registration_required is Tri.YES


@dataclass(frozen=True, slots=True)
class RuleBook:
    """Every country's rule (all regions ``phonenumbers`` knows) and the brand rules."""

    countries: Mapping[str, CountryRule]
    brands: Mapping[str, BrandRule]
    default: CountryRule
    default_brand: BrandRule = DEFAULT_BRAND_RULE

    def country(self, iso2: str) -> CountryRule:
        rule = self.countries.get(iso2)
        if rule is None:
            rule = self.countries.get(iso2.upper()) or replace(
                self.default, iso2=iso2.upper(), name=iso2.upper()
            )
        return rule

    def brand_rule(self, iso2: str) -> BrandRule:
        return self.brands.get(iso2.upper()) or replace(self.default_brand, iso2=iso2.upper())

    def dataset(self) -> list[CountryRule]:
        """The countries the data (or an override) describes, by ISO code."""
        return sorted((r for r in self.countries.values() if r.in_dataset), key=lambda r: r.iso2)


COUNTRY_COLUMNS = (
    "iso2",
    "country",
    "alphanumeric_sender_supported",
    "alphanumeric_registration_required",
    "numeric_sender_supported",
    "long_code_or_shortcode_notes",
    "template_registration_required",
    "international_vs_local_pricing_distinction",
    "registration_lead_time_days",
    "documents_required",
    "data_localization_note",
    "source_url",
    "confidence",
)
BRAND_COLUMNS = (
    "iso2",
    "country",
    "segmentation",
    "local_requires",
    "international_restrictions",
    "local_restrictions",
    "source_url",
    "confidence",
)


def read_data(name: str) -> str:
    """The text of a packaged data file (``senderid/data/<name>``)."""
    return (resources.files("senderid") / "data" / name).read_text(encoding="utf-8")


def load_rules(
    overrides: Mapping[str, Mapping[str, Any]] | None = None,
    *,
    countries_csv: str | None = None,
    brands_csv: str | None = None,
) -> RuleBook:
    """Load, validate and override the rules; raise ``RulesError`` listing every problem found."""
    problems: list[Problem] = []
    text = countries_csv if countries_csv is not None else read_data(COUNTRIES_FILE)
    countries = parse_countries(text, problems)
    btext = brands_csv if brands_csv is not None else read_data(BRANDS_FILE)
    brands = parse_brands(btext, problems)
    default = CountryRule(iso2="*", name="default")
    default_brand = DEFAULT_BRAND_RULE
    over = dict(overrides or {})
    star = over.get("*")
    if star is not None and not isinstance(star, Mapping):
        problems.append(Problem("overrides", "*", "must be a table of keys"))
    elif star is not None:
        default = _override_country(default, star, "*", problems)
        default_brand = _override_brand(default_brand, star, "*", problems)
    table: dict[str, CountryRule] = {r: replace(default, iso2=r, name=r) for r in sorted(KNOWN_REGIONS)}
    table.update(countries)
    for key, values in over.items():
        if key == "*":
            continue
        iso2 = key.upper() if isinstance(key, str) else ""
        if iso2 not in KNOWN_REGIONS:
            problems.append(
                Problem("overrides", str(key), "not an ISO 3166-1 alpha-2 code of a region with phones")
            )
            continue
        if not isinstance(values, Mapping):
            problems.append(Problem("overrides", iso2, "must be a table of keys"))
            continue
        overridden = _override_country(table[iso2], values, iso2, problems)
        table[iso2] = replace(overridden, in_dataset=True) if set(values) & _COUNTRY_KEYS else overridden
        if any(k in _BRAND_KEYS for k in values):
            base = brands.get(iso2) or replace(default_brand, iso2=iso2)
            brands[iso2] = replace(_override_brand(base, values, iso2, problems), in_dataset=True)
    if problems:
        raise RulesError(tuple(problems))
    return RuleBook(countries=table, brands=brands, default=default, default_brand=default_brand)


def _rows(
    text: str, where: str, columns: tuple[str, ...], problems: list[Problem]
) -> Iterator[tuple[int, dict[str, str]]]:
    reader = csv.DictReader(io.StringIO(text))
    header = reader.fieldnames or []
    missing = [c for c in columns if c not in header]
    for c in missing:
        problems.append(Problem(where, c, "column missing from the header", row=1))
    if missing:
        return
    for raw in reader:
        row = reader.line_num
        if None in raw or any(v is None for v in raw.values()):
            problems.append(Problem(where, "*", f"expected {len(header)} fields", row=row))
            continue
        yield row, {k: v.strip() for k, v in raw.items() if k is not None}


E = TypeVar("E", bound=enum.Enum)


def _enum(
    cls: type[E], value: str, where: str, row: int | None, column: str, problems: list[Problem]
) -> E | None:
    try:
        return cls(value)
    except ValueError:
        allowed = ", ".join(str(m.value) for m in cls)
        problems.append(Problem(where, column, f"'{value}' is not one of: {allowed}", row=row))
        return None


_HEAD = re.compile(r"([a-z/]+)(.*)", re.DOTALL)


def _head_and_note(value: str) -> tuple[str, str]:
    """Split 'yes; note', 'no (note)' or 'no (note); more' into ('yes'|'no'|..., 'note')."""
    m = _HEAD.fullmatch(value)
    if m is None:
        return value, ""
    note = m.group(2).strip().lstrip(";").strip()
    if note.startswith("(") and note.endswith(")") and note.count("(") == 1:
        note = note[1:-1]
    return m.group(1), note


def parse_lead_time(value: str) -> LeadTime | None:
    """'unknown' -> None; '14' -> 14..14; '7-14' -> 7..14. Raises ValueError otherwise."""
    if value == "unknown":
        return None
    m = re.fullmatch(r"(\d{1,3})(?:-(\d{1,3}))?", value)
    if m is None:
        raise ValueError(f"'{value}' is not a day count, a range such as 7-14, or unknown")
    lo = int(m.group(1))
    hi = int(m.group(2)) if m.group(2) else lo
    if hi < lo:
        raise ValueError(f"range '{value}' ends before it starts")
    return LeadTime(lo, hi)


def _documents(
    value: str, where: str, row: int | None, column: str, problems: list[Problem]
) -> tuple[frozenset[str], bool]:
    if value == "unknown":
        return BASELINE_DOCUMENTS, False
    if value == "none":
        return frozenset(), True
    codes = [c.strip() for c in value.split(";")]
    bad = [c for c in codes if c not in DOCUMENT_LABELS]
    if bad:
        problems.append(Problem(where, column, f"unknown document code(s): {', '.join(bad)}", row=row))
    if len(set(codes)) != len(codes):
        problems.append(Problem(where, column, "a document code is listed twice", row=row))
    return frozenset(codes), True


def parse_countries(
    text: str, problems: list[Problem], where: str = COUNTRIES_FILE
) -> dict[str, CountryRule]:
    """Rows of ``senderid_countries.csv`` as rules; every problem is appended to ``problems``."""
    rules: dict[str, CountryRule] = {}
    for row, r in _rows(text, where, COUNTRY_COLUMNS, problems):
        before = len(problems)
        iso2 = r["iso2"]
        if iso2 not in KNOWN_REGIONS:
            problems.append(
                Problem(where, "iso2", f"'{iso2}' is not an ISO 3166-1 alpha-2 region code", row=row)
            )
        elif iso2 in rules:
            problems.append(Problem(where, "iso2", f"'{iso2}' appears twice", row=row))
        if not r["country"]:
            problems.append(Problem(where, "country", "empty", row=row))
        alpha = _enum(
            Support, r["alphanumeric_sender_supported"], where, row, "alphanumeric_sender_supported", problems
        )
        reg_value = r["alphanumeric_registration_required"]
        if reg_value == "n/a":
            if alpha is not Support.NO:
                problems.append(
                    Problem(
                        where,
                        "alphanumeric_registration_required",
                        "'n/a' only fits a country that accepts no alphanumeric sender",
                        row=row,
                    )
                )
            registration: Tri | None = Tri.NO
        else:
            registration = _enum(Tri, reg_value, where, row, "alphanumeric_registration_required", problems)
        numeric = _enum(
            Support, r["numeric_sender_supported"], where, row, "numeric_sender_supported", problems
        )
        t_head, t_note = _head_and_note(r["template_registration_required"])
        templates = _enum(Tri, t_head, where, row, "template_registration_required", problems)
        p_head, p_note = _head_and_note(r["international_vs_local_pricing_distinction"])
        priced = _enum(Tri, p_head, where, row, "international_vs_local_pricing_distinction", problems)
        try:
            lead = parse_lead_time(r["registration_lead_time_days"])
        except ValueError as exc:
            problems.append(Problem(where, "registration_lead_time_days", str(exc), row=row))
            lead = None
        docs, docs_known = _documents(r["documents_required"], where, row, "documents_required", problems)
        confidence = _enum(Confidence, r["confidence"], where, row, "confidence", problems)
        sources = tuple(s.strip() for s in r["source_url"].split("|") if s.strip())
        if not sources or not all(s.startswith("https://") for s in sources):
            problems.append(
                Problem(where, "source_url", "needs one or more https:// sources separated by |", row=row)
            )
        if len(problems) > before:
            continue
        assert alpha and registration and numeric and templates and priced and confidence
        rules[iso2] = CountryRule(
            iso2=iso2,
            name=r["country"],
            alphanumeric=alpha,
            registration_required=registration,
            numeric=numeric,
            template_registration_required=templates,
            required_documents=docs,
            documents_known=docs_known,
            priced_apart=priced,
            lead_time=lead,
            notes=r["long_code_or_shortcode_notes"],
            template_note=t_note,
            pricing_note=p_note,
            data_localization=r["data_localization_note"],
            sources=sources,
            confidence=confidence,
            in_dataset=True,
        )
    return rules


def parse_brands(text: str, problems: list[Problem], where: str = BRANDS_FILE) -> dict[str, BrandRule]:
    """Rows of ``brand_rules.csv`` as brand rules; every problem is appended to ``problems``."""
    rules: dict[str, BrandRule] = {}
    for row, r in _rows(text, where, BRAND_COLUMNS, problems):
        before = len(problems)
        iso2 = r["iso2"]
        if iso2 not in KNOWN_REGIONS:
            problems.append(
                Problem(where, "iso2", f"'{iso2}' is not an ISO 3166-1 alpha-2 region code", row=row)
            )
        elif iso2 in rules:
            problems.append(Problem(where, "iso2", f"'{iso2}' appears twice", row=row))
        seg = _enum(Segmentation, r["segmentation"], where, row, "segmentation", problems)
        if not r["local_requires"]:
            problems.append(
                Problem(where, "local_requires", "empty (write 'unknown' when not known)", row=row)
            )
        _enum(Confidence, r["confidence"], where, row, "confidence", problems)
        if len(problems) > before:
            continue
        assert seg is not None
        all_of, any_of, operator_decides = parse_local_requires(r["local_requires"])
        rules[iso2] = BrandRule(
            iso2=iso2,
            segmentation=seg,
            all_of=all_of,
            any_of=any_of,
            operator_decides=operator_decides,
            local_requires=r["local_requires"],
            international_restrictions=r["international_restrictions"],
            local_restrictions=r["local_restrictions"],
            in_dataset=True,
        )
    return rules


_COUNTRY_KEYS = frozenset(
    {
        "name",
        "alphanumeric",
        "registration_required",
        "numeric",
        "template_registration_required",
        "required_documents",
        "priced_apart",
        "lead_time_days",
        "notes",
        "fallback_allowed",
    }
)
_BRAND_KEYS = frozenset({"segmentation", "local_requires", "operator_decides"})


def _tri(value: Any) -> Tri | None:
    if isinstance(value, bool):
        return Tri.YES if value else Tri.NO
    if isinstance(value, str) and value in Tri.__members__.values():
        return Tri(value)
    return None


def _override_country(
    rule: CountryRule, values: Mapping[str, Any], iso2: str, problems: list[Problem]
) -> CountryRule:
    changes: dict[str, Any] = {}

    def bad(key: str, message: str) -> None:
        problems.append(Problem("overrides", f"{iso2}.{key}", message))

    for key in sorted(set(values) - _COUNTRY_KEYS - _BRAND_KEYS):
        bad(key, "unknown key")
    for key in ("alphanumeric", "numeric"):
        if key in values:
            v = values[key]
            if isinstance(v, str) and v in Support.__members__.values():
                changes[key] = Support(v)
            else:
                bad(key, "must be one of: yes, limited, no, unknown")
    for key in ("registration_required", "template_registration_required", "priced_apart"):
        if key in values:
            tri = _tri(values[key])
            if tri is None:
                bad(key, 'must be true, false or "unknown"')
            else:
                changes[key] = tri
    for key in ("name", "notes"):
        if key in values:
            if isinstance(values[key], str):
                changes[key] = values[key]
            else:
                bad(key, "must be a string")
    if "fallback_allowed" in values:
        if isinstance(values["fallback_allowed"], bool):
            changes["fallback_allowed"] = values["fallback_allowed"]
        else:
            bad("fallback_allowed", "must be true or false")
    if "required_documents" in values:
        docs = values["required_documents"]
        if docs == "unknown":
            changes.update(required_documents=BASELINE_DOCUMENTS, documents_known=False)
        elif isinstance(docs, list | tuple) and all(isinstance(d, str) for d in docs):
            unknown = [d for d in docs if d not in DOCUMENT_LABELS]
            if unknown:
                bad("required_documents", f"unknown document code(s): {', '.join(unknown)}")
            changes.update(required_documents=frozenset(docs), documents_known=True)
        else:
            bad("required_documents", 'must be a list of document codes or "unknown"')
    if "lead_time_days" in values:
        lead = values["lead_time_days"]
        try:
            if isinstance(lead, bool):
                raise ValueError('must be a day count, [min, max], "min-max" or "unknown"')
            if isinstance(lead, int):
                lead = str(lead)
            elif isinstance(lead, list | tuple) and len(lead) == 2 and all(type(x) is int for x in lead):
                lead = f"{lead[0]}-{lead[1]}"
            if not isinstance(lead, str):
                raise ValueError('must be a day count, [min, max], "min-max" or "unknown"')
            changes["lead_time"] = parse_lead_time(lead)
        except ValueError as exc:
            bad("lead_time_days", str(exc))
    return replace(rule, **changes)


def _override_brand(
    rule: BrandRule, values: Mapping[str, Any], iso2: str, problems: list[Problem]
) -> BrandRule:
    changes: dict[str, Any] = {}

    def bad(key: str, message: str) -> None:
        problems.append(Problem("overrides", f"{iso2}.{key}", message))

    if "segmentation" in values:
        v = values["segmentation"]
        if isinstance(v, str) and v in Segmentation.__members__.values():
            changes["segmentation"] = Segmentation(v)
        else:
            bad("segmentation", "must be one of: yes, no, partial, unknown")
    if "operator_decides" in values:
        if isinstance(values["operator_decides"], bool):
            changes["operator_decides"] = values["operator_decides"]
        else:
            bad("operator_decides", "must be true or false")
    if "local_requires" in values:
        v = values["local_requires"]
        factors = {f.value: f for f in LocalFactor}
        if v == "any":
            changes.update(all_of=frozenset(), any_of=frozenset(LocalFactor))
        elif isinstance(v, list | tuple) and v and all(isinstance(x, str) and x in factors for x in v):
            changes.update(all_of=frozenset(factors[x] for x in v), any_of=frozenset())
        else:
            bad("local_requires", 'must be "any" or a non-empty list of: entity, team, servers')
    return replace(rule, **changes)
