"""Country and brand rules: every CSV row loads as the CSV says; bad data is reported all at once."""

from __future__ import annotations

import csv
import io
import re
from importlib import resources

import pytest

from senderid.brand import LocalFactor, Segmentation
from senderid.errors import RulesError
from senderid.rules import (
    BASELINE_DOCUMENTS,
    BRAND_COLUMNS,
    COUNTRY_COLUMNS,
    CountryRule,
    LeadTime,
    RuleBook,
    Support,
    Tri,
    load_rules,
)


def _csv(name: str) -> list[dict[str, str]]:
    text = (resources.files("senderid") / "data" / name).read_text(encoding="utf-8")
    return list(csv.DictReader(io.StringIO(text)))


COUNTRY_ROWS = _csv("senderid_countries.csv")
BRAND_ROWS = _csv("brand_rules.csv")

# Expectations written from the data's vocabulary, independently of the loader's parsing code.
SUPPORT = {"yes": Support.YES, "no": Support.NO, "limited": Support.LIMITED, "unknown": Support.UNKNOWN}
REGISTRATION = {"yes": Tri.YES, "no": Tri.NO, "unknown": Tri.UNKNOWN, "n/a": Tri.NO}
TRI = {"yes": Tri.YES, "no": Tri.NO, "unknown": Tri.UNKNOWN}


@pytest.fixture(scope="module")
def book() -> RuleBook:
    return load_rules()


def test_data_holds_the_63_countries() -> None:
    assert len(COUNTRY_ROWS) == 63
    assert len({r["iso2"] for r in COUNTRY_ROWS}) == 63


@pytest.mark.parametrize("row", COUNTRY_ROWS, ids=[r["iso2"] for r in COUNTRY_ROWS])
def test_every_country_rule_matches_its_csv_row(book: RuleBook, row: dict[str, str]) -> None:
    rule = book.country(row["iso2"])
    assert rule.in_dataset
    assert rule.name == row["country"]
    assert rule.alphanumeric is SUPPORT[row["alphanumeric_sender_supported"]]
    assert rule.registration_required is REGISTRATION[row["alphanumeric_registration_required"]]
    assert rule.numeric is SUPPORT[row["numeric_sender_supported"]]
    assert rule.template_registration_required is TRI[row["template_registration_required"].split(" ", 1)[0]]
    assert rule.priced_apart is TRI[re.split(r"[;( ]", row["international_vs_local_pricing_distinction"])[0]]
    lead = row["registration_lead_time_days"]
    if lead == "unknown":
        assert rule.lead_time is None
    else:
        lo, _, hi = lead.partition("-")
        assert rule.lead_time == LeadTime(int(lo), int(hi or lo))
    docs = row["documents_required"]
    if docs == "unknown":
        assert (rule.required_documents, rule.documents_known) == (BASELINE_DOCUMENTS, False)
    elif docs == "none":
        assert (rule.required_documents, rule.documents_known) == (frozenset(), True)
    else:
        assert (rule.required_documents, rule.documents_known) == (frozenset(docs.split(";")), True)
    assert rule.notes == row["long_code_or_shortcode_notes"]
    assert rule.data_localization == row["data_localization_note"]
    assert rule.sources == tuple(s.strip() for s in row["source_url"].split("|"))
    assert rule.confidence is not None and rule.confidence.value == row["confidence"]
    # Unknown is "not known", never "no": registration is enforced unless the data says no.
    assert rule.registration_enforced is (row["alphanumeric_registration_required"] in ("yes", "unknown"))
    assert rule.templates_enforced is row["template_registration_required"].startswith("yes")


def test_spot_checks_read_by_hand(book: RuleBook) -> None:
    ae = book.country("AE")
    assert (ae.alphanumeric, ae.registration_required, ae.numeric) == (Support.YES, Tri.YES, Support.NO)
    assert ae.lead_time == LeadTime(14, 15) and str(ae.lead_time) == "14-15 days"
    assert {"noc", "loa", "url_allowlist"} <= ae.required_documents
    assert ae.template_note == "URL allowlist"
    india = book.country("IN")
    assert india.templates_enforced and india.template_note.startswith("DLT template ID")
    assert india.pricing_note.startswith("ILDO/international rate")
    us = book.country("US")
    assert us.alphanumeric is Support.NO and us.registration_required is Tri.NO
    assert book.country("DE").lead_time == LeadTime(0, 0) and str(LeadTime(0, 0)) == "none (immediate)"
    at = book.country("AT")
    assert at.registration_required is Tri.UNKNOWN and at.registration_enforced
    th = book.country("TH")
    assert (th.priced_apart, th.pricing_note) == (Tri.NO, "(per Twilio); pricing split unknown")


