"""The behaviour every engine of the durable store must show, written against ``gateway.store.base.Store``.

Parametrised over engines (``ENGINES``): SQLite on a temporary file, PostgreSQL on a fresh database of
the session's server (``tests/conftest.py``); each entry says how to get a fresh database, how to build
the store on it, the error a broken constraint raises, and how to read what it wrote at rest.
The API-level tests (``test_otp_api.py``, ``test_dispatch.py``,
``test_privacy_api.py``, ``test_senderid_api.py``, ``test_routing_webhooks.py``) drive the same methods
through the gateway; here each contract is pinned at the store's own surface, including the races and
repeats that the API cannot provoke on demand.
"""

from __future__ import annotations

import asyncio
import secrets
import sqlite3
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, replace
from pathlib import Path

import asyncpg
import pytest

from gateway.ids import new_id
from gateway.privacy.audit import verify_chain
from gateway.privacy.crypto import Keyring
from gateway.store import PgStore, SqliteStore
from gateway.store.base import MessageRecord, OtpRecord, OutboxEvent, RetentionPolicy, Store, Tenant
from tests.conftest import PgServer

NUM = "+4915123456789"
OTHER_NUM = "+4915198765432"
T0 = 1_700_000_000.0
LEASE = 30.0


# --------------------------------------------------------------------------------------------- engines
@dataclass(frozen=True)
class Engine:
    locate: Callable[[pytest.FixtureRequest, Path], str]  # a fresh database for one test
    make: Callable[[str, bytes], Store]  # a store on that database (not opened)
    constraint_error: type[Exception]  # what a write that breaks a constraint raises
    at_rest: Callable[[pytest.FixtureRequest, str], bytes]  # every byte the engine wrote


def _sqlite_bytes(request: pytest.FixtureRequest, where: str) -> bytes:
    return b"".join(p.read_bytes() for p in sorted(Path(where).parent.glob("contract.db*")))


def _pg_bytes(request: pytest.FixtureRequest, where: str) -> bytes:
    """The database's files and the write-ahead log written since it was created, after a checkpoint."""
    server: PgServer = request.getfixturevalue("pg_server")
    return server.files_of(where)


ENGINES: dict[str, Engine] = {
    "sqlite": Engine(
        locate=lambda request, tmp: str(tmp / "contract.db"),
        make=lambda where, key: SqliteStore(where, key),
        constraint_error=sqlite3.IntegrityError,
        at_rest=_sqlite_bytes,
    ),
    "postgresql": Engine(
        locate=lambda request, tmp: str(request.getfixturevalue("pg_url")),
        make=lambda where, key: PgStore(where, key),
        constraint_error=asyncpg.IntegrityConstraintViolationError,
        at_rest=_pg_bytes,
    ),
}


@dataclass
class Opened:
    engine: Engine
    where: str
    key: bytes
    store: Store

    async def reopen(self) -> Store:
        """Close and open a new instance on the same database (what a restarted process sees)."""
        await self.store.close()
        self.store = self.engine.make(self.where, self.key)
        await self.store.open()
        return self.store

    async def second(self) -> Store:
        """Another instance on the same database, as another process would hold it."""
        other = self.engine.make(self.where, self.key)
        await other.open()
        return other


@pytest.fixture(params=sorted(ENGINES))
async def opened(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Opened]:
    engine = ENGINES[request.param]
    key = secrets.token_bytes(32)
    where = engine.locate(request, tmp_path)
    store = engine.make(where, key)
    await store.open()
    o = Opened(engine, where, key, store)
    yield o
    await o.store.close()


@pytest.fixture
def store(opened: Opened) -> Store:
    return opened.store


# --------------------------------------------------------------------------------------------- records
def message(
    ring: Keyring,
    tenant: str = "t1",
    *,
    number: str = NUM,
    kind: str = "transactional",
    status: str = "queued",
    now: float = T0,
    not_before: float | None = None,
    claimed_by: str | None = None,
    otp_id: str | None = None,
    msg_id: str | None = None,
) -> MessageRecord:
    payload = ring.seal(b"123456" if kind == "otp" else b"Hello", "otp_code" if kind == "otp" else "body")
    return MessageRecord(
        id=msg_id or new_id("msg"),
        tenant_id=tenant,
        kind=kind,
        phone_enc=ring.seal(number.encode(), "phone"),
        phone_hmac=ring.lookup(number),
        country="DE",
        sender="ACME",
        payload_enc=payload,
        status=status,
        created_at=now,
        updated_at=now,
        not_before=now if not_before is None else not_before,
        otp_id=otp_id,
        claimed_by=claimed_by,
        claimed_until=now + LEASE if claimed_by else None,
    )


