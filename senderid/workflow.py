"""The sender-ID registration workflow: a state table, one ``transition()``, and the use cases on top.

Rules (the table below is the only source; ``diagram()`` draws it for ``docs/senderid.md``):

- A request names a sender, a brand, a use case, sample templates and uploaded documents, and one or
  more *targets*: a country, optionally narrowed to one carrier route. Each target moves on its own.
- ``draft --submit--> submitted``, only when every document the country requires is provided;
  otherwise that target stays in ``draft`` and the refusal lists what is missing.
- ``submitted --approve--> approved``, ``submitted --reject(reason)--> rejected``,
  ``submitted --expire--> expired`` (no answer in time), ``approved --expire--> expired`` (validity over).
- ``rejected --resubmit--> draft`` and ``expired --resubmit--> draft``: fix, then submit again.
- Anything else is an :class:`~senderid.errors.InvalidTransition` (HTTP 409).
- Every change yields an :class:`AuditEntry` (who, when, what, details).

All functions are pure: they take the registration and a time, and return a new registration with the
audit entries to append. Storage and HTTP are the gateway's.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

from senderid.documents import DOCUMENT_LABELS
from senderid.errors import (
    InvalidTransition,
    Problem,
    ReasonRequired,
    RequestInvalid,
    TemplateInvalid,
    UnknownTarget,
)
from senderid.format import check_sender_format
from senderid.rules import CountryRule, RuleBook
from senderid.templates import Template, TemplateSet

MAX_REASON_LENGTH = 500


class State(enum.StrEnum):
    DRAFT = "draft"
    SUBMITTED = "submitted"
    APPROVED = "approved"
    REJECTED = "rejected"
    EXPIRED = "expired"


class EventKind(enum.StrEnum):
    SUBMIT = "submit"
    APPROVE = "approve"
    REJECT = "reject"
    EXPIRE = "expire"
    RESUBMIT = "resubmit"


TRANSITIONS: Mapping[tuple[State, EventKind], State] = {
    (State.DRAFT, EventKind.SUBMIT): State.SUBMITTED,
    (State.SUBMITTED, EventKind.APPROVE): State.APPROVED,
    (State.SUBMITTED, EventKind.REJECT): State.REJECTED,
    (State.SUBMITTED, EventKind.EXPIRE): State.EXPIRED,
    (State.APPROVED, EventKind.EXPIRE): State.EXPIRED,
    (State.REJECTED, EventKind.RESUBMIT): State.DRAFT,
    (State.EXPIRED, EventKind.RESUBMIT): State.DRAFT,
}
"""The whole state machine: (state, event) -> next state. Pairs not listed are invalid."""


@dataclass(frozen=True, slots=True)
class Event:
    kind: EventKind
    reason: str = ""


def transition(state: State, event: Event) -> State:
    """The state after ``event``; raises ``InvalidTransition``, or ``ReasonRequired`` for a bare rejection."""
    nxt = TRANSITIONS.get((state, event.kind))
    if nxt is None:
        raise InvalidTransition(state.value, event.kind.value)
    if event.kind is EventKind.REJECT and not event.reason.strip():
        raise ReasonRequired()
    return nxt


def diagram() -> str:
    """The state table as a Mermaid state diagram (embedded in ``docs/senderid.md``)."""
    lines = ["stateDiagram-v2", "    [*] --> draft"]
    for (src, ev), dst in TRANSITIONS.items():
        label = "reject(reason)" if ev is EventKind.REJECT else ev.value
        lines.append(f"    {src.value} --> {dst.value}: {label}")
    lines.append("    approved --> [*]")
    return "\n".join(lines)


@dataclass(frozen=True, slots=True, order=True)
class Target:
    """Where a sender is registered: a country (ISO2), optionally only for one carrier route."""

    country: str
    route: str | None = None

    def __str__(self) -> str:
        return self.country if self.route is None else f"{self.country}/{self.route}"


@dataclass(frozen=True, slots=True)
class TargetStatus:
    target: Target
    state: State
    updated_at: datetime
    reason: str = ""
    valid_until: datetime | None = None


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """One change: who (``actor``, e.g. an API key id), when, what (``action``) and the details."""

    actor: str
    at: datetime
    action: str
    details: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Registration:
    """A sender-ID request and the state of each of its targets."""

    id: str
    tenant_id: str
    sender: str
    brand: str
    use_case: str
    templates: tuple[Template, ...]
    documents: frozenset[str]
    targets: tuple[TargetStatus, ...]
    created_at: datetime

    def status(self, target: Target) -> TargetStatus:
        for t in self.targets:
            if t.target == target:
                return t
        raise UnknownTarget(target.country, target.route)

    def provided_documents(self) -> frozenset[str]:
        """Uploaded document codes plus the codes the request's own fields satisfy."""
        have = set(self.documents)
        if self.sender:
            have.add("sender_id")
        if self.use_case.strip():
            have.add("use_case")
        if self.templates:
            have.update({"sample_content", "template_registration"})
        return frozenset(have)


