"""The send-time check: may this tenant send from this sender to this country (and this text)?

:class:`SenderIndex` is an immutable snapshot built from the approved registrations, the tenants'
fallback senders and the rules; :meth:`SenderIndex.check` costs a few dict lookups (format results are
cached per sender and country, templates are pre-compiled). :class:`LiveSenderIndex` wraps it for the
gateway: ``invalidate()`` after any workflow change, and the next ``check`` reloads through the injected
async loader (one load however many requests wait).

Decision procedure for ``check(tenant, sender, country, text)``:

1. The sender must be well formed and of a kind the country accepts (``invalid_sender`` /
   ``sender_not_allowed``).
2. It must be approved for (tenant, country), or the country must not enforce registration for its kind
   (registration is enforced for alphanumeric senders where the data says ``yes`` or ``unknown``; numeric
   senders are not subject to sender-ID registration in the data) -> else ``sender_not_registered``.
3. If 1 or 2 fails and the tenant configured a fallback sender that passes 1 and 2 (and the country's
   rule has ``fallback_allowed``), the fallback is used: ``fallback_sender``.
4. A country that enforces template registration refuses a text that matches none of the tenant's
   registered templates for it (``template_not_registered``).

With no sender at all, the fallback is used when it passes, else the route's own default sender
(``route_default_sender``): it belongs to the carrier, which registers it where needed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from senderid.documents import DOCUMENT_LABELS
from senderid.format import FormatResult, SenderKind, check_sender_format
from senderid.rules import CountryRule, LeadTime, RuleBook, Support, Tri
from senderid.templates import Template, TemplateSet
from senderid.workflow import Approval

OK = "ok"
FALLBACK_SENDER = "fallback_sender"
ROUTE_DEFAULT_SENDER = "route_default_sender"
SENDER_NOT_REGISTERED = "sender_not_registered"
SENDER_NOT_ALLOWED = "sender_not_allowed"
INVALID_SENDER = "invalid_sender"
TEMPLATE_NOT_REGISTERED = "template_not_registered"
REFUSAL_CODES = frozenset(
    {SENDER_NOT_REGISTERED, SENDER_NOT_ALLOWED, INVALID_SENDER, TEMPLATE_NOT_REGISTERED}
)


@dataclass(frozen=True, slots=True)
class Requirements:
    """What a country needs of a sender, for the refusal's message and the API's details."""

    country: str
    name: str
    alphanumeric: Support
    registration_required: Tri
    numeric: Support
    template_registration_required: Tri
    documents: tuple[str, ...]
    documents_known: bool
    lead_time: LeadTime | None

    @classmethod
    def of(cls, rule: CountryRule) -> Requirements:
        return cls(
            country=rule.iso2,
            name=rule.name,
            alphanumeric=rule.alphanumeric,
            registration_required=rule.registration_required,
            numeric=rule.numeric,
            template_registration_required=rule.template_registration_required,
            documents=tuple(sorted(rule.required_documents)),
            documents_known=rule.documents_known,
            lead_time=rule.lead_time,
        )

    def describe(self) -> str:
        """Sentences saying what the country needs to register a sender."""
        where = f"{self.name} ({self.country})" if self.name != self.country else self.country
        if self.registration_required is Tri.UNKNOWN:
            out = [
                f"Whether {where} requires sender IDs to be registered is not known; "
                "smsgw treats it as required."
            ]
        else:
            out = [f"{where} requires alphanumeric sender IDs to be registered before use."]
        if self.documents:
            docs = "; ".join(DOCUMENT_LABELS.get(d, d) for d in self.documents)
            suffix = (
                "" if self.documents_known else " (the exact list is not known; these are the usual ones)"
            )
            out.append(f"File a sender-ID request with: {docs}{suffix}.")
        else:
            out.append("File a sender-ID request (no documents are required).")
        out.append(f"Expected lead time: {self.lead_time if self.lead_time is not None else 'not known'}.")
        if self.template_registration_required is Tri.YES:
            out.append("Every message text must also match a template registered for the country.")
        if self.numeric in (Support.YES, Support.LIMITED):
            out.append("Numeric senders (phone numbers, short codes) need no sender-ID registration there.")
        return " ".join(out)

    def as_json(self) -> dict[str, Any]:
        return {
            "country": self.country,
            "alphanumeric": self.alphanumeric.value,
            "registration_required": self.registration_required.value,
            "numeric": self.numeric.value,
            "template_registration_required": self.template_registration_required.value,
            "documents": list(self.documents),
            "documents_known": self.documents_known,
            "lead_time_days": None
            if self.lead_time is None
            else [self.lead_time.min_days, self.lead_time.max_days],
        }


@dataclass(frozen=True, slots=True)
class SendDecision:
    """The answer. ``code`` is one of the module's codes; refusals are ``allowed=False``.

    ``routes``: the sender is approved only on these carrier routes (None: any route).
    ``template_id``: the registered template the text matched (to pass on, e.g. India's DLT id).
    ``format_codes``: the format rules that failed, for ``invalid_sender`` and ``sender_not_allowed``.
    """

    allowed: bool
    sender_used: str | None
    fallback_used: bool
    code: str
    message: str
    requirements: Requirements
    routes: frozenset[str] | None = None
    template_id: str | None = None
    format_codes: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class _Judgement:
    code: str
    result: FormatResult
    routes: frozenset[str] | None = None


_NOT_APPROVED: frozenset[str] = frozenset({"\0not approved"})  # sentinel: dict.get default


class SenderIndex:
    """Immutable send-time index (see the module docstring). ``skipped`` lists approvals left out."""

    __slots__ = (
        "_approved",
        "_cache_size",
        "_decisions",
        "_fallbacks",
        "_format_cache",
        "_needs",
        "_requirements",
        "_rules",
        "_templates",
        "skipped",
    )

    def __init__(
        self,
        rules: RuleBook,
        approvals: Iterable[Approval] = (),
        fallbacks: Mapping[str, str] | None = None,
        *,
        cache_size: int = 8192,
    ) -> None:
        self._rules = rules
        self._fallbacks = dict(fallbacks or {})
        self._format_cache: dict[tuple[str, str], FormatResult] = {}
        self._cache_size = cache_size
        self._decisions: dict[tuple[str, str | None, str], SendDecision] = {}
        self._requirements: dict[str, Requirements] = {}
        self._needs: dict[str, str] = {}
        self._approved: dict[tuple[str, str, str], frozenset[str] | None] = {}
        self.skipped: list[str] = []
        by_tenant_country: dict[tuple[str, str], dict[str, Template]] = {}
        for a in approvals:
            rule = rules.country(a.country)
            result = check_sender_format(a.sender, rule)
            if not result.ok:
                self.skipped.append(f"{a.tenant_id}/{rule.iso2}/{a.sender}: {', '.join(result.codes)}")
                continue
            key = (a.tenant_id, rule.iso2, result.normalized)
            if key in self._approved:
                prev = self._approved[key]
                routes = None if prev is None or a.route is None else prev | {a.route}
            else:
                routes = None if a.route is None else frozenset({a.route})
            self._approved[key] = routes
            bucket = by_tenant_country.setdefault((a.tenant_id, rule.iso2), {})
            for t in a.templates:
                if t.id in bucket and bucket[t.id].text != t.text:
                    self.skipped.append(
                        f"{a.tenant_id}/{rule.iso2}: template '{t.id}' registered twice "
                        "with different texts; the first is kept"
                    )
                bucket.setdefault(t.id, t)
        self._templates = {k: TemplateSet(v.values()) for k, v in by_tenant_country.items()}

    def __len__(self) -> int:
        return len(self._approved)

    def requirements(self, country: str) -> Requirements:
        rule = self._rules.country(country)
        req = self._requirements.get(rule.iso2)
        if req is None:
            req = self._requirements[rule.iso2] = Requirements.of(rule)
        return req

    def _needs_text(self, iso2: str) -> str:
        text = self._needs.get(iso2)
        if text is None:
            text = self._needs[iso2] = self.requirements(iso2).describe()
        return text

    def _format(self, sender: str, rule: CountryRule) -> FormatResult:
        key = (sender, rule.iso2)
        result = self._format_cache.get(key)
        if result is None:
            result = check_sender_format(sender, rule)
            if len(self._format_cache) >= self._cache_size:
                self._format_cache.clear()
            self._format_cache[key] = result
        return result

    def _judge(self, tenant_id: str, sender: str, rule: CountryRule) -> _Judgement:
        result = self._format(sender, rule)
        if not result.ok:
            return _Judgement(SENDER_NOT_ALLOWED if result.refused_by_country else INVALID_SENDER, result)
        routes = self._approved.get((tenant_id, rule.iso2, result.normalized), _NOT_APPROVED)
        if routes is not _NOT_APPROVED:
            return _Judgement(OK, result, routes)
        if result.kind is SenderKind.ALPHANUMERIC and rule.registration_enforced:
            return _Judgement(SENDER_NOT_REGISTERED, result)
        return _Judgement(OK, result, None)

    def _fallback(self, tenant_id: str, rule: CountryRule, instead_of: str | None) -> _Judgement | None:
        fallback = self._fallbacks.get(tenant_id)
        if not fallback or fallback == instead_of or not rule.fallback_allowed:
            return None
        j = self._judge(tenant_id, fallback, rule)
        return j if j.code == OK else None

    def check(
        self, tenant_id: str, sender: str | None, country: str, text: str | None = None
    ) -> SendDecision:
        """Decide for one message: ``country`` is the destination's ISO2 code, ``text`` the body if known."""
        key = (tenant_id, sender, country)
        cached = self._decisions.get(key)
        if cached is not None:
            return cached
        rule = self._rules.country(country)
        decision = self._decide(tenant_id, sender, rule, text)
        if not rule.templates_enforced:  # the decision does not depend on the text: keep it
            if len(self._decisions) >= self._cache_size:
                self._decisions.clear()
            self._decisions[key] = decision
        return decision

    def _decide(
        self, tenant_id: str, sender: str | None, rule: CountryRule, text: str | None
    ) -> SendDecision:
        if not sender:
            fb = self._fallback(tenant_id, rule, None)
            if fb is not None:
                msg = f"No sender was given; the tenant's fallback sender '{fb.result.sender}' is used."
                return self._texted(tenant_id, rule, text, fb, FALLBACK_SENDER, msg, fallback=True)
            msg = "No sender was given; the route's default sender is used."
            return self._texted(tenant_id, rule, text, None, ROUTE_DEFAULT_SENDER, msg, fallback=False)
        j = self._judge(tenant_id, sender, rule)
        if j.code == OK:
            return self._texted(tenant_id, rule, text, j, OK, "", fallback=False)
        fb = self._fallback(tenant_id, rule, sender)
        if fb is not None:
            used = f"The tenant's fallback sender '{fb.result.sender}' is used instead."
            msg = f"{self._refusal(sender, rule, j)} {used}"
            return self._texted(tenant_id, rule, text, fb, FALLBACK_SENDER, msg, fallback=True)
        return SendDecision(
            False,
            None,
            False,
            j.code,
            self._refusal(sender, rule, j),
            self.requirements(rule.iso2),
            format_codes=j.result.codes,
        )

    def _texted(
        self,
        tenant_id: str,
        rule: CountryRule,
        text: str | None,
        j: _Judgement | None,
        code: str,
        message: str,
        *,
        fallback: bool,
    ) -> SendDecision:
        sender_used = j.result.normalized if j is not None else None
        routes = j.routes if j is not None else None
        template_id = None
        if rule.templates_enforced and text is not None:
            templates = self._templates.get((tenant_id, rule.iso2))
            template_id = templates.match(text) if templates is not None else None
            if template_id is None:
                count = len(templates) if templates is not None else 0
                msg = (
                    f"{rule.name} ({rule.iso2}) requires every message text to match a registered template; "
                    f"this text matches none of the tenant's {count} approved template(s) there. "
                    "Register the template with a sender-ID request for the country."
                )
                return SendDecision(
                    False, None, False, TEMPLATE_NOT_REGISTERED, msg, self.requirements(rule.iso2)
                )
        return SendDecision(
            True,
            sender_used,
            fallback,
            code,
            message,
            self.requirements(rule.iso2),
            routes=routes,
            template_id=template_id,
        )

    def _refusal(self, sender: str, rule: CountryRule, j: _Judgement) -> str:
        where = f"{rule.name} ({rule.iso2})" if rule.name != rule.iso2 else rule.iso2
        if j.code == SENDER_NOT_REGISTERED:
            return f"Sender '{sender}' is not registered for {where}. {self._needs_text(rule.iso2)}"
        return (
            f"Sender '{sender}' cannot be used for {where}: "
            + "; ".join(e.message for e in j.result.errors)
            + "."
        )


@dataclass(frozen=True, slots=True)
class IndexData:
    """What the index is built from, as the gateway's store returns it."""

    approvals: tuple[Approval, ...] = ()
    fallbacks: Mapping[str, str] = field(default_factory=dict)


IndexLoader = Callable[[], Awaitable[IndexData]]


class LiveSenderIndex:
    """A :class:`SenderIndex` kept current: ``invalidate()`` on change, reloaded on the next ``check``.

    A failed load leaves the index stale and raises to the caller (fail closed: a revoked sender must
    not keep passing because the store is briefly down); the next call tries again.
    """

    def __init__(self, rules: RuleBook, load: IndexLoader) -> None:
        self._rules = rules
        self._load = load
        self._index = SenderIndex(rules)
        self._generation = 1
        self._loaded_generation = 0
        self._lock = asyncio.Lock()
        self.loads = 0

    @property
    def current(self) -> SenderIndex:
        return self._index

    @property
    def stale(self) -> bool:
        return self._loaded_generation != self._generation

    def invalidate(self) -> None:
        self._generation += 1

    async def refresh(self) -> SenderIndex:
        """Reload if stale; concurrent callers share one load."""
        async with self._lock:
            if self.stale:
                generation = self._generation
                data = await self._load()
                self._index = SenderIndex(self._rules, data.approvals, data.fallbacks)
                self._loaded_generation = generation
                self.loads += 1
        return self._index

    async def check(
        self, tenant_id: str, sender: str | None, country: str, text: str | None = None
    ) -> SendDecision:
        index = await self.refresh() if self.stale else self._index
        return index.check(tenant_id, sender, country, text)
