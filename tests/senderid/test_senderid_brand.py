"""Brand classification: international or local, with reasons, per country rule."""

from __future__ import annotations

import pytest

from senderid.brand import (
    BrandClass,
    BrandProfile,
    Presence,
    classify,
    parse_local_requires,
    parse_profile,
)
from senderid.errors import RequestInvalid
from senderid.rules import RuleBook, load_rules


@pytest.fixture(scope="module")
def book() -> RuleBook:
    return load_rules()


def acme(well_known: bool = False, **countries: Presence) -> BrandProfile:
    return BrandProfile(name="Acme", well_known=well_known, countries=countries)


def test_no_profile_is_international_everywhere_with_a_reason(book: RuleBook) -> None:
    for country in ("IN", "ID", "DE", "NO"):
        c = classify(None, country, book.brands)
        assert c.cls is BrandClass.INTERNATIONAL
        assert c.codes == ("no_profile",)
        assert "No brand profile" in c.reasons[0]


def test_indonesia_local_entity_makes_it_local(book: RuleBook) -> None:
    c = classify(acme(ID=Presence(local_entity=True)), "ID", book.brands)
    assert c.cls is BrandClass.LOCAL and c.cls == "local"
    assert c.codes == ("local_entity", "local_requirement_met")
    assert c.reasons == (
        "Acme has a local legal entity in ID.",
        "In ID a brand is local with a local legal entity, which Acme meets.",
    )


@pytest.mark.parametrize(
    "presence",
    [Presence(local_team=True), Presence(local_servers=True), Presence(local_team=True, local_servers=True)],
)
def test_indonesia_without_an_entity_stays_international(book: RuleBook, presence: Presence) -> None:
    c = classify(acme(ID=presence), "ID", book.brands)
    assert c.cls is BrandClass.INTERNATIONAL
    assert "missing_local_entity" in c.codes
    assert "ID requires a local legal entity for a local brand; Acme has none." in c.reasons


def test_india_needs_entity_and_local_servers(book: RuleBook) -> None:
    entity_only = classify(acme(IN=Presence(local_entity=True, local_team=True)), "IN", book.brands)
    assert entity_only.cls is BrandClass.INTERNATIONAL
    assert entity_only.codes == ("local_entity", "local_team", "missing_local_servers")
    servers_only = classify(acme(IN=Presence(local_servers=True)), "IN", book.brands)
    assert servers_only.codes == ("local_servers", "missing_local_entity")
    both = classify(acme(IN=Presence(local_entity=True, local_servers=True)), "IN", book.brands)
    assert both.cls is BrandClass.LOCAL
    assert "local servers" in both.reasons[-1]


def test_well_known_brand_is_international_regardless(book: RuleBook) -> None:
    everything = Presence(local_entity=True, local_team=True, local_servers=True)
    for country in ("IN", "ID", "DE", "TH"):
        c = classify(acme(True, **{country: everything}), country, book.brands)
        assert c.cls is BrandClass.INTERNATIONAL
        assert c.codes[0] == "well_known_brand"
        assert "well-known global brand" in c.reasons[0]


def test_no_presence_declared_in_the_country(book: RuleBook) -> None:
    c = classify(acme(ID=Presence(local_entity=True)), "PH", book.brands)
    assert c.cls is BrandClass.INTERNATIONAL
    assert c.codes == ("no_local_presence",)
    assert c.reasons == (
        "Acme declares no local presence in PH, so its traffic there counts as international.",
    )


@pytest.mark.parametrize(
    "presence", [Presence(local_entity=True), Presence(local_team=True), Presence(local_servers=True)]
)
def test_default_rule_any_local_presence_makes_it_local(book: RuleBook, presence: Presence) -> None:
    c = classify(acme(DE=presence), "de", book.brands)
    assert c.country == "DE" and c.cls is BrandClass.LOCAL
    assert "default rule" in c.reasons[-1]


def test_vietnam_local_warns_that_operators_decide(book: RuleBook) -> None:
    c = classify(acme(VN=Presence(local_entity=True)), "VN", book.brands)
    assert c.cls is BrandClass.LOCAL
    assert c.codes[-1] == "operator_decides"


def test_thailand_not_segmented_is_said(book: RuleBook) -> None:
    c = classify(acme(TH=Presence(local_team=True)), "TH", book.brands)
    assert c.cls is BrandClass.LOCAL
    assert c.codes[-1] == "not_segmented"
    c = classify(None, "TH", book.brands)
    assert c.codes == ("no_profile", "not_segmented")


def test_override_can_demand_more_than_the_data() -> None:
    strict = load_rules({"ID": {"local_requires": ["entity", "team"]}})
    c = classify(acme(ID=Presence(local_entity=True)), "ID", strict.brands)
    assert c.cls is BrandClass.INTERNATIONAL and c.codes[-1] == "missing_local_team"


def test_every_brand_rule_country_never_classes_a_well_known_or_unprofiled_brand_local(
    book: RuleBook,
) -> None:
    everything = Presence(True, True, True)
    for country in book.brands:
        assert classify(None, country, book.brands).cls is BrandClass.INTERNATIONAL
        assert (
            classify(acme(True, **{country: everything}), country, book.brands).cls
            is BrandClass.INTERNATIONAL
        )
        assert classify(acme(**{country: everything}), country, book.brands).cls is BrandClass.LOCAL


def test_classification_json_has_the_contract_shape(book: RuleBook) -> None:
    body = classify(None, "IN", book.brands).as_json()
    assert body["country"] == "IN" and body["class"] == "international" and body["reasons"]


@pytest.mark.parametrize(
    ("text", "all_of", "any_of", "operator_decides"),
    [
        ("n/a (not segregated)", set(), {"entity", "team", "servers"}, False),
        ("unknown", {"entity"}, set(), False),
        ("Kuwait commercial registration/trade licence", {"entity"}, set(), False),
        ("entity + all message systems in India", {"entity", "servers"}, set(), False),
        ("local office, local servers for SMS", {"entity", "servers"}, set(), False),
        ("licence (not sufficient alone: operators decide)", {"entity"}, set(), True),
    ],
)
def test_local_requires_reading(
    text: str, all_of: set[str], any_of: set[str], operator_decides: bool
) -> None:
    a, b, op = parse_local_requires(text)
    assert ({f.value for f in a}, {f.value for f in b}, op) == (all_of, any_of, operator_decides)


def test_parse_profile_accepts_the_contract_body() -> None:
    p = parse_profile(
        {
            "name": " Acme ",
            "well_known": False,
            "countries": {"id": {"local_entity": True}, "IN": {"local_servers": True}},
        }
    )
    assert p == BrandProfile(
        "Acme", False, {"ID": Presence(local_entity=True), "IN": Presence(local_servers=True)}
    )
    assert parse_profile({"name": "Acme"}).countries == {}


def test_parse_profile_reports_every_problem() -> None:
    with pytest.raises(RequestInvalid) as info:
        parse_profile(
            {
                "name": "",
                "well_known": "yes",
                "extra": 1,
                "countries": {"IND": {}, "DE": {"local_entity": "true", "hq": True}, "FR": [], "de": {}},
            }
        )
    assert {p.column for p in info.value.problems} == {
        "name",
        "well_known",
        "extra",
        "countries.IND",
        "countries.DE.local_entity",
        "countries.DE.hq",
        "countries.FR",
        "countries.de",
    }
    with pytest.raises(RequestInvalid):
        parse_profile({"name": "Acme", "countries": ["DE"]})