def otp_pair(
    ring: Keyring, tenant: str = "t1", number: str = NUM, now: float = T0
) -> tuple[OtpRecord, MessageRecord]:
    otp_id = new_id("otp")
    msg = message(
        ring, tenant, number=number, kind="otp", status="sending", claimed_by="w-accept", otp_id=otp_id
    )
    otp = OtpRecord(
        id=otp_id,
        tenant_id=tenant,
        phone_enc=ring.seal(number.encode(), "phone"),
        phone_hmac=ring.lookup(number),
        country="DE",
        code_hash=ring.code_hash(otp_id, "123456"),
        status="pending",
        created_at=now,
        expires_at=now + 300,
        message_id=msg.id,
        locale="en",
        template="default",
    )
    return otp, msg


async def tenant(
    store: Store, tenant_id: str, key_hash: bytes, scopes: frozenset[str] = frozenset({"send"})
) -> None:
    await store.create_tenant(Tenant(tenant_id, tenant_id.upper(), frozenset({"*"}), T0), key_hash, scopes)


# --------------------------------------------------------------------------------------------- lifecycle
async def test_ping_is_true_while_open_and_false_after_close_without_raising(opened: Opened) -> None:
    assert await opened.store.ping() is True
    other = await opened.second()
    await other.close()
    assert await other.ping() is False


# --------------------------------------------------------------------------------------------- accept
async def test_an_accepted_otp_survives_a_restart_and_is_stored_once(opened: Opened) -> None:
    ring = opened.store.keyring
    otp, msg = otp_pair(ring)
    await opened.store.insert_otp(otp, msg)
    store = await opened.reopen()
    assert await store.get_otp("t1", otp.id) == otp
    assert await store.get_message("t1", msg.id) == msg
    with pytest.raises(opened.engine.constraint_error):  # the same OTP again
        await store.insert_otp(replace(otp, status="verified"), replace(msg, id=new_id("msg")))
    with pytest.raises(opened.engine.constraint_error):  # the same message again
        await store.insert_message(replace(msg, status="queued", claimed_by=None))
    assert await store.get_otp("t1", otp.id) == otp
    assert await store.get_message("t1", msg.id) == msg
    assert await store.count_by_status() == {"sending": 1}


async def test_an_otp_and_its_message_are_stored_both_or_neither(opened: Opened) -> None:
    store = opened.store
    ring = store.keyring
    taken = message(ring)
    await store.insert_message(taken)
    otp, msg = otp_pair(ring)
    with pytest.raises(opened.engine.constraint_error):
        await store.insert_otp(otp, replace(msg, id=taken.id))
    assert await store.get_otp("t1", otp.id) is None
    assert await store.count_by_status() == {"queued": 1}


async def test_group_commit_a_failing_write_fails_only_its_own_caller(opened: Opened) -> None:
    store = opened.store
    ring = store.keyring
    first = message(ring)
    await store.insert_message(first)
    batch = [message(ring) for _ in range(30)]
    batch[17] = replace(batch[17], id=first.id)  # one duplicate among concurrent writers
    results = await asyncio.gather(*(store.insert_message(m) for m in batch), return_exceptions=True)
    failed = [i for i, r in enumerate(results) if isinstance(r, BaseException)]
    assert failed == [17] and isinstance(results[17], opened.engine.constraint_error)
    store = await opened.reopen()  # durable, each exactly once
    assert await store.count_by_status() == {"queued": 30}
    for i, m in enumerate(batch):
        if i != 17:
            assert await store.get_message(None, m.id) == m
    assert await store.get_message(None, first.id) == first


async def submit(store: Store, msg_id: str, *, worker: str, carrier_id: str, now: float) -> bool:
    """``mark_submitted`` on route and carrier "sim", one segment: what varies is who, when and the id."""
    return await store.mark_submitted(
        msg_id,
        route="sim",
        route_reason="cheapest",
        carrier="sim",
        carrier_message_id=carrier_id,
        segments=1,
        now=now,
        worker=worker,
    )


# --------------------------------------------------------------------------------------------- dispatch
async def test_a_claim_is_a_lease_that_another_worker_takes_over_only_after_it_runs_out(store: Store) -> None:
    m = message(store.keyring)
    await store.insert_message(m)
    got = await store.claim(m.id, "w1", T0, LEASE)
    assert got is not None and (got.status, got.claimed_by, got.claimed_until, got.attempts) == (
        "sending",
        "w1",
        T0 + LEASE,
        1,
    )
    assert await store.claim(m.id, "w2", T0 + 1, LEASE) is None  # lease held
    assert await store.due_messages(T0 + 1, 10) == []
    assert await store.due_messages(T0 + LEASE + 1, 10) == [m.id]  # the holder died: due again
    again = await store.claim(m.id, "w2", T0 + LEASE + 1, LEASE)
    assert again is not None and again.claimed_by == "w2" and again.attempts == 2
    assert await store.claim(m.id, "w1", T0 + LEASE + 2, LEASE) is None


