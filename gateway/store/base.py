"""The durable store's interface: every method the gateway calls on a store, grouped by concern.

``SqliteStore`` and ``PgStore`` (``gateway/store/__init__.py``) fill it: SQLite embedded in one
process, PostgreSQL when many processes share the store. Callers (``gateway.context``,
``gateway.store.router``, services, dispatch) name :class:`Store`, never an engine;
``tests/gateway/test_store_contract.py`` is the behaviour every engine must show, parametrised over
engines.

Rules that hold for every method below, on every engine:

* **Durable on return.** A write's coroutine returns only after its transaction committed durably
  (SQLite: WAL, ``synchronous=FULL``; PostgreSQL: ``synchronous_commit=on``). The API answers 202 after
  ``insert_otp``/``insert_message`` returned, so nothing acknowledged is lost in a crash.
* **Group commit.** An engine may (and under load should) put the writes of many concurrent callers in
  one transaction, but each caller's write is all-or-nothing, its rows written once, and a write that
  fails (e.g. a duplicate id) fails only its own caller, never a neighbour in the same transaction.
* **Tenant scoping.** A method that takes a tenant id reads and writes only that tenant's rows: another
  tenant's object reads as absent (the API answers 404) and is never changed.
* **Conditional transitions.** Status changes are compare-and-set on the current status in one
  statement (``UPDATE … WHERE status = …``), so concurrent callers cannot both win; the loser learns it
  from the return value (``False``/``None``). Repeating such a call is harmless (idempotent).
* **Time comes in.** Every time-dependent method takes ``now``; an engine never reads a clock itself.
* **Sealed stays sealed.** ``*_enc`` values arrive sealed by :class:`Keyring` and are stored as given;
  the few methods that seal or open (documents, links, webhook secrets) say so. A column holding
  personal data is either sealed or a keyed HMAC, never clear text.
* **Errors.** A write that breaks a constraint or a store that cannot be reached raises; nothing is
  half-applied. Each engine names the exception types that mean "cannot serve now" in
  ``unavailable`` (SQLite: ``sqlite3.Error``; PostgreSQL: ``asyncpg.PostgresError`` and its own
  ``PgUnavailable`` for a refused, lost or timed-out connection); ``gateway.middleware`` answers those
  with 503 ``unavailable``, anything else 500.

Plain values cross this interface: the records of ``gateway/store/records.py``, :class:`Webhook`,
:class:`RetentionPolicy` and :class:`gateway.privacy.audit.AuditRecord` (re-exported here).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from gateway.privacy.audit import AuditRecord
from gateway.privacy.crypto import Keyring
from gateway.store.records import ApiKeyInfo, MessageRecord, OtpRecord, Principal, Tenant

__all__ = [
    "AuditRecord",
    "AuditStore",
    "ConversionStore",
    "DispatchStore",
    "KeyStore",
    "MessageRecord",
    "MessageStore",
    "OtpRecord",
    "OtpStore",
    "Principal",
    "PrivacyStore",
    "RetentionPolicy",
    "SenderIdStore",
    "Store",
    "StoreLifecycle",
    "Tenant",
    "TenantStore",
    "Webhook",
    "WebhookStore",
]


@dataclass(frozen=True, slots=True)
class Webhook:
    """A tenant's status-callback endpoint, its secret opened (only ever held in memory)."""

    tenant_id: str
    url: str
    secret: bytes
    created_at: float


@dataclass(frozen=True)
class OutboxEvent:
    """A status callback waiting for delivery: the body's fields (JSON object text, without ``attempt``
    and ``timestamp``, which each try adds), tries made so far, and when the next is due (epoch s)."""

    event_id: str
    tenant_id: str
    payload: str
    attempt: int
    due: float


@dataclass(frozen=True)
class RetentionPolicy:
    """Seconds each data class is kept (0 = forever)."""

    otps: float
    message_bodies: float
    messages: float
    receipts: float
    events: float
    audit: float
    privacy_requests: float


class StoreLifecycle(Protocol):
    """Opening, closing and health. ``keyring`` seals and opens this store's personal data."""

    keyring: Keyring
    #: the engine's exception types that mean the store cannot serve now (the API answers 503)
    unavailable: tuple[type[Exception], ...]

    async def open(self) -> None:
        """Connect, bring the schema to the newest version (safe when several processes start at once:
        migrations run under a lock, each step once) and load the data keys; the first open of an
        empty database creates data key 1, wrapped by the master key."""
        ...

    async def close(self) -> None:
        """Commit what is queued, then release connections. Writes after ``close`` raise."""
        ...

    async def ping(self) -> bool:
        """True when a read succeeds now (``/readyz``); never raises."""
        ...

    async def writable(self) -> bool:
        """False when the store can be seen not to take writes now (``/readyz``): its file system is
        read-only or all but full (SQLite); never raises. PostgreSQL answers True: its server's disk
        shows in ``ping`` and in the writes' errors, not from here."""
        ...


