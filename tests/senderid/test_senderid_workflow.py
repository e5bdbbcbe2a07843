"""Registration workflow: every transition (valid and invalid), missing documents, audit, expiry."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from senderid.errors import InvalidTransition, ReasonRequired, RequestInvalid, UnknownTarget
from senderid.rules import RuleBook, load_rules
from senderid.templates import Template
from senderid.workflow import (
    Approval,
    Event,
    EventKind,
    Registration,
    State,
    Target,
    add_documents,
    approvals,
    approve,
    diagram,
    expire,
    expire_due,
    missing_documents,
    open_request,
    reject,
    resubmit,
    submit,
    transition,
)

T0 = datetime(2026, 11, 27, 9, 0, tzinfo=UTC)

# Written from the issue text, not from the module's table.
EXPECTED = {
    ("draft", "submit"): "submitted",
    ("submitted", "approve"): "approved",
    ("submitted", "reject"): "rejected",
    ("submitted", "expire"): "expired",
    ("approved", "expire"): "expired",
    ("rejected", "resubmit"): "draft",
    ("expired", "resubmit"): "draft",
}
ALL_PAIRS = list(itertools.product(State, EventKind))


@pytest.fixture(scope="module")
def book() -> RuleBook:
    return load_rules()


@pytest.mark.parametrize(("state", "kind"), ALL_PAIRS, ids=[f"{s}-{k}" for s, k in ALL_PAIRS])
def test_every_state_event_pair(state: State, kind: EventKind) -> None:
    event = Event(kind, "documents unreadable" if kind is EventKind.REJECT else "")
    expected = EXPECTED.get((state.value, kind.value))
    if expected is None:
        with pytest.raises(InvalidTransition) as info:
            transition(state, event)
        assert info.value.code == "invalid_transition"
        assert (info.value.state, info.value.event) == (state.value, kind.value)
    else:
        assert transition(state, event).value == expected


def test_rejection_needs_a_reason() -> None:
    for reason in ("", "   "):
        with pytest.raises(ReasonRequired):
            transition(State.SUBMITTED, Event(EventKind.REJECT, reason))


def test_docs_show_the_diagram_drawn_from_the_table() -> None:
    text = diagram()
    for (src, ev), dst in EXPECTED.items():
        label = "reject(reason)" if ev == "reject" else ev
        assert f"    {src} --> {dst}: {label}" in text
    doc = Path(__file__).resolve().parents[2] / "docs" / "senderid.md"
    assert text in doc.read_text(encoding="utf-8")


def _open(
    book: RuleBook, countries: tuple[str, ...] = ("AE", "DE"), documents: tuple[str, ...] = (), **kw: object
) -> Registration:
    args: dict[str, object] = dict(
        id="sid_1",
        tenant_id="t1",
        sender="ACME",
        brand="Acme",
        use_case="one-time passwords for sign-in",
        targets=[Target(c) for c in countries],
        templates=[Template("tpl1", "Your Acme code is {code}")],
        documents=documents,
        rules=book,
        actor="key_onb",
        at=T0,
    )
    args.update(kw)
    return open_request(**args).registration  # type: ignore[arg-type]


def test_open_request_puts_every_target_in_draft_with_an_audit_entry(book: RuleBook) -> None:
    change = open_request(
        id="sid_1",
        tenant_id="t1",
        sender="ACME",
        brand="Acme",
        use_case="otp",
        targets=[Target("de"), Target("AE", "carrier-a")],
        rules=book,
        actor="key_onb",
        at=T0,
    )
    reg = change.registration
    assert [(str(t.target), t.state) for t in reg.targets] == [
        ("AE/carrier-a", State.DRAFT),
        ("DE", State.DRAFT),
    ]
    (entry,) = change.audit
    assert (entry.actor, entry.at, entry.action) == ("key_onb", T0, "sender_id.created")
    assert entry.details == {"registration": "sid_1", "sender": "ACME", "targets": "AE/carrier-a,DE"}


def test_open_request_reports_every_problem(book: RuleBook) -> None:
    with pytest.raises(RequestInvalid) as info:
        open_request(
            id="x",
            tenant_id="t1",
            sender="ACME",
            brand=" ",
            use_case="",
            targets=[Target("US"), Target("AE"), Target("AE")],
            templates=[Template("a", "{#var#}")],
            documents=["passport"],
            rules=book,
            actor="a",
            at=T0,
        )
    assert {p.column for p in info.value.problems} == {
        "countries",
        "brand",
        "sender[US]",
        "templates",
        "documents",
    }
    assert any("alphanumeric_not_allowed" in p.message for p in info.value.problems)
    with pytest.raises(RequestInvalid):
        open_request(
            id="x",
            tenant_id="t1",
            sender="ACME",
            brand="Acme",
            use_case="",
            targets=[],
            rules=book,
            actor="a",
            at=T0,
        )


def test_missing_documents(book: RuleBook) -> None:
    ae = book.country("AE")
    assert missing_documents(ae, ae.required_documents) == []
    assert missing_documents(ae, {"sender_id", "loa"}) == [
        "brand_ownership_proof",
        "company_registration",
        "industry_license",
        "noc",
        "url_allowlist",
    ]
    assert missing_documents(book.country("DE"), []) == []
    assert missing_documents(book.country("NO"), ["sender_id"]) == ["company_registration"]


def test_request_fields_count_as_documents(book: RuleBook) -> None:
    reg = _open(book)
    assert reg.provided_documents() == {"sender_id", "use_case", "sample_content", "template_registration"}
    bare = _open(book, use_case=" ", templates=[])
    assert bare.provided_documents() == {"sender_id"}


def test_submission_with_missing_documents_is_refused_for_that_country_only(book: RuleBook) -> None:
    reg = _open(book)
    out = submit(reg, rules=book, actor="key_onb", at=T0 + timedelta(minutes=1))
    assert out.refused == {
        Target("AE"): (
            "brand_ownership_proof",
            "company_registration",
            "industry_license",
            "loa",
            "noc",
            "url_allowlist",
        )
    }
    after = out.change.registration
    assert after.status(Target("AE")).state is State.DRAFT
    assert after.status(Target("DE")).state is State.SUBMITTED
    refused, submitted = out.change.audit
    assert refused.action == "sender_id.submit_refused" and refused.details["target"] == "AE"
    assert refused.details["missing"].startswith("brand_ownership_proof,company_registration")
    assert submitted.action == "sender_id.submit" and submitted.details == {
        "registration": "sid_1",
        "target": "DE",
        "from": "draft",
        "to": "submitted",
    }


def test_adding_documents_then_submitting_succeeds(book: RuleBook) -> None:
    reg = _open(book)
    docs = [
        "company_registration",
        "loa",
        "noc",
        "brand_ownership_proof",
        "industry_license",
        "url_allowlist",
    ]
    change = add_documents(reg, docs, actor="key_onb", at=T0)
    assert change.audit[0].details["codes"] == ",".join(sorted(docs))
    out = submit(change.registration, [Target("ae")], rules=book, actor="key_onb", at=T0)
    assert out.refused == {}
    assert out.change.registration.status(Target("AE")).state is State.SUBMITTED
    with pytest.raises(RequestInvalid):
        add_documents(reg, ["passport"], actor="a", at=T0)


def test_full_lifecycle_with_audit(book: RuleBook) -> None:
    reg = _open(book, countries=("DE", "SE"))
    reg = submit(reg, rules=book, actor="onb", at=T0).change.registration
    c = approve(
        reg, Target("DE"), actor="admin", at=T0 + timedelta(days=1), valid_until=T0 + timedelta(days=365)
    )
    assert c.audit[0].action == "sender_id.approve" and c.audit[0].actor == "admin"
    assert c.audit[0].details["valid_until"] == (T0 + timedelta(days=365)).isoformat()
    c = reject(c.registration, Target("SE"), "  brand not proven  ", actor="admin", at=T0 + timedelta(days=2))
    gb = c.registration.status(Target("SE"))
    assert (gb.state, gb.reason) == (State.REJECTED, "brand not proven")
    assert c.audit[0].details["reason"] == "brand not proven"
    assert approvals(c.registration) == [Approval("t1", "ACME", "DE", None, c.registration.templates)]
    c = resubmit(c.registration, Target("SE"), actor="onb", at=T0 + timedelta(days=3))
    assert c.registration.status(Target("SE")).state is State.DRAFT
    assert c.registration.status(Target("SE")).reason == ""
    c = expire(c.registration, Target("DE"), "LOA withdrawn", actor="admin", at=T0 + timedelta(days=4))
    assert c.registration.status(Target("DE")).state is State.EXPIRED
    assert approvals(c.registration) == []


def test_invalid_moves_and_unknown_targets_raise(book: RuleBook) -> None:
    reg = _open(book, countries=("DE",))
    with pytest.raises(InvalidTransition):
        approve(reg, Target("DE"), actor="admin", at=T0)
    with pytest.raises(UnknownTarget) as info:
        approve(reg, Target("FR"), actor="admin", at=T0)
    assert info.value.code == "unknown_target"
    submitted = submit(reg, rules=book, actor="onb", at=T0).change.registration
    with pytest.raises(InvalidTransition):
        submit(submitted, [Target("DE")], rules=book, actor="onb", at=T0)
    assert submit(submitted, rules=book, actor="onb", at=T0).change.audit == ()  # nothing left in draft


def test_routes_are_separate_targets(book: RuleBook) -> None:
    reg = _open(book, countries=(), targets=[Target("DE", "carrier-a"), Target("DE", "carrier-b")])
    reg = submit(reg, rules=book, actor="onb", at=T0).change.registration
    reg = approve(reg, Target("DE", "carrier-a"), actor="admin", at=T0).registration
    assert [a.route for a in approvals(reg)] == ["carrier-a"]
    assert reg.status(Target("DE", "carrier-b")).state is State.SUBMITTED


def test_expire_due_uses_the_given_clock(book: RuleBook) -> None:
    reg = _open(book, countries=("DE", "NL", "SE"))
    reg = submit(reg, rules=book, actor="onb", at=T0).change.registration
    reg = approve(reg, Target("DE"), actor="admin", at=T0, valid_until=T0 + timedelta(days=30)).registration
    reg = approve(reg, Target("NL"), actor="admin", at=T0).registration  # no end date
    day29 = expire_due(reg, now=T0 + timedelta(days=29), pending_for=timedelta(days=60))
    assert day29.audit == () and day29.registration == reg
    day30 = expire_due(reg, now=T0 + timedelta(days=30))
    assert [(e.details["target"], e.details["reason"], e.actor) for e in day30.audit] == [
        ("DE", "validity ended", "system")
    ]
    assert day30.registration.status(Target("SE")).state is State.SUBMITTED
    day60 = expire_due(day30.registration, now=T0 + timedelta(days=60), pending_for=timedelta(days=60))
    assert [e.details["target"] for e in day60.audit] == ["SE"]
    assert [a.country for a in approvals(day60.registration)] == ["NL"]