async def test_a_worker_whose_lease_was_taken_over_can_no_longer_move_the_message(store: Store) -> None:
    """Fencing: w1's submission outlived its lease and w2 claimed the message; w1's late outcome (submitted
    or retry) must not overwrite w2's claim, while w2's own outcome applies."""
    m = message(store.keyring)
    await store.insert_message(m)
    assert await store.claim(m.id, "w1", T0, LEASE) is not None
    taken = await store.claim(m.id, "w2", T0 + LEASE + 1, LEASE)
    assert taken is not None
    assert not await submit(store, m.id, worker="w1", carrier_id="c-w1", now=T0 + LEASE + 2)
    assert not await store.mark_retry(
        m.id,
        not_before=T0,
        tried_routes="a",
        error_code="x",
        error_reason="x",
        now=T0 + LEASE + 2,
        worker="w1",
    )
    assert await store.get_message(None, m.id) == taken  # w2's claim untouched
    assert await submit(store, m.id, worker="w2", carrier_id="c-w2", now=T0 + LEASE + 3)
    rec = await store.get_message(None, m.id)
    assert rec is not None and (rec.status, rec.carrier_message_id, rec.claimed_by) == (
        "submitted",
        "c-w2",
        None,
    )


async def test_of_concurrent_claims_exactly_one_wins(opened: Opened) -> None:
    m = message(opened.store.keyring)
    await opened.store.insert_message(m)
    other = await opened.second()  # another process on the same database
    try:
        claims = [s.claim(m.id, f"w{i}", T0, LEASE) for i, s in enumerate([opened.store, other] * 5)]
        won = [r for r in await asyncio.gather(*claims) if r is not None]
    finally:
        await other.close()
    assert len(won) == 1 and won[0].attempts == 1


async def test_a_message_inserted_already_claimed_needs_no_claim_and_is_recovered_after_its_lease(
    store: Store,
) -> None:
    m = message(store.keyring, status="sending", claimed_by="w-accept")
    await store.insert_message(m)
    assert await store.claim(m.id, "w2", T0 + 1, LEASE) is None
    assert await store.due_messages(T0 + LEASE - 1, 10) == []
    taken = await store.claim(m.id, "w2", T0 + LEASE + 1, LEASE)
    assert taken is not None and taken.claimed_by == "w2"


async def test_due_messages_respects_not_before_order_and_limit(store: Store) -> None:
    ring = store.keyring
    later = message(ring, not_before=T0 + 60)
    soon = message(ring, not_before=T0 + 10)
    now = message(ring, not_before=T0)
    done = message(ring, status="delivered")
    for m in (later, soon, now, done):
        await store.insert_message(m)
    assert await store.due_messages(T0, 10) == [now.id]
    assert await store.due_messages(T0 + 60, 10) == [now.id, soon.id, later.id]
    assert await store.due_messages(T0 + 60, 2) == [now.id, soon.id]


async def test_status_transitions_are_conditional_and_repeats_change_nothing(store: Store) -> None:
    ring = store.keyring
    otp, msg = otp_pair(ring)
    await store.insert_otp(otp, msg)
    assert await submit(store, msg.id, worker="w-accept", carrier_id="c-1", now=T0 + 1)
    rec = await store.get_message("t1", msg.id)
    assert rec is not None and rec.status == "submitted" and rec.carrier_message_id == "c-1"
    assert rec.payload_enc is None and rec.claimed_by is None and rec.claimed_until is None  # code wiped
    got_otp = await store.get_otp("t1", otp.id)
    assert got_otp is not None and got_otp.route == "sim"
    # not sending any more: neither a second submit nor a retry applies
    assert not await submit(store, msg.id, worker="w-accept", carrier_id="c-2", now=T0 + 2)
    assert not await store.mark_retry(
        msg.id,
        not_before=T0 + 9,
        tried_routes="sim",
        error_code="x",
        error_reason="x",
        now=T0 + 2,
        worker="w-accept",
    )
    assert await store.get_message("t1", msg.id) == rec
    delivered = await store.apply_receipt("sim", "c-1", "delivered", None, T0 + 3)
    assert delivered is not None and delivered.status == "delivered" and delivered.updated_at == T0 + 3
    assert (
        await store.apply_receipt("sim", "c-1", "failed", "x", T0 + 4) is None
    )  # final: a repeat is a no-op
    assert await store.apply_receipt("sim", "unknown", "delivered", None, T0 + 4) is None
    assert await store.get_message(None, msg.id) == delivered
    # the batched form gives what the single one gives, per receipt and in order
    assert await store.apply_receipts([], T0 + 5) == []
    assert await store.apply_receipts(
        [("sim", "c-1", "failed", "x"), ("sim", "unknown", "delivered", None)], T0 + 5
    ) == [None, None]
    assert await store.get_message(None, msg.id) == delivered