class KeyStore(Protocol):
    """Versioned data keys, stored wrapped by the master key (``smsgw keys rotate``)."""

    async def refresh_keyring(self) -> bool:
        """Load data keys another process added into ``keyring``; True when one was new."""
        ...

    async def add_data_key(self, now: float) -> int:
        """Add a data key (id = highest + 1, allocated atomically), make it the active one for new
        values and return its id."""
        ...

    async def count_stale_sealed(self) -> int:
        """How many sealed values anywhere in the store are not under the active key."""
        ...

    async def reseal_batch(self, limit: int = 500) -> int:
        """Re-encrypt up to ``limit`` stale values under the active key in one transaction; returns how
        many (0 = none left). Safe to repeat and to run beside live traffic."""
        ...


class TenantStore(Protocol):
    """Tenants, API keys (stored only as hashes) and per-tenant settings."""

    async def create_tenant(self, tenant: Tenant, key_hash: bytes, scopes: frozenset[str]) -> None:
        """The tenant and its first key in one transaction (both or neither). An existing tenant id or
        key hash raises and changes nothing."""
        ...

    async def add_api_key(self, tenant_id: str, key_hash: bytes, scopes: frozenset[str], now: float) -> bool:
        """Another key for an existing tenant; False (nothing written) when there is no such tenant."""
        ...

    async def principal_for_key(self, key_hash: bytes) -> Principal | None:
        """The tenant and scopes of an unrevoked key; None for an unknown or revoked key."""
        ...

    async def api_keys(self, tenant_id: str) -> list[ApiKeyInfo]:
        """The tenant's keys, revoked ones too, oldest first ([] for no such tenant)."""
        ...

    async def revoke_api_key(self, tenant_id: str, key_hash: bytes, now: float) -> bool:
        """Mark the tenant's key revoked at ``now``; False (nothing written) when the tenant has no such
        unrevoked key. Processes that cached the key refuse it once their cache entry expires."""
        ...

    async def tenant_settings(self, tenant_id: str | None = None) -> dict[str, dict[str, Any]]:
        """Settings by tenant id: one tenant's (``{}`` for a tenant without any, absent when there is no
        such tenant) or, with None, every tenant's."""
        ...

    async def update_tenant_settings(self, tenant_id: str, changes: dict[str, Any]) -> dict[str, Any]:
        """Merge ``changes`` into the tenant's settings (other keys kept); returns the result. JSON
        values only. Concurrent merges never lose each other's keys: a PostgreSQL engine merges in one
        statement (``settings || $changes``); the SQLite engine reads and writes in one write
        transaction."""
        ...


class OtpStore(Protocol):
    """OTP records: the code only as a keyed hash, the number sealed plus its keyed HMAC."""

    async def insert_otp(self, otp: OtpRecord, message: MessageRecord) -> None:
        """The OTP and its outbox message in ONE transaction: both durable or neither. The message may
        arrive already claimed (``status="sending"`` with a lease) by the dispatcher of the inserting
        process, so no claim write follows. An id already present raises and leaves the first record
        as it was: an accepted request is never stored twice."""
        ...

    async def get_otp(self, tenant_id: str, otp_id: str) -> OtpRecord | None:
        """The tenant's OTP with ``route`` filled from its message; None for another tenant's id."""
        ...

    async def finish_otp(self, otp_id: str, status: str, now: float) -> bool:
        """``pending → verified | expired | failed`` as one conditional update (``verified_at = now``
        only for verified). False, with nothing changed, when it was no longer pending: of two
        concurrent verifications exactly one gets True."""
        ...


class MessageStore(Protocol):
    """Outbound messages (the outbox): accepted, then handed to a carrier by the dispatcher."""

    async def insert_message(self, message: MessageRecord) -> None:
        """Store a message as given (queued, or already claimed: see ``insert_otp``). An id already
        present raises and leaves the first record as it was."""
        ...

    async def get_message(self, tenant_id: str | None, message_id: str) -> MessageRecord | None:
        """The message; scoped to ``tenant_id`` unless it is None (dispatcher and receipts only)."""
        ...

    async def count_by_status(self) -> dict[str, int]:
        """Messages per status (statuses with none are absent)."""
        ...