def test_countries_missing_from_the_data_get_the_default_rule(book: RuleBook) -> None:
    norway = book.country("NO")
    assert not norway.in_dataset
    assert norway.iso2 == "NO"
    assert norway.alphanumeric is Support.UNKNOWN and norway.registration_required is Tri.UNKNOWN
    assert norway.registration_enforced and not norway.templates_enforced
    assert norway.required_documents == BASELINE_DOCUMENTS and not norway.documents_known
    assert norway.lead_time is None
    assert book.country("no") is norway
    odd = book.country("zz")
    assert (odd.iso2, odd.in_dataset) == ("ZZ", False)
    assert len(book.countries) >= 240
    assert [r.iso2 for r in book.dataset()] == sorted(r["iso2"] for r in COUNTRY_ROWS)


EXPECTED_BRAND_BASIS = {
    # iso2: (all_of, any presence counts, operator decides) read from each row's local_requires text
    "IN": ({"entity", "servers"}, False, False),
    "ID": ({"entity"}, False, False),
    "PH": ({"entity"}, False, False),
    "VN": ({"entity"}, False, True),
    "MY": ({"entity"}, False, False),
    "TH": (set(), True, False),
    "BD": ({"entity"}, False, False),
    "PK": ({"entity"}, False, False),
    "LK": ({"entity"}, False, False),
    "SA": ({"entity"}, False, False),
    "AE": ({"entity"}, False, False),
    "QA": ({"entity"}, False, False),
    "KW": ({"entity"}, False, False),
    "OM": ({"entity"}, False, False),
    "EG": ({"entity"}, False, False),
    "MA": ({"entity"}, False, False),
    "NG": ({"entity"}, False, False),
    "KE": ({"entity"}, False, False),
    "GH": ({"entity"}, False, False),
    "ZA": ({"entity"}, False, False),
    "TR": ({"entity"}, False, False),
    "JP": ({"entity"}, False, False),
    "CN": ({"entity"}, False, False),
    "MZ": ({"entity"}, False, False),
    "CM": ({"entity"}, False, False),
}


def test_every_brand_row_is_pinned() -> None:
    assert sorted(r["iso2"] for r in BRAND_ROWS) == sorted(EXPECTED_BRAND_BASIS)


@pytest.mark.parametrize("row", BRAND_ROWS, ids=[r["iso2"] for r in BRAND_ROWS])
def test_every_brand_rule_matches_its_csv_row(book: RuleBook, row: dict[str, str]) -> None:
    rule = book.brand_rule(row["iso2"])
    all_of, any_presence, operator_decides = EXPECTED_BRAND_BASIS[row["iso2"]]
    assert rule.in_dataset
    assert rule.segmentation is Segmentation(row["segmentation"])
    assert {f.value for f in rule.all_of} == all_of
    assert rule.any_of == (frozenset(LocalFactor) if any_presence else frozenset())
    assert rule.operator_decides is operator_decides
    assert rule.local_requires == row["local_requires"]
    assert rule.international_restrictions == row["international_restrictions"]
    assert rule.local_restrictions == row["local_restrictions"]


def test_brand_rule_for_a_country_without_a_row_is_the_default(book: RuleBook) -> None:
    de = book.brand_rule("de")
    assert (de.iso2, de.in_dataset, de.segmentation) == ("DE", False, Segmentation.UNKNOWN)
    assert de.all_of == frozenset() and de.any_of == frozenset(LocalFactor)


HEADER = ",".join(COUNTRY_COLUMNS)
GOOD = "DE,Germany,yes,no,yes,notes,no,no,0,none,GDPR,https://example.org/de,high"


def _country_csv(*rows: str) -> str:
    return "\n".join([HEADER, *rows]) + "\n"


def test_valid_minimal_country_file_loads() -> None:
    book = load_rules(countries_csv=_country_csv(GOOD))
    assert book.country("DE").in_dataset and not book.country("FR").in_dataset