async def test_retry_releases_the_claim_and_final_keeps_the_route_when_none_is_given(store: Store) -> None:
    ring = store.keyring
    m = message(ring)
    await store.insert_message(m)
    assert await store.claim(m.id, "w1", T0, LEASE) is not None
    assert await store.mark_retry(
        m.id,
        not_before=T0 + 20,
        tried_routes="a",
        error_code="http_503",
        error_reason="a: 503",
        now=T0 + 1,
        worker="w1",
    )
    rec = await store.get_message(None, m.id)
    assert rec is not None and (rec.status, rec.claimed_by, rec.not_before, rec.tried_routes) == (
        "queued",
        None,
        T0 + 20,
        "a",
    )
    assert await store.due_messages(T0 + 19, 10) == [] and await store.due_messages(T0 + 20, 10) == [m.id]
    assert await store.claim(m.id, "w1", T0 + 20, LEASE) is not None
    await store.mark_final(
        m.id,
        status="failed",
        error_code="rejected",
        error_reason="bad",
        now=T0 + 21,
        route="b",
        route_reason="r",
    )
    await store.mark_final(m.id, status="failed", error_code="rejected", error_reason="bad", now=T0 + 22)
    rec = await store.get_message(None, m.id)
    assert rec is not None and (rec.status, rec.route, rec.route_reason, rec.error_code) == (
        "failed",
        "b",
        "r",
        "rejected",
    )
    assert rec.claimed_by is None and rec.payload_enc == m.payload_enc  # a body is kept, only OTP codes go
    assert await store.due_messages(T0 + 100, 10) == []


async def test_of_concurrent_verifications_exactly_one_finishes_the_otp(store: Store) -> None:
    otp, msg = otp_pair(store.keyring)
    await store.insert_otp(otp, msg)
    results = await asyncio.gather(*(store.finish_otp(otp.id, "verified", T0 + 5) for _ in range(8)))
    assert sorted(results) == [False] * 7 + [True]
    assert await store.finish_otp(otp.id, "expired", T0 + 6) is False
    got = await store.get_otp("t1", otp.id)
    assert got is not None and (got.status, got.verified_at) == ("verified", T0 + 5)


# --------------------------------------------------------------------------------------------- tenants
async def test_concurrent_settings_merges_keep_every_key(store: Store) -> None:
    await tenant(store, "t1", b"k1" * 16)
    await asyncio.gather(*(store.update_tenant_settings("t1", {f"k{i}": i}) for i in range(12)))
    assert await store.tenant_settings("t1") == {"t1": {f"k{i}": i for i in range(12)}}


async def test_a_registration_id_of_another_tenant_is_never_overwritten(opened: Opened) -> None:
    store = opened.store
    await store.save_registration("reg_x", "t1", "ACME", {"id": "reg_x", "state": "draft"}, T0, T0)
    with pytest.raises(opened.engine.constraint_error):
        await store.save_registration("reg_x", "t2", "EVIL", {"id": "reg_x", "state": "approved"}, T0, T0 + 1)
    assert await store.get_registration("t1", "reg_x") == {"id": "reg_x", "state": "draft"}
    assert await store.get_registration("t2", "reg_x") is None


