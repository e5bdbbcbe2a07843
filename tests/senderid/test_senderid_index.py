"""Send-time index: decisions, fallback, templates, and the live index's invalidation."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest

from senderid.index import IndexData, LiveSenderIndex, SenderIndex
from senderid.rules import RuleBook, Tri, load_rules
from senderid.templates import Template
from senderid.workflow import Approval, Target, approvals, approve, open_request, submit

DLT = Template("1107161234567890123", "Your {#var#} code is {#numeric#}. Do not share it.")


@pytest.fixture(scope="module")
def book() -> RuleBook:
    return load_rules()


@pytest.fixture(scope="module")
def index(book: RuleBook) -> SenderIndex:
    return SenderIndex(
        book,
        [
            Approval("t1", "ACME", "AE"),
            Approval("t1", "ACME", "ID", route="carrier-a"),
            Approval("t1", "ACME", "ID", route="carrier-b"),
            Approval("t1", "ACMEIN", "IN", templates=(DLT,)),
            Approval("t1", "ACME", "US"),  # refused by the rules: skipped
        ],
        {"t2": "Verify", "t3": "+4915123456789"},
    )


def test_approved_sender_is_allowed(index: SenderIndex) -> None:
    d = index.check("t1", "ACME", "AE")
    assert (d.allowed, d.sender_used, d.fallback_used, d.code, d.routes) == (True, "ACME", False, "ok", None)


def test_unregistered_sender_is_refused_with_what_the_country_needs(index: SenderIndex) -> None:
    d = index.check("t1", "ACMEOTP", "AE")
    assert (d.allowed, d.sender_used, d.code) == (False, None, "sender_not_registered")
    assert "Sender 'ACMEOTP' is not registered for United Arab Emirates (AE)" in d.message
    assert "letter of authorization (LOA)" in d.message and "no-objection certificate" in d.message
    assert "Expected lead time: 14-15 days." in d.message
    assert d.requirements.country == "AE" and d.requirements.registration_required is Tri.YES
    assert "noc" in d.requirements.documents
    assert d.requirements.as_json()["lead_time_days"] == [14, 15]


def test_another_tenants_approval_does_not_count(index: SenderIndex) -> None:
    assert index.check("t9", "ACME", "AE").code == "sender_not_registered"


def test_registration_is_exact_and_case_sensitive(index: SenderIndex) -> None:
    assert index.check("t1", "Acme", "AE").code == "sender_not_registered"


def test_country_without_registration_allows_any_well_formed_sender(index: SenderIndex) -> None:
    for country in ("DE", "GB", "FR", "CH"):
        d = index.check("t9", "AnyBrand", country)
        assert (d.allowed, d.code, d.sender_used) == (True, "ok", "AnyBrand")


def test_unknown_registration_requirement_is_enforced_and_said(index: SenderIndex) -> None:
    for country in ("IT", "NO"):
        d = index.check("t9", "AnyBrand", country)
        assert d.code == "sender_not_registered"
        assert "is not known; smsgw treats it as required" in d.message
    assert "Expected lead time: not known." in index.check("t9", "AnyBrand", "NO").message
    assert "the exact list is not known" in index.check("t9", "AnyBrand", "NO").message


def test_numeric_senders_need_no_registration_where_numbers_are_accepted(index: SenderIndex) -> None:
    d = index.check("t9", "4915123456789", "ES")
    assert (d.allowed, d.sender_used) == (True, "+4915123456789")
    assert index.check("t9", "+971501234567", "AE").code == "sender_not_allowed"


def test_route_restrictions_are_reported(index: SenderIndex) -> None:
    d = index.check("t1", "ACME", "ID")
    assert d.allowed and d.routes == {"carrier-a", "carrier-b"}


def test_refused_kind_and_malformed_senders(index: SenderIndex) -> None:
    us = index.check("t1", "ACME", "US")
    assert (us.allowed, us.code, us.format_codes) == (
        False,
        "sender_not_allowed",
        ("alphanumeric_not_allowed",),
    )
    assert "accepts no alphanumeric sender IDs" in us.message
    bad = index.check("t1", "A!", "DE")
    assert bad.code == "invalid_sender"
    assert bad.format_codes == ("alphanumeric_too_short", "alphanumeric_bad_characters")
    assert index.skipped == ["t1/US/ACME: alphanumeric_not_allowed"]


def test_fallback_sender_is_used_where_the_country_allows_it(index: SenderIndex) -> None:
    d = index.check("t3", "ACMEOTP", "ES")
    assert (d.allowed, d.sender_used, d.fallback_used, d.code) == (
        True,
        "+4915123456789",
        True,
        "fallback_sender",
    )
    assert "is not registered for Spain (ES)" in d.message and "fallback sender '+4915123456789'" in d.message
    us = index.check("t3", "ACME", "US")
    assert (us.allowed, us.fallback_used, us.sender_used) == (True, True, "+4915123456789")
    # AE accepts no numeric sender and t2's alphanumeric fallback is not registered there: refused.
    assert index.check("t3", "ACMEOTP", "AE").code == "sender_not_registered"
    assert index.check("t2", "ACMEOTP", "AE").code == "sender_not_registered"
    # The fallback is not used when the sender itself passes.
    assert index.check("t3", "ACME", "DE").fallback_used is False


def test_fallback_can_be_forbidden_per_country(book: RuleBook) -> None:
    strict = load_rules({"ES": {"fallback_allowed": False}})
    idx = SenderIndex(strict, [], {"t3": "+4915123456789"})
    assert idx.check("t3", "ACMEOTP", "ES").code == "sender_not_registered"


def test_no_sender_uses_the_fallback_or_the_route_default(index: SenderIndex) -> None:
    d = index.check("t2", None, "DE")
    assert (d.allowed, d.sender_used, d.fallback_used, d.code) == (True, "Verify", True, "fallback_sender")
    d = index.check("t1", None, "AE")
    assert (d.allowed, d.sender_used, d.code) == (True, None, "route_default_sender")
    d = index.check("t2", "", "AE")  # fallback not registered in AE: the route's own sender
    assert (d.sender_used, d.code) == (None, "route_default_sender")


def test_template_country_refuses_unregistered_text(index: SenderIndex) -> None:
    ok = index.check("t1", "ACMEIN", "IN", "Your Acme code is 123456. Do not share it.")
    assert (ok.allowed, ok.template_id) == (True, DLT.id)
    bad = index.check("t1", "ACMEIN", "IN", "Big sale today!")
    assert (bad.allowed, bad.code) == (False, "template_not_registered")
    assert "matches none of the tenant's 1 approved template(s)" in bad.message
    other_tenant = index.check("t2", None, "IN", "Your Acme code is 1. Do not share it.")
    assert other_tenant.code == "template_not_registered" and "0 approved" in other_tenant.message
    assert index.check("t1", "ACMEIN", "IN").allowed  # text not known yet: sender check only
    assert index.check("t1", "ACME", "DE", "anything").template_id is None  # DE needs no template


def test_index_built_from_the_workflow(book: RuleBook) -> None:
    t = datetime(2026, 11, 27, tzinfo=UTC)
    reg = open_request(
        id="r1",
        tenant_id="t5",
        sender="SHOP",
        brand="Shop",
        use_case="otp",
        targets=[Target("SG"), Target("IE")],
        rules=book,
        actor="a",
        at=t,
    ).registration
    reg = submit(
        reg, rules=book, actor="a", at=t, targets=None
    ).change.registration  # SG and IE need documents: both refused
    assert SenderIndex(book, approvals(reg)).check("t5", "SHOP", "IE").code == "sender_not_registered"
    from senderid.workflow import add_documents

    reg = add_documents(
        reg,
        ["company_registration", "brand_ownership_proof", "local_business_id", "loa", "sample_content"],
        actor="a",
        at=t,
    ).registration
    reg = submit(reg, rules=book, actor="a", at=t).change.registration
    reg = approve(reg, Target("IE"), actor="admin", at=t).registration
    idx = SenderIndex(book, approvals(reg))
    assert idx.check("t5", "SHOP", "IE").allowed
    assert not idx.check("t5", "SHOP", "SG").allowed
    assert len(idx) == 1


def test_conflicting_template_ids_keep_the_first(book: RuleBook) -> None:
    idx = SenderIndex(
        book,
        [
            Approval("t1", "ACMEIN", "IN", templates=(Template("x", "Hello {name}"),)),
            Approval("t1", "ACMEIN", "IN", templates=(Template("x", "Bye {name}"),)),
        ],
    )
    assert idx.check("t1", "ACMEIN", "IN", "Hello Ann").template_id == "x"
    assert not idx.check("t1", "ACMEIN", "IN", "Bye Ann").allowed
    assert len(idx.skipped) == 1


def test_caches_are_bounded_and_return_the_same_decision(book: RuleBook) -> None:
    idx = SenderIndex(book, cache_size=3)
    for i in range(10):
        assert idx.check("t", f"SENDER{i}", "DE").allowed
    assert len(idx._format_cache) <= 3 and len(idx._decisions) <= 3
    first = idx.check("t", "SENDER9", "DE")
    assert idx.check("t", "SENDER9", "DE") is first
    assert idx.check("t", "SENDER9", "AE") is not first and not idx.check("t", "SENDER9", "AE").allowed


def test_template_decisions_are_never_cached(book: RuleBook) -> None:
    idx = SenderIndex(book, [Approval("t1", "ACMEIN", "IN", templates=(DLT,))])
    assert idx.check("t1", "ACMEIN", "IN", "Your A code is 1. Do not share it.").allowed
    assert not idx.check("t1", "ACMEIN", "IN", "Something else").allowed
    assert idx.check("t1", "ACMEIN", "IN", "Your B code is 2. Do not share it.").allowed


class Store:
    """A real in-memory store of approvals, loaded asynchronously like the gateway's database."""

    def __init__(self) -> None:
        self.approvals: list[Approval] = []
        self.fallbacks: dict[str, str] = {}
        self.loads = 0
        self.fail = False
        self.gate: asyncio.Event | None = None

    async def load(self) -> IndexData:
        self.loads += 1
        if self.gate is not None:
            await self.gate.wait()
        if self.fail:
            raise ConnectionError("store down")
        return IndexData(tuple(self.approvals), dict(self.fallbacks))