class DispatchStore(Protocol):
    """Exactly-once hand-over to carriers: claims with leases, conditional status transitions.

    Lifecycle (``gateway.dispatch``): queued → sending (claim) → submitted | queued (retry) | failed |
    expired; submitted → delivered | failed | expired (receipt). A claim is a lease: ``claimed_by``
    holds the message until ``claimed_until``; after that any process's sweep may claim it again (the
    holder died mid-submit). Carriers de-duplicate by our message id, which makes such a takeover safe.
    """

    async def claim(self, message_id: str, worker: str, now: float, lease: float) -> MessageRecord | None:
        """Atomically take a message that is queued, or sending with a lease that ran out
        (``claimed_until < now``): status sending, ``claimed_by = worker``, ``claimed_until = now +
        lease``, attempts + 1; returns the updated record. None, with nothing changed, when another
        worker holds a live lease or the message is in any other status: of concurrent claims exactly
        one wins. PostgreSQL: one ``UPDATE … WHERE … RETURNING`` (no read-then-write)."""
        ...

    async def due_messages(self, now: float, limit: int) -> list[str]:
        """Up to ``limit`` ids, oldest ``not_before`` first, of messages queued with ``not_before <=
        now`` or sending with an expired lease. A hint only: the caller must still ``claim`` each one.
        PostgreSQL may add ``FOR UPDATE SKIP LOCKED`` so processes sweeping together split the work."""
        ...

    async def mark_submitted(
        self,
        message_id: str,
        *,
        route: str,
        route_reason: str,
        carrier: str,
        carrier_message_id: str,
        segments: int,
        now: float,
        worker: str,
    ) -> bool:
        """sending → submitted with the carrier's id; releases the claim and, for an OTP, wipes the sealed
        code (``payload_enc = NULL``) in the same statement. Fenced by the lease: no effect, and False,
        unless the message is sending and still ``claimed_by == worker``. False tells a worker whose
        lease ran out that another one took the message over; it must then not report the message as
        submitted (the carrier de-duplicates the second submission by our message id)."""
        ...

    async def mark_retry(
        self,
        message_id: str,
        *,
        not_before: float,
        tried_routes: str,
        error_code: str,
        error_reason: str,
        now: float,
        worker: str,
    ) -> bool:
        """sending → queued, due again at ``not_before``; releases the claim. Fenced like
        ``mark_submitted``: no effect, and False, unless sending and ``claimed_by == worker``."""
        ...

    async def mark_final(
        self,
        message_id: str,
        *,
        status: str,
        error_code: str | None,
        error_reason: str | None,
        now: float,
        route: str | None = None,
        route_reason: str | None = None,
    ) -> None:
        """Any status → ``status`` (failed, expired, rejected) with the reason; releases the claim, wipes
        an OTP's sealed code, keeps ``route``/``route_reason`` when given None. Unconditional: the caller
        (the dispatcher's transition table) decides that the change is allowed."""
        ...

    async def apply_receipt(
        self, carrier: str, carrier_message_id: str, status: str, error_code: str | None, now: float
    ) -> MessageRecord | None:
        """Apply a delivery receipt to the message the carrier knows as ``carrier_message_id``, only while
        it is submitted (or still sending: a receipt can overtake our own bookkeeping); returns the
        updated record. None when no message matches or it is already final: a repeated receipt
        changes nothing (idempotent)."""
        ...

    async def apply_receipts(
        self, receipts: Sequence[tuple[str, str, str, str | None]], now: float
    ) -> list[MessageRecord | None]:
        """``apply_receipt`` for each ``(carrier, carrier_message_id, status, error_code)``, in order,
        in one store operation (one group-committed write, not one per receipt); each one's updated
        record or None, as ``apply_receipt`` gives it."""
        ...


class AuditStore(Protocol):
    """The audit log: an append-only hash chain (``gateway.privacy.audit``)."""

    async def append_audit(
        self, *, at: float, actor: str, tenant_id: str, action: str, target: str, details: dict[str, Any]
    ) -> int:
        """Append one record and return its ``seq``. Reading the newest record (its ``seq`` and MAC) and
        inserting the next (``seq + 1``, ``prev`` = that MAC, MAC under ``keyring.audit_key``) must be
        ONE serialised step: concurrent appends, from any process, form a single chain with no gap and
        no fork. SQLite gets this from its single writer; PostgreSQL must lock (e.g. a transaction-level
        advisory lock or ``SELECT … FOR UPDATE`` on a chain-head row) inside the insert's transaction."""
        ...

    async def audit_records(
        self, tenant_id: str | None = None, limit: int = 0, target: str | None = None
    ) -> list[AuditRecord]:
        """Records in ``seq`` order: all, or one tenant's (optionally one ``target``'s). With ``limit``,
        the newest ``limit`` of them, still oldest first."""
        ...