async def test_tenants_keys_and_settings(opened: Opened) -> None:
    store = opened.store
    await tenant(store, "t1", b"k1" * 16, frozenset({"send", "verify"}))
    p = await store.principal_for_key(b"k1" * 16)
    assert (
        p is not None
        and p.tenant.id == "t1"
        and p.scopes == {"send", "verify"}
        and p.tenant.may_send_to("FR")
    )
    assert await store.principal_for_key(b"zz" * 16) is None
    with pytest.raises(opened.engine.constraint_error):  # an existing tenant id: nothing of it is written
        await store.create_tenant(Tenant("t1", "again", frozenset(), T0), b"k2" * 16, frozenset({"admin"}))
    assert await store.principal_for_key(b"k2" * 16) is None
    assert await store.add_api_key("t1", b"k3" * 16, frozenset({"admin"}), T0) is True
    assert await store.add_api_key("nobody", b"k4" * 16, frozenset({"admin"}), T0) is False
    assert await store.principal_for_key(b"k4" * 16) is None
    k3 = await store.principal_for_key(b"k3" * 16)
    assert k3 is not None and k3.tenant.id == "t1" and k3.scopes == {"admin"}
    # revoking: only the tenant's own unrevoked key, once; the other key keeps working
    assert [(k.key_hash, k.scopes, k.revoked_at) for k in await store.api_keys("t1")] == [
        (b"k1" * 16, {"send", "verify"}, None),
        (b"k3" * 16, {"admin"}, None),
    ]
    assert await store.revoke_api_key("nobody", b"k3" * 16, T0 + 1) is False
    assert await store.revoke_api_key("t1", b"k3" * 16, T0 + 1) is True
    assert await store.revoke_api_key("t1", b"k3" * 16, T0 + 2) is False
    assert await store.principal_for_key(b"k3" * 16) is None
    assert await store.principal_for_key(b"k1" * 16) is not None
    assert [k.revoked_at for k in await store.api_keys("t1")] == [None, T0 + 1]
    assert await store.api_keys("nobody") == []
    await tenant(store, "t2", b"t2" * 16)
    assert await store.tenant_settings("t1") == {"t1": {}}
    assert await store.update_tenant_settings("t1", {"fraud_mode": "monitor"}) == {"fraud_mode": "monitor"}
    merged = await store.update_tenant_settings("t1", {"fallback_sender": "ACME"})
    assert merged == {"fraud_mode": "monitor", "fallback_sender": "ACME"}
    assert await store.tenant_settings() == {"t1": merged, "t2": {}}
    assert await store.tenant_settings("nobody") == {}


async def test_a_tenant_never_reads_another_tenants_objects(store: Store) -> None:
    ring = store.keyring
    otp, msg = otp_pair(ring, "t1")
    await store.insert_otp(otp, msg)
    await store.save_registration("reg_1", "t1", "ACME", {"id": "reg_1", "state": "draft"}, T0, T0)
    await store.add_document(
        doc_id="doc_1",
        registration_id="reg_1",
        tenant_id="t1",
        code="license",
        filename="l.pdf",
        content_type="application/pdf",
        content=b"%PDF",
        uploaded_at=T0,
    )
    await store.set_consent("t1", ring.lookup(NUM), "opted_in", "form", T0)
    await store.append_audit(at=T0, actor="a", tenant_id="t1", action="x", target="reg_1", details={})
    await store.put_webhook("t1", "https://t1.example/hook", "s1", T0)
    assert await store.get_otp("t2", otp.id) is None
    assert await store.get_message("t2", msg.id) is None
    assert await store.get_registration("t2", "reg_1") is None
    assert await store.list_registrations("t2") == []
    assert await store.documents("t2", "reg_1") == []
    assert await store.consent_status("t2", ring.lookup(NUM)) is None
    assert await store.audit_records("t2") == []
    assert await store.get_webhook("t2") is None
    assert await store.delete_webhook("t2") is False
    assert await store.erase_subject("t2", ring.lookup(NUM), T0) == dict.fromkeys(
        ("events", "otps", "messages", "copies", "consent"), 0
    )
    assert all(v == [] for v in (await store.subject_data("t2", ring.lookup(NUM))).values())
    # and t1 still has everything
    assert await store.get_otp("t1", otp.id) == otp
    assert await store.get_registration("t1", "reg_1") == {"id": "reg_1", "state": "draft"}
    assert await store.get_webhook("t1") is not None