async def test_live_index_reloads_after_invalidate(book: RuleBook) -> None:
    store = Store()
    live = LiveSenderIndex(book, store.load)
    assert live.stale
    assert (await live.check("t1", "ACME", "AE")).code == "sender_not_registered"
    assert store.loads == 1 and not live.stale
    store.approvals.append(Approval("t1", "ACME", "AE"))
    assert not (await live.check("t1", "ACME", "AE")).allowed  # not invalidated yet: old snapshot
    live.invalidate()
    assert (await live.check("t1", "ACME", "AE")).allowed
    assert store.loads == 2
    for _ in range(5):
        await live.check("t1", "ACME", "AE")
    assert store.loads == 2


async def test_concurrent_checks_share_one_load(book: RuleBook) -> None:
    store = Store()
    store.approvals.append(Approval("t1", "ACME", "AE"))
    store.gate = asyncio.Event()
    live = LiveSenderIndex(book, store.load)
    tasks = [asyncio.create_task(live.check("t1", "ACME", "AE")) for _ in range(20)]
    await asyncio.sleep(0)
    store.gate.set()
    results = await asyncio.gather(*tasks)
    assert all(r.allowed for r in results)
    assert store.loads == 1 and live.loads == 1


async def test_invalidate_during_a_load_triggers_another(book: RuleBook) -> None:
    store = Store()
    store.gate = asyncio.Event()
    live = LiveSenderIndex(book, store.load)
    first = asyncio.create_task(live.refresh())
    await asyncio.sleep(0)
    store.approvals.append(Approval("t1", "ACME", "AE"))  # lands after the loader started
    live.invalidate()
    store.gate.set()
    await first
    assert live.stale
    assert (await live.check("t1", "ACME", "AE")).allowed
    assert store.loads == 2


async def test_failed_load_fails_closed_and_retries(book: RuleBook) -> None:
    store = Store()
    store.approvals.append(Approval("t1", "ACME", "AE"))
    live = LiveSenderIndex(book, store.load)
    await live.refresh()
    live.invalidate()
    store.fail = True
    with pytest.raises(ConnectionError):
        await live.check("t1", "ACME", "AE")
    assert live.stale
    store.fail = False
    assert (await live.check("t1", "ACME", "AE")).allowed