class PrivacyStore(Protocol):
    """Data-subject requests, consent, erasure, residency copies and retention (GDPR-style)."""

    async def record_privacy_request(
        self,
        *,
        request_id: str,
        tenant_id: str,
        kind: str,
        subject_hmac: bytes,
        subject_masked: str,
        received_at: float,
        due_at: float,
        completed_at: float | None,
        result: str | None,
    ) -> None:
        """Track a request (export, erasure) against its deadline; the subject only masked and as HMAC."""
        ...

    async def privacy_requests(self, tenant_id: str) -> list[dict[str, Any]]:
        """The tenant's requests, newest first (at most 500): id, kind, subject (masked), received_at,
        due_at, completed_at, result."""
        ...

    async def subject_data(self, tenant_id: str, phone_hmac: bytes) -> dict[str, list[Any]]:
        """Every row about one number within one tenant, sealed values still sealed: ``otps`` (dicts),
        ``messages`` (:class:`MessageRecord`), ``events``, ``consent``, ``copies`` (dicts)."""
        ...

    async def erase_subject(self, tenant_id: str, phone_hmac: bytes, now: float) -> dict[str, int]:
        """Delete one number's rows within one tenant in ONE transaction; returns rows deleted per class
        (events, otps, messages, copies, consent). An opt-out survives as a suppression entry (HMAC
        only) so marketing cannot resume. Repeating it deletes nothing more (idempotent)."""
        ...

    async def set_consent(
        self, tenant_id: str, phone_hmac: bytes, status: str, source: str, now: float
    ) -> None:
        """Upsert the number's consent (opted_in | opted_out) for the tenant; the last write wins."""
        ...

    async def consent_status(self, tenant_id: str, phone_hmac: bytes) -> str | None:
        """opted_in, opted_out, or None when nothing is recorded."""
        ...

    async def tenants_messaging(self, phone_hmac: bytes, sender: str | None) -> list[str]:
        """Distinct tenants that messaged the number (from ``sender`` when given): an inbound STOP's
        addressees. The one cross-tenant read, by HMAC only."""
        ...

    async def insert_copy(
        self,
        *,
        copy_id: str,
        kind: str,
        region: str,
        tenant_id: str,
        phone_hmac: bytes,
        phone_enc: bytes,
        country: str,
        created_at: float,
    ) -> None:
        """The minimal copy of a local-first country's record kept in the control store."""
        ...

    async def purge(self, policy: RetentionPolicy, now: float) -> dict[str, int]:
        """Delete (or strip: message bodies, receipts) what outlived its class's time to live, in small
        transactions so the API never waits long behind it; rows touched per class. Never touches a
        message that is queued or sending. Audit records go oldest first, so the chain is cut only at
        its start."""
        ...


class ConversionStore(Protocol):
    """Conversion events and tracked links."""

    async def insert_event(
        self,
        *,
        event_id: str,
        tenant_id: str,
        message_id: str | None,
        otp_id: str | None,
        event: str,
        country: str,
        route: str | None,
        phone_hmac: bytes | None,
        at: float,
    ) -> None:
        """Record a conversion event (a link opened, an app-reported conversion)."""
        ...

    async def insert_links(
        self, tenant_id: str, message_id: str, links: list[tuple[str, str]], now: float
    ) -> None:
        """``links``: (link id, URL), all in one transaction; the engine seals each URL (``link_url``)."""
        ...

    async def get_link(self, link_id: str) -> tuple[str, str, str] | None:
        """(tenant id, message id, URL opened) of a link; None when unknown or purged."""
        ...