# --------------------------------------------------------------------------------------------- privacy
async def test_erasure_removes_one_numbers_rows_in_one_tenant_and_keeps_an_opt_out(store: Store) -> None:
    ring = store.keyring
    h = ring.lookup(NUM)
    otp, msg = otp_pair(ring, "t1")
    await store.insert_otp(otp, msg)
    await store.insert_message(message(ring, "t1"))
    keep_other_number = message(ring, "t1", number=OTHER_NUM)
    keep_other_tenant = message(ring, "t2")
    await store.insert_message(keep_other_number)
    await store.insert_message(keep_other_tenant)
    await store.insert_event(
        event_id="ev_1",
        tenant_id="t1",
        message_id=msg.id,
        otp_id=otp.id,
        event="converted",
        country="DE",
        route="sim",
        phone_hmac=h,
        at=T0,
    )
    await store.insert_copy(
        copy_id="cp_1",
        kind="otp",
        region="ru",
        tenant_id="t1",
        phone_hmac=h,
        phone_enc=ring.seal(NUM.encode(), "phone"),
        country="DE",
        created_at=T0,
    )
    await store.set_consent("t1", h, "opted_in", "form", T0)
    await store.set_consent("t1", h, "opted_out", "STOP", T0 + 1)  # the last write wins
    assert await store.consent_status("t1", h) == "opted_out"
    before = await store.subject_data("t1", h)
    assert {k: len(v) for k, v in before.items()} == {
        "otps": 1,
        "messages": 2,
        "events": 1,
        "consent": 1,
        "copies": 1,
    }
    assert sorted(await store.tenants_messaging(h, None)) == ["t1", "t2"]
    counts = await store.erase_subject("t1", h, T0 + 2)
    assert counts == {"events": 1, "otps": 1, "messages": 2, "copies": 1, "consent": 0}
    after = await store.subject_data("t1", h)
    assert {k: len(v) for k, v in after.items()} == {
        "otps": 0,
        "messages": 0,
        "events": 0,
        "consent": 1,
        "copies": 0,
    }
    assert await store.consent_status("t1", h) == "opted_out"  # suppression survives erasure
    assert await store.erase_subject("t1", h, T0 + 3) == {
        "events": 0,
        "otps": 0,
        "messages": 0,
        "copies": 0,
        "consent": 0,
    }
    assert await store.get_message(None, keep_other_number.id) == keep_other_number
    assert await store.get_message(None, keep_other_tenant.id) == keep_other_tenant
    await store.record_privacy_request(
        request_id="pr_1",
        tenant_id="t1",
        kind="erasure",
        subject_hmac=h,
        subject_masked="+49151*****789",
        received_at=T0,
        due_at=T0 + 30 * 86400,
        completed_at=T0 + 2,
        result="erased",
    )
    [req] = await store.privacy_requests("t1")
    assert req["id"] == "pr_1" and req["subject"] == "+49151*****789" and req["result"] == "erased"
    assert await store.privacy_requests("t2") == []


async def test_concurrent_audit_appends_form_one_unbroken_chain(opened: Opened) -> None:
    store = opened.store
    other = await opened.second()  # appends from another process join the same chain
    try:
        writers = [store, other] * 15
        seqs = await asyncio.gather(
            *(
                s.append_audit(
                    at=T0 + i,
                    actor="a",
                    tenant_id=f"t{i % 2}",
                    action="x",
                    target=f"o{i % 3}",
                    details={"i": i},
                )
                for i, s in enumerate(writers)
            )
        )
    finally:
        await other.close()
    assert sorted(seqs) == list(range(1, 31))
    records = await store.audit_records()
    assert [r.seq for r in records] == list(range(1, 31))
    assert verify_chain(store.keyring.audit_key, records).ok
    mine = await store.audit_records("t1")
    assert len(mine) == 15 and all(r.tenant_id == "t1" for r in mine)
    newest = await store.audit_records("t1", limit=3)
    assert [r.seq for r in newest] == [r.seq for r in mine[-3:]]
    assert all(r.target == "o2" for r in await store.audit_records("t1", target="o2"))


async def test_purge_keeps_what_is_in_flight_and_cuts_the_audit_chain_at_its_start(store: Store) -> None:
    ring = store.keyring
    old = T0 - 10 * 86400
    gone = message(ring, status="delivered", now=old)
    in_flight = message(ring, status="queued", now=old)
    fresh = message(ring, status="delivered", now=T0)
    for m in (gone, in_flight, fresh):
        await store.insert_message(m)
    for i, at in enumerate((old, old + 1, T0)):
        await store.append_audit(at=at, actor="a", tenant_id="t1", action="x", target="", details={"i": i})
    await store.outbox_add([ev("stale")], worker="dead", lease_until=old + LEASE, now=old)
    await store.outbox_add([ev("live")], worker="w1", lease_until=T0 + LEASE, now=T0)
    day = 86400.0
    policy = RetentionPolicy(
        otps=day, message_bodies=day, messages=day, receipts=day, events=day, audit=day, privacy_requests=day
    )
    report = await store.purge(policy, T0)
    assert report["messages"] == 1 and report["audit"] == 2 and report["webhook_outbox"] == 1
    assert [e.event_id for e in await store.outbox_claim("w2", T0 + 2 * LEASE, LEASE, 10)] == ["live"]
    assert await store.get_message(None, gone.id) is None
    assert await store.get_message(None, in_flight.id) == in_flight
    assert await store.get_message(None, fresh.id) == fresh
    assert [r.seq for r in await store.audit_records()] == [3]
    assert all(v == 0 for v in (await store.purge(policy, T0)).values())  # nothing more to do