@dataclass(frozen=True, slots=True)
class Change:
    """A new registration and the audit entries that describe how it got there."""

    registration: Registration
    audit: tuple[AuditEntry, ...]


@dataclass(frozen=True, slots=True)
class SubmitOutcome:
    """Submission result: the change, and per refused target the codes of the missing documents."""

    change: Change
    refused: Mapping[Target, tuple[str, ...]]


@dataclass(frozen=True, slots=True)
class Approval:
    """An approved (tenant, sender, country[, route]) with its templates: what the send-time index holds."""

    tenant_id: str
    sender: str
    country: str
    route: str | None = None
    templates: tuple[Template, ...] = ()


def missing_documents(rule: CountryRule, provided_doc_codes: Iterable[str]) -> list[str]:
    """The codes ``rule`` requires that are not in ``provided_doc_codes``, sorted."""
    return sorted(rule.required_documents - set(provided_doc_codes))


def describe_missing(codes: Sequence[str]) -> str:
    """'company registration certificate (business licence), letter of authorization (LOA)'."""
    return ", ".join(DOCUMENT_LABELS.get(c, c) for c in codes)


def open_request(
    *,
    id: str,
    tenant_id: str,
    sender: str,
    brand: str,
    use_case: str,
    targets: Iterable[Target],
    templates: Iterable[Template] = (),
    documents: Iterable[str] = (),
    rules: RuleBook,
    actor: str,
    at: datetime,
) -> Change:
    """A new registration with every target in ``draft``; ``RequestInvalid`` lists every problem.

    Checked: the sender's format against each target country (a country that accepts no sender of its
    kind is refused here, not at approval), at least one target, no target twice, templates compile,
    document codes are known.
    """
    problems: list[Problem] = []
    where = "request"
    tlist = [Target(t.country.upper(), t.route) for t in targets]
    if not tlist:
        problems.append(Problem(where, "countries", "name at least one country"))
    if len(set(tlist)) != len(tlist):
        problems.append(Problem(where, "countries", "a country (and route) is named twice"))
    if not brand.strip():
        problems.append(Problem(where, "brand", "required"))
    for country in sorted({t.country for t in tlist}):
        result = check_sender_format(sender, rules.country(country))
        for e in result.errors:
            problems.append(Problem(where, f"sender[{country}]", f"{e.code}: {e.message}"))
    tl = tuple(templates)
    try:
        TemplateSet(tl)
    except TemplateInvalid as exc:
        problems.append(Problem(where, "templates", str(exc)))
    docs = frozenset(documents)
    unknown = sorted(docs - set(DOCUMENT_LABELS))
    if unknown:
        problems.append(Problem(where, "documents", f"unknown document code(s): {', '.join(unknown)}"))
    if problems:
        raise RequestInvalid(tuple(problems))
    statuses = tuple(TargetStatus(t, State.DRAFT, at) for t in sorted(tlist))
    reg = Registration(
        id=id,
        tenant_id=tenant_id,
        sender=sender,
        brand=brand.strip(),
        use_case=use_case,
        templates=tl,
        documents=docs,
        targets=statuses,
        created_at=at,
    )
    entry = AuditEntry(
        actor,
        at,
        "sender_id.created",
        {
            "registration": id,
            "sender": sender,
            "targets": ",".join(str(t) for t in sorted(tlist)),
        },
    )
    return Change(reg, (entry,))


def add_documents(reg: Registration, codes: Iterable[str], *, actor: str, at: datetime) -> Change:
    """Record newly uploaded document codes (files are stored by the caller)."""
    new = frozenset(codes)
    unknown = sorted(new - set(DOCUMENT_LABELS))
    if unknown:
        raise RequestInvalid(
            (Problem("documents", "code", f"unknown document code(s): {', '.join(unknown)}"),)
        )
    added = sorted(new - reg.documents)
    entry = AuditEntry(
        actor, at, "sender_id.documents_added", {"registration": reg.id, "codes": ",".join(added)}
    )
    return Change(replace(reg, documents=reg.documents | new), (entry,))