def test_every_bad_row_is_reported_at_once_with_row_and_column() -> None:
    text = _country_csv(
        GOOD,  # line 2
        "XX,Nowhere,yes,no,yes,n,no,no,0,none,n,https://e.org,high",  # line 3: bad iso2
        "DE,Germany again,yes,no,yes,n,no,no,0,none,n,https://e.org,high",  # line 4: duplicate
        "FR,France,maybe,no,perhaps,n,no,no,0,none,n,https://e.org,high",  # line 5: two bad enums
        "GB,UK,yes,n/a,yes,n,no,no,9-3,sender_id;passport,n,http://e.org,certain",  # line 6: five problems
        "ES,Spain,yes,no",  # line 7: short row
    )
    with pytest.raises(RulesError) as info:
        load_rules(countries_csv=text)
    found = {(p.row, p.column) for p in info.value.problems}
    assert found == {
        (3, "iso2"),
        (4, "iso2"),
        (5, "alphanumeric_sender_supported"),
        (5, "numeric_sender_supported"),
        (6, "alphanumeric_registration_required"),
        (6, "registration_lead_time_days"),
        (6, "documents_required"),
        (6, "source_url"),
        (6, "confidence"),
        (7, "*"),
    }
    assert all(p.where == "senderid_countries.csv" for p in info.value.problems)
    message = str(info.value)
    assert (
        "10 problem(s)" in message
        and "row 6, documents_required: unknown document code(s): passport" in message
    )
    assert info.value.code == "rules_invalid"


def test_missing_header_columns_are_reported() -> None:
    with pytest.raises(RulesError) as info:
        load_rules(countries_csv="iso2,country\nDE,Germany\n")
    missing = {p.column for p in info.value.problems}
    assert missing == set(COUNTRY_COLUMNS) - {"iso2", "country"}
    assert {p.row for p in info.value.problems} == {1}


def test_bad_brand_rows_are_reported() -> None:
    header = ",".join(BRAND_COLUMNS)
    text = f"{header}\nIN,India,sometimes,,x,y,https://e.org,high\nID,Indonesia,yes,entity,x,y,https://e.org,high\n"
    with pytest.raises(RulesError) as info:
        load_rules(brands_csv=text)
    assert {(p.row, p.column) for p in info.value.problems} == {(2, "segmentation"), (2, "local_requires")}


def test_overrides_change_known_and_unknown_countries() -> None:
    book = load_rules(
        {
            "AT": {"registration_required": False, "lead_time_days": [1, 3], "fallback_allowed": False},
            "no": {
                "alphanumeric": "yes",
                "registration_required": "no",
                "required_documents": ["sender_id"],
                "name": "Norway",
            },
            "IN": {"local_requires": ["entity"], "operator_decides": True},
            "US": {"lead_time_days": 10, "template_registration_required": "unknown", "priced_apart": True},
        }
    )
    at = book.country("AT")
    assert at.registration_required is Tri.NO and at.lead_time == LeadTime(1, 3) and not at.fallback_allowed
    norway = book.country("NO")
    assert norway.in_dataset and norway.name == "Norway" and norway.alphanumeric is Support.YES
    assert norway.required_documents == {"sender_id"} and norway.documents_known
    india = book.brand_rule("IN")
    assert india.all_of == {LocalFactor.ENTITY} and india.operator_decides
    assert book.country("IN") == load_rules().country("IN")  # brand keys leave the country rule alone
    us = book.country("US")
    assert (us.lead_time, us.template_registration_required, us.priced_apart) == (
        LeadTime(10, 10),
        Tri.UNKNOWN,
        Tri.YES,
    )


def test_star_override_changes_the_default_rule_only() -> None:
    book = load_rules({"*": {"registration_required": "no", "local_requires": ["entity"]}})
    assert not book.country("NO").registration_enforced
    assert book.country("AE").registration_enforced
    assert book.brand_rule("DE").all_of == {LocalFactor.ENTITY}
    assert book.brand_rule("IN").all_of == {LocalFactor.ENTITY, LocalFactor.SERVERS}


def test_every_bad_override_is_reported_at_once() -> None:
    with pytest.raises(RulesError) as info:
        load_rules(
            {
                "QQ": {"alphanumeric": "yes"},
                "AE": {
                    "alphanumeric": "sometimes",
                    "registration_required": 1,
                    "colour": "blue",
                    "required_documents": ["passport"],
                    "lead_time_days": "soon",
                    "fallback_allowed": "yes",
                },
                "IN": {"local_requires": ["money"], "segmentation": "maybe", "operator_decides": "no"},
                "GB": "not a table",
                "US": {"lead_time_days": True, "name": 5},
            }
        )
    found = {p.column for p in info.value.problems}
    assert found == {
        "QQ",
        "AE.alphanumeric",
        "AE.registration_required",
        "AE.colour",
        "AE.required_documents",
        "AE.lead_time_days",
        "AE.fallback_allowed",
        "IN.local_requires",
        "IN.segmentation",
        "IN.operator_decides",
        "GB",
        "US.lead_time_days",
        "US.name",
    }
    assert all(p.where == "overrides" and p.row is None for p in info.value.problems)


def test_rules_are_frozen(book: RuleBook) -> None:
    rule: CountryRule = book.country("DE")
    with pytest.raises(AttributeError):
        rule.registration_required = Tri.YES  # type: ignore[misc]