# --------------------------------------------------------------------------------------------- sealed at rest
async def test_secrets_the_engine_seals_are_never_at_rest_in_clear_and_open_again(
    opened: Opened, request: pytest.FixtureRequest
) -> None:
    store = opened.store
    secret, content, url = (
        "whsec-contract-4f1e9a",
        b"PASSPORT-NO-X9Y8Z7W6",
        "https://shop.example/o/77123?u=anna",
    )
    await store.put_webhook("t1", "https://t1.example/hook", secret, T0)
    await store.add_document(
        doc_id="doc_1",
        registration_id="reg_1",
        tenant_id="t1",
        code="id",
        filename="id.png",
        content_type="image/png",
        content=content,
        uploaded_at=T0,
    )
    await store.insert_links("t1", "msg_1", [("lnk_1", url)], T0)
    otp, msg = otp_pair(store.keyring)
    await store.insert_otp(otp, msg)
    raw = opened.engine.at_rest(request, opened.where)
    assert b"https://t1.example/hook" in raw  # stored in clear: the scan does see what was written
    for clear in (secret.encode(), content, url.encode(), NUM.encode(), b"123456"):
        assert clear not in raw
    store = await opened.reopen()
    hook = await store.get_webhook("t1")
    assert hook is not None and hook.secret == secret.encode() and hook.url == "https://t1.example/hook"
    assert await store.get_link("lnk_1") == ("t1", "msg_1", url)
    assert await store.get_link("lnk_unknown") is None
    [doc] = await store.documents("t1", "reg_1")
    assert doc == {
        "id": "doc_1",
        "code": "id",
        "filename": "id.png",
        "content_type": "image/png",
        "size": len(content),
        "uploaded_at": T0,
    }


async def test_rotation_reseals_every_value_and_other_processes_load_the_new_key(opened: Opened) -> None:
    store = opened.store
    await store.put_webhook("t1", "https://t1.example/hook", "s3cret", T0)
    otp, msg = otp_pair(store.keyring)
    await store.insert_otp(otp, msg)
    other = await opened.second()
    try:
        assert await store.count_stale_sealed() == 0
        new_key = await store.add_data_key(T0)
        assert new_key == 2 and store.keyring.active_id == 2
        stale = await store.count_stale_sealed()
        assert stale == 4  # the webhook secret; the OTP's number; the message's number and code
        assert await store.reseal_batch(3) == 3
        assert await store.reseal_batch(100) == 1
        assert await store.reseal_batch(100) == 0 and await store.count_stale_sealed() == 0
        assert await other.refresh_keyring() is True and other.keyring.active_id == 2
        assert await other.refresh_keyring() is False
        hook = await other.get_webhook("t1")
        assert hook is not None and hook.secret == b"s3cret"
        got = await other.get_otp("t1", otp.id)
        assert got is not None and other.keyring.open(got.phone_enc, "phone") == NUM.encode()
        assert got.phone_hmac == otp.phone_hmac  # look-ups survive rotation
    finally:
        await other.close()


# --------------------------------------------------------------------------------------------- sender IDs
async def test_sender_id_records_upsert_list_and_announce_changes(store: Store) -> None:
    v0 = await store.senderid_version()
    await store.save_registration("reg_a", "t1", "ACME", {"id": "reg_a", "state": "draft"}, T0, T0)
    v1 = await store.senderid_version()
    await store.save_registration("reg_b", "t1", "SHOP", {"id": "reg_b", "state": "draft"}, T0 + 1, T0 + 1)
    await store.save_registration("reg_c", "t2", "OTHER", {"id": "reg_c", "state": "draft"}, T0 + 2, T0 + 2)
    await store.save_registration(
        "reg_a", "t1", "ACME", {"id": "reg_a", "state": "submitted"}, T0 + 9, T0 + 3
    )
    v2 = await store.senderid_version()
    assert len({v0, v1, v2}) == 3
    assert await store.get_registration("t1", "reg_a") == {"id": "reg_a", "state": "submitted"}
    assert [r["id"] for r in await store.list_registrations("t1")] == ["reg_b", "reg_a"]  # newest first
    assert [r["id"] for r in await store.list_registrations(None)] == ["reg_a", "reg_b", "reg_c"]
    assert await store.get_brand("t1") is None
    await store.put_brand("t1", {"name": "Acme", "well_known": False}, T0 + 4)
    v3 = await store.senderid_version()
    await store.put_brand("t1", {"name": "Acme Corp"}, T0 + 5)
    assert await store.get_brand("t1") == {"name": "Acme Corp"}
    assert len({v2, v3, await store.senderid_version()}) == 3
    assert await store.senderid_version() == await store.senderid_version()  # stable when nothing changed


# --------------------------------------------------------------------------------------------- webhooks
async def test_webhook_records_replace_and_delete(store: Store) -> None:
    assert await store.get_webhook("t1") is None
    await store.put_webhook("t1", "https://a.example/hook", "first", T0)
    await store.put_webhook("t1", "https://b.example/hook", "second", T0 + 1)  # one per tenant, replaced
    hook = await store.get_webhook("t1")
    assert hook is not None and (hook.url, hook.secret, hook.created_at) == (
        "https://b.example/hook",
        b"second",
        T0 + 1,
    )
    assert await store.delete_webhook("t1") is True
    assert await store.delete_webhook("t1") is False
    assert await store.get_webhook("t1") is None