def _apply(
    reg: Registration,
    target: Target,
    event: Event,
    *,
    actor: str,
    at: datetime,
    valid_until: datetime | None = None,
) -> tuple[Registration, AuditEntry]:
    current = reg.status(target)
    nxt = transition(current.state, event)
    status = TargetStatus(
        target,
        nxt,
        at,
        reason=event.reason.strip()[:MAX_REASON_LENGTH],
        valid_until=valid_until if nxt is State.APPROVED else None,
    )
    targets = tuple(status if t.target == target else t for t in reg.targets)
    details = {"registration": reg.id, "target": str(target), "from": current.state.value, "to": nxt.value}
    if status.reason:
        details["reason"] = status.reason
    if status.valid_until is not None:
        details["valid_until"] = status.valid_until.isoformat()
    return replace(reg, targets=targets), AuditEntry(actor, at, f"sender_id.{event.kind.value}", details)


def _select(reg: Registration, targets: Iterable[Target] | None) -> list[Target]:
    if targets is None:
        return [t.target for t in reg.targets]
    chosen = [Target(t.country.upper(), t.route) for t in targets]
    for t in chosen:
        reg.status(t)
    return chosen


def submit(
    reg: Registration, targets: Iterable[Target] | None = None, *, rules: RuleBook, actor: str, at: datetime
) -> SubmitOutcome:
    """Submit the given targets (default: every target in ``draft``).

    A target whose country needs documents the registration lacks is refused and stays in ``draft``;
    ``refused`` maps it to the missing codes (and an audit entry records the refusal). Targets not in
    ``draft`` raise ``InvalidTransition`` when named explicitly and are skipped otherwise.
    """
    if targets is None:
        chosen = [t.target for t in reg.targets if t.state is State.DRAFT]
    else:
        chosen = _select(reg, targets)
    have = reg.provided_documents()
    refused: dict[Target, tuple[str, ...]] = {}
    audit: list[AuditEntry] = []
    for target in chosen:
        transition(reg.status(target).state, Event(EventKind.SUBMIT))
        missing = missing_documents(rules.country(target.country), have)
        if missing:
            refused[target] = tuple(missing)
            audit.append(
                AuditEntry(
                    actor,
                    at,
                    "sender_id.submit_refused",
                    {
                        "registration": reg.id,
                        "target": str(target),
                        "missing": ",".join(missing),
                    },
                )
            )
            continue
        reg, entry = _apply(reg, target, Event(EventKind.SUBMIT), actor=actor, at=at)
        audit.append(entry)
    return SubmitOutcome(Change(reg, tuple(audit)), refused)


def approve(
    reg: Registration, target: Target, *, actor: str, at: datetime, valid_until: datetime | None = None
) -> Change:
    """Approve one submitted target; ``valid_until`` (e.g. an LOA's end) makes ``expire_due`` expire it."""
    reg, entry = _apply(reg, target, Event(EventKind.APPROVE), actor=actor, at=at, valid_until=valid_until)
    return Change(reg, (entry,))


def reject(reg: Registration, target: Target, reason: str, *, actor: str, at: datetime) -> Change:
    reg, entry = _apply(reg, target, Event(EventKind.REJECT, reason), actor=actor, at=at)
    return Change(reg, (entry,))


def resubmit(reg: Registration, target: Target, *, actor: str, at: datetime) -> Change:
    """Move a rejected or expired target back to ``draft`` (then ``submit`` it again)."""
    reg, entry = _apply(reg, target, Event(EventKind.RESUBMIT), actor=actor, at=at)
    return Change(reg, (entry,))


def expire(reg: Registration, target: Target, reason: str = "", *, actor: str, at: datetime) -> Change:
    reg, entry = _apply(reg, target, Event(EventKind.EXPIRE, reason), actor=actor, at=at)
    return Change(reg, (entry,))


def expire_due(
    reg: Registration, *, now: datetime, pending_for: timedelta | None = None, actor: str = "system"
) -> Change:
    """Expire approved targets whose ``valid_until`` has passed and, when ``pending_for`` is given,
    submitted targets that have waited longer than that. Returns no audit entries when nothing is due."""
    audit: list[AuditEntry] = []
    for status in reg.targets:
        due = ""
        if status.state is State.APPROVED and status.valid_until is not None and status.valid_until <= now:
            due = "validity ended"
        elif (
            status.state is State.SUBMITTED
            and pending_for is not None
            and now - status.updated_at >= pending_for
        ):
            due = "no decision in time"
        if due:
            reg, entry = _apply(reg, status.target, Event(EventKind.EXPIRE, due), actor=actor, at=now)
            audit.append(entry)
    return Change(reg, tuple(audit))


def approvals(reg: Registration) -> list[Approval]:
    """The registration's approved targets, as entries for the send-time index."""
    return [
        Approval(reg.tenant_id, reg.sender, t.target.country, t.target.route, reg.templates)
        for t in reg.targets
        if t.state is State.APPROVED
    ]