class SenderIdStore(Protocol):
    """Sender-ID registrations (the workflow's state as JSON), their documents (sealed), brand profiles."""

    async def save_registration(
        self,
        reg_id: str,
        tenant_id: str,
        sender: str,
        data: dict[str, Any],
        created_at: float,
        updated_at: float,
    ) -> None:
        """Insert, or replace ``data`` and ``updated_at`` of, a registration (upsert on ``reg_id``; the
        owner and ``created_at`` of an existing one are kept). The last write wins. An id that is
        another tenant's raises the engine's constraint error and changes nothing."""
        ...

    async def get_registration(self, tenant_id: str, reg_id: str) -> dict[str, Any] | None:
        """The tenant's registration data as saved; None for another tenant's id."""
        ...

    async def list_registrations(self, tenant_id: str | None) -> list[dict[str, Any]]:
        """One tenant's registrations, newest first (at most 1000), or with None every tenant's, oldest
        first (the send-time index is built from these)."""
        ...

    async def add_document(
        self,
        *,
        doc_id: str,
        registration_id: str,
        tenant_id: str,
        code: str,
        filename: str,
        content_type: str,
        content: bytes,
        uploaded_at: float,
    ) -> None:
        """Store an uploaded document; the engine seals ``content`` (``document``) and records its size."""
        ...

    async def documents(self, tenant_id: str, registration_id: str) -> list[dict[str, Any]]:
        """The registration's documents (id, code, filename, content_type, size, uploaded_at), oldest
        first, without their content."""
        ...

    async def put_brand(self, tenant_id: str, profile: dict[str, Any], now: float) -> None:
        """Upsert the tenant's brand profile."""
        ...

    async def get_brand(self, tenant_id: str) -> dict[str, Any] | None: ...

    async def senderid_version(self) -> tuple[float, float, int]:
        """A value that changes whenever a registration or brand profile is added or saved (processes
        poll it to rebuild their send-time index). Equal values mean nothing changed."""
        ...


class WebhookStore(Protocol):
    """Each tenant's status-callback endpoint; its signing secret sealed at rest (``webhook_secret``);
    and the outbox of callbacks not yet delivered, so a restart or a crash does not lose them.

    Outbox rows are leased like messages (``DispatchStore``): the process that holds ``claimed_by``
    delivers an event until ``claimed_until``; after that any process may claim it (its holder died).
    Receivers de-duplicate on ``event_id``, which makes a takeover safe."""

    async def put_webhook(self, tenant_id: str, url: str, secret: str, now: float) -> None:
        """Set or replace the tenant's webhook; the engine seals ``secret``."""
        ...

    async def get_webhook(self, tenant_id: str) -> Webhook | None:
        """The tenant's webhook with its secret opened (held in memory only); None when there is none."""
        ...

    async def delete_webhook(self, tenant_id: str) -> bool:
        """Remove the tenant's webhook; False when there was none."""
        ...

    async def outbox_add(
        self, events: Sequence[OutboxEvent], *, worker: str | None, lease_until: float, now: float
    ) -> None:
        """Insert events, claimed by ``worker`` until ``lease_until`` (``worker`` None: unclaimed, for
        any process to take). All in one transaction; an existing ``event_id`` is left as it is."""
        ...

    async def outbox_claim(self, worker: str, now: float, lease: float, limit: int) -> list[OutboxEvent]:
        """Atomically claim up to ``limit`` events whose lease ran out (``claimed_until < now``), earliest
        ``due`` first: ``claimed_by = worker``, ``claimed_until = max(due, now) + lease``. Concurrent
        claims never return the same event twice."""
        ...

    async def outbox_retry(
        self, event_id: str, *, attempt: int, due: float, worker: str, lease_until: float
    ) -> bool:
        """Record a failed try: ``attempt`` tries made, the next due at ``due``, lease extended. Fenced:
        False, and no change, unless ``claimed_by == worker``."""
        ...

    async def outbox_done(self, event_ids: Sequence[str]) -> None:
        """Delivered or given up: delete the events (absent ids are ignored)."""
        ...

    async def outbox_renew(self, worker: str, until: float) -> int:
        """Extend every lease ``worker`` holds to at least ``until`` (the heartbeat of a live process,
        so events waiting in its memory are not taken over); returns how many it holds."""
        ...

    async def outbox_release(self, worker: str) -> int:
        """End every lease ``worker`` holds (a clean stop), so the next process takes them at once;
        returns how many."""
        ...


class Store(
    StoreLifecycle,
    KeyStore,
    TenantStore,
    OtpStore,
    MessageStore,
    DispatchStore,
    AuditStore,
    PrivacyStore,
    ConversionStore,
    SenderIdStore,
    WebhookStore,
    Protocol,
):
    """One region's complete store. Things that are engine-specific stay off this interface: the SQLite
    file path, its migrations (``PRAGMA user_version``), its group writer and pragmas live only in
    ``gateway/store/sqlite.py``; the PostgreSQL URL, schema, pool, migrations and group writer only in
    ``gateway/store/pg.py``; ``gateway.app.open_store`` constructs the engine a location names."""


if TYPE_CHECKING:
    from gateway.store import PgStore, SqliteStore

    # mypy proves here that each engine implements every method of the interface, signatures included
    _sqlite_fills_store: type[Store] = SqliteStore
    _pg_fills_store: type[Store] = PgStore