# --------------------------------------------------------------------------------------------- webhook outbox
def ev(event_id: str, due: float = T0, tenant: str = "t1") -> OutboxEvent:
    return OutboxEvent(event_id, tenant, '{"status":"submitted"}', 0, due)


async def test_outbox_events_are_leased_and_taken_over_only_when_the_lease_runs_out(store: Store) -> None:
    await store.outbox_add([ev("e1"), ev("e2", due=T0 + 5)], worker="w1", lease_until=T0 + LEASE, now=T0)
    await store.outbox_add([ev("e1")], worker="w9", lease_until=T0 + 999, now=T0)  # a repeat: no change
    assert await store.outbox_claim("w2", T0 + 1, LEASE, 10) == []  # w1 holds them
    got = await store.outbox_claim("w2", T0 + LEASE + 1, LEASE, 10)
    assert [e.event_id for e in got] == ["e1", "e2"] and got[0].payload == '{"status":"submitted"}'
    assert await store.outbox_claim("w3", T0 + LEASE + 2, LEASE, 10) == []  # w2 holds them now
    # fenced: the old holder can no longer move them, the new one can
    assert not await store.outbox_retry("e1", attempt=1, due=T0 + 50, worker="w1", lease_until=T0 + 99)
    assert await store.outbox_retry("e1", attempt=1, due=T0 + 50, worker="w2", lease_until=T0 + 50 + LEASE)
    await store.outbox_done(["e2", "absent"])
    late = await store.outbox_claim("w3", T0 + 50 + LEASE + 1, LEASE, 10)
    assert [(e.event_id, e.attempt, e.due) for e in late] == [("e1", 1, T0 + 50)]


async def test_outbox_release_renew_and_unclaimed_events(store: Store) -> None:
    await store.outbox_add([ev("a"), ev("b")], worker="w1", lease_until=T0 + LEASE, now=T0)
    await store.outbox_add([ev("c")], worker=None, lease_until=0.0, now=T0)  # for anyone, at once
    assert [e.event_id for e in await store.outbox_claim("w2", T0, LEASE, 10)] == ["c"]
    assert await store.outbox_renew("w1", T0 + 10) == 2  # never shortens: still T0 + LEASE
    assert await store.outbox_claim("w2", T0 + LEASE - 1, LEASE, 10) == []
    assert await store.outbox_renew("w1", T0 + 3 * LEASE) == 2
    lapsed = await store.outbox_claim("w3", T0 + 2 * LEASE, LEASE, 10)
    assert [e.event_id for e in lapsed] == ["c"]  # w2's lease on c ran out; w1's renewed ones did not
    assert await store.outbox_release("w1") == 2  # a clean stop: the next process takes them at once
    assert sorted(e.event_id for e in await store.outbox_claim("w2", T0 + 1, LEASE, 1)) in (["a"], ["b"])
    assert len(await store.outbox_claim("w3", T0 + 1, LEASE, 10)) == 1  # the limit left the other one


async def test_of_concurrent_outbox_claims_each_event_goes_to_one_process(opened: Opened) -> None:
    await opened.store.outbox_add([ev(f"e{i}") for i in range(20)], worker=None, lease_until=0.0, now=T0)
    other = await opened.second()
    try:
        claims = [s.outbox_claim(f"w{i}", T0, LEASE, 3) for i, s in enumerate([opened.store, other] * 5)]
        got = [e.event_id for batch in await asyncio.gather(*claims) for e in batch]
    finally:
        await other.close()
    assert len(got) == len(set(got)) == 20


async def test_receipts_applied_as_one_batch_each_get_their_own_record(store: Store) -> None:
    ring = store.keyring
    a = message(ring, status="sending", claimed_by="w1")
    b = message(ring, status="sending", claimed_by="w1")
    for m in (a, b):
        await store.insert_message(m)
    assert await submit(store, a.id, worker="w1", carrier_id="c-a", now=T0 + 1)
    assert await submit(store, b.id, worker="w1", carrier_id="c-b", now=T0 + 1)
    got = await store.apply_receipts(
        [
            ("sim", "c-b", "failed", "e1"),
            ("sim", "c-x", "delivered", None),
            ("sim", "c-a", "delivered", None),
        ],
        T0 + 2,
    )
    assert [r.id if r else None for r in got] == [b.id, None, a.id]
    assert [(r.status, r.error_code) for r in got if r] == [("failed", "e1"), ("delivered", None)]
    assert await store.get_message(None, a.id) == got[2] and await store.get_message(None, b.id) == got[0]
