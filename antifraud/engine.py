"""The fraud engine the gateway calls on every send: rules, limits, evidence, model, breakers.

``evaluate`` in order (the first that answers wins)::

    number rules      invalid / unassigned, refused number types, non-geographic  → block
    geo permission    the tenant may not send to the country                       → block
    ── one backend round trip: settle earlier corrections, check limits, read counters, count ──
    rate limits       any scope/window reached                                     → rate_limited
    block list        admin-blocked number, prefix or country                      → block
    allow list        allow-listed or lifted number, prefix or country             → allow
    number evidence   many codes to this number, none verified                     → block / challenge
    trusted number    it verified before for this tenant (returning user)          → allow
    passed challenge  range keeps failing after passed challenges                  → block, else allow
    guard rails       sweep, fill-back collapse, failing challenges (breaker.py)   → challenge
    model             score ≥ threshold                                            → challenge
                                                                                   → allow

A request that is not allowed was counted as sent in the round trip; its correction is queued and
rides along with the next round trip (``limits.py``). ``record_verified`` and
``record_delivery_failed`` are one round trip each.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Literal

from antifraud import keys as K
from antifraud.breaker import Finding, escalation, number_finding, range_rules
from antifraud.decision import (
    Decision,
    DecisionRecord,
    FraudRequest,
    Reason,
    describe_prefix,
    mask_e164,
)
from antifraud.features import (
    DEVICE,
    FEATURE_NAMES,
    IP,
    NUMBER,
    RANGE,
    RANGE_FIELDS_BASE,
    RESEND,
    TENANT,
    Evidence,
    RangeView,
    distinct_recent,
    schema_fields,
    schema_taus,
    sweep_of,
)
from antifraud.geo import CountryInfo, LocalClock, country_info, is_permitted
from antifraud.limits import (
    Erasure,
    FlagRead,
    FraudBackend,
    HashAdd,
    HashRead,
    LimitSpec,
    LimitUndo,
    ListPush,
    Plan,
    Settle,
    Snapshot,
)
from antifraud.numbers import NumberInfo, number_info
from antifraud.scorer import Scorer
from antifraud.settings import FraudSettings, TenantPolicy

log = logging.getLogger("smsgw.antifraud")

ListKind = Literal["number", "prefix", "country"]

_DAY = 86400.0
_LONG_SENT = RANGE_FIELDS_BASE.index(K.LONG_SENT)  # positions in a range record
_LONG_VERIFIED = RANGE_FIELDS_BASE.index(K.LONG_VERIFIED)
_ENTITY_TTL = 14 * _DAY
_IP_TTL = 2 * _DAY


@dataclass(slots=True)
class EngineStats:
    """Counters for the gateway to export (e.g. in a scrape-time collector)."""

    decisions: Counter[str] = field(default_factory=Counter)  # by action
    reasons: Counter[str] = field(default_factory=Counter)  # by primary reason code
    local_state: int = 0  # decisions taken on local state because Redis was down


# Which reason a model feature stands for, when it pushed the score most.
_FEATURE_REASON: dict[str, tuple[str, str]] = {
    "t_cc_deficit": ("country_fillback_low", "country"),
    "t_cc_log_ratio": ("country_fillback_low", "country"),
    "g_cc_deficit": ("country_fillback_low", "country"),
    "t_p5_deficit": ("prefix_fillback_low", "prefix"),
    "g_p5_deficit": ("prefix_fillback_low", "prefix"),
    "g_p4_deficit": ("prefix_fillback_low", "prefix"),
    "g_p3_deficit": ("prefix_fillback_low", "prefix"),
    "min_log_ratio": ("prefix_fillback_low", "prefix"),
    "t_cc_velocity": ("velocity_spike", "country"),
    "g_cc_velocity": ("velocity_spike", "country"),
    "t_p5_velocity": ("velocity_spike", "prefix"),
    "g_p5_velocity": ("velocity_spike", "prefix"),
    "g_p4_velocity": ("velocity_spike", "prefix"),
    "g_p3_requests": ("range_sweep", "prefix"),
    "sweep_distinct": ("range_sweep", "prefix"),
    "sweep_near": ("range_sweep", "prefix"),
    "ch_fail": ("challenges_failing", "prefix"),
    "c_deficit": ("challenge_not_verifying", "prefix"),
    "ip_requests": ("ip_velocity", "ip"),
    "ip_fill": ("ip_velocity", "ip"),
    "ip_countries": ("ip_multi_country", "ip"),
    "kind_voip": ("number_type_risky", "number"),
    "kind_fixed": ("number_type_risky", "number"),
    "kind_unknown": ("number_type_risky", "number"),
    "country_risk": ("country_unusual", "country"),
    "log_price": ("country_unusual", "country"),
    "tenant_country_share": ("country_unusual", "country"),
    "global_country_volume": ("country_unusual", "country"),
    "tenant_volume": ("new_tenant_risk", "tenant"),
    "number_unverified": ("number_unverified_repeat", "number"),
}
assert set(_FEATURE_REASON) <= set(FEATURE_NAMES)


# per tenant, country and 1k block: range keys, their reads, the 10k block's sweep list, the
# allow/block fields of the 1k, 10k and 100k blocks and the country
_Ranges = tuple[tuple[str, ...], tuple[HashRead, ...], str, tuple[str, str, str, str]]


@dataclass(slots=True)
class _Layout:
    """Keys of one request, in the order the plan reads them."""

    ranges: tuple[str, ...]  # t_all, t_cc, t_p5, g_cc, g_p5, g_p4, g_p3
    range_reads: tuple[HashRead, ...]  # the same keys as the plan reads them
    number: str
    device: str | None
    ip: str | None
    resend: str | None  # the session's (or device's) resend marker for this number
    ip_countries: str | None
    sweep: str
    allow: str
    block: str
    list_fields: tuple[str, ...]
    limits: tuple[LimitSpec, ...]
    limit_scopes: tuple[str, ...]
    suffix4: int  # the number's place in its 10k block (``NumberInfo.suffix4``), once a check


class FraudEngine:
    def __init__(
        self,
        settings: FraudSettings,
        backend: FraudBackend,
        model: Scorer,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.backend = backend
        self.model = model
        self.clock = clock
        self.stats = EngineStats()
        self.keys = K.Keyring.of(settings)
        self.schemas = schema_taus(settings)
        self._pos = [{name: i for i, name in enumerate(fields)} for fields in schema_fields(settings)]
        rp = self._pos[RANGE]
        self._pend = tuple(rp[f] for f in K.pending_fields(len(settings.delay_mixture)))
        self._policies: dict[str, TenantPolicy] = {}
        self._groups: dict[
            int, tuple[TenantPolicy, tuple[tuple[str, tuple[tuple[int, int], ...], float], ...]]
        ] = {}
        self._hashes: dict[str, str] = {}
        self._req_deltas: dict[
            tuple[float, bool], tuple[tuple[tuple[int, float], ...], tuple[tuple[int, float], ...]]
        ] = {}
        tp = self._pos[TENANT]
        self._tenant_deltas = ((tp[K.LONG_SENT], 1.0), (tp[K.REQUESTS], 1.0))
        self._ranges: dict[tuple[str, str, str], _Ranges] = {}
        self._tenant_keys: dict[str, tuple[str, str]] = {}  # tenant -> (allow key, block key)
        self._weights: dict[tuple[str, str], float] = {}
        self._deltas: dict[tuple[float, bool, bool, float], tuple[tuple[int, float], ...]] = {}
        self._undos: dict[
            tuple[float, bool, bool], tuple[tuple[tuple[int, float], ...], tuple[tuple[int, float], ...]]
        ] = {}
        # a limit group's windows -> their lengths (for the undo of a count), filled by _limit_groups
        self._spans: dict[tuple[tuple[int, int], ...], tuple[int, ...]] = {}
        self._local = LocalClock()
        # Called with each request that reaches the model and its feature vector (shadow logging of
        # features for retraining; the trainer collects its samples this way).
        self.feature_log: Callable[[FraudRequest, list[float]], None] | None = None
        self._full_ttl = 3 * settings.long_tau
        self._pad = (0.0,) * (len(settings.delay_mixture) + 5)  # a tenant row padded to a range row
        self._short_ttl = 4 * settings.fillback_tau
        self._resend_ttl = 2 * settings.resend_tau

    async def start(self) -> None:
        """Prepare the backend (Redis: load the script), so the first request makes one round trip."""
        await self.backend.prepare(self.schemas)

    async def close(self) -> None:
        await self.flush()
        await self.backend.close()

    # ---- policies -----------------------------------------------------------------------------------

    def set_tenant_policy(self, tenant_id: str, policy: TenantPolicy) -> None:
        self._policies[tenant_id] = policy

    def policy(self, tenant_id: str) -> TenantPolicy:
        return self._policies.get(tenant_id) or self.settings.policy_for(tenant_id)

    # ---- the check ----------------------------------------------------------------------------------

    async def evaluate(self, req: FraudRequest, *, dry_run: bool = False) -> Decision:
        info = number_info(req.e164)
        policy = self.policy(req.tenant_id)
        country = req.country or info.region
        static = self._static(info, country, policy)
        if static is not None:
            return self._finish(req, info, policy, static, None, None, dry_run)

        layout = self._layout(req, info, country, policy)
        cinfo = country_info(country)
        weight = self._weights.get((req.tenant_id, country))
        if weight is None:
            weight = cinfo.fillback
        plan = self._plan(req, info, country, layout, weight, count=not dry_run)
        snap = await self.backend.check(plan)
        if snap.hits:
            limited = self._limited(snap, layout)
            return self._finish(req, info, policy, limited, None, None, dry_run, snap.shared)

        self._remember_weight(req.tenant_id, country, snap.reads[1], cinfo)
        decision = self._decide(req, info, country, policy, layout, snap, weight, cinfo)
        return self._finish(req, info, policy, decision, plan, weight, dry_run, snap.shared)

    def _static(self, info: NumberInfo, country: str, policy: TenantPolicy) -> Decision | None:
        """A refusal that needs no counters (the number or the country alone), or None (the common
        case: the masked number is built only for a refusal)."""
        if not info.valid:
            reason = Reason(
                "number_invalid", f"{_masked(info)} is not a valid number for its country", "number"
            )
        elif info.nongeographic and policy.block_nongeographic:
            reason = Reason(
                "number_nongeographic", f"{_masked(info)} is a satellite or global-service number", "number"
            )
        elif policy.number_types.get(info.kind, "score") == "block":
            reason = Reason(
                "number_type_blocked", f"{_masked(info)} is a {info.kind.replace('_', '-')} number", "number"
            )
        elif not is_permitted(policy.allowed_countries, country):
            reason = Reason(
                "country_not_permitted", f"sending to {country} is not enabled for this account", "country"
            )
        else:
            return None
        return Decision("block", (reason,), score=1.0)

    def _hash(self, value: str) -> str:
        """``Keyring.hash``, remembered: client IPs, devices and blocks come back again and again."""
        got = self._hashes.get(value)
        if got is None:
            if len(self._hashes) > 200_000:
                self._hashes.clear()
            got = self._hashes[value] = self.keys.hash(value)
        return got

    def _range_keys(self, tenant: str, country: str, info: NumberInfo) -> _Ranges:
        """The seven range keys of a request (t_all, t_cc, t_p5, g_cc, g_p5, g_p4, g_p3), their
        reads, the sweep list of the 10k block and the allow/block fields of the blocks and the
        country, cached per tenant, country and 1k block (which determines the 10k and 100k ones)."""
        at = (tenant, country, info.p3)
        got = self._ranges.get(at)
        if got is None:
            if len(self._ranges) > 100_000:
                self._ranges.clear()
            k = self.keys
            g = K.ALL_TENANTS
            keys = (
                k.range(tenant, "all", ""),
                k.range(tenant, "cc", country),
                k.range(tenant, "p5", info.p5),
                k.range(g, "cc", country),
                k.range(g, "p5", info.p5),
                k.range(g, "p4", info.p4),
                k.range(g, "p3", info.p3),
            )
            reads = (HashRead(keys[0], TENANT), *(HashRead(key, RANGE) for key in keys[1:]))
            fields = ("p:" + info.p3, "p:" + info.p4, "p:" + info.p5, "c:" + country)
            got = self._ranges[at] = (keys, reads, k.sweep_of(self._hash(info.p4)), fields)
        return got

    def _lists_of(self, tenant: str) -> tuple[str, str]:
        """The tenant's allow-list and block-list keys."""
        got = self._tenant_keys.get(tenant)
        if got is None:
            if len(self._tenant_keys) > 100_000:
                self._tenant_keys.clear()
            got = self._tenant_keys[tenant] = (self.keys.allow(tenant), self.keys.block(tenant))
        return got

    def _layout(self, req: FraudRequest, info: NumberInfo, country: str, policy: TenantPolicy) -> _Layout:
        k = self.keys
        t = req.tenant_id
        num_hash = self._hash(info.e164)
        dev_hash = self._hash("d:" + req.device_id) if req.device_id else None
        ip_hash = self._hash("i:" + req.client_ip) if req.client_ip else None
        if req.session_id:
            who_hash: str | None = self._hash("s:" + req.session_id)
        else:
            who_hash = dev_hash
        limits: list[LimitSpec] = []
        scopes: list[str] = []
        for scope, windows, ttl in self._limit_groups(policy):
            if scope == "number":
                value: str | None = num_hash
            elif scope == "ip":
                value = ip_hash
            elif scope == "device":
                value = dev_hash
            elif scope == "prefix":
                value = info.e164[: -policy.prefix_limit_digits]
            elif scope == "country":
                value = country
            else:
                value = ""
            if value is None:
                continue
            limits.append(LimitSpec(k.limit(scope, t, value), windows, ttl))
            scopes.append(scope)
        ranges, range_reads, sweep, fields = self._range_keys(t, country, info)
        allow, block = self._lists_of(t)
        return _Layout(
            ranges=ranges,
            range_reads=range_reads,
            number=k.number(t, num_hash),
            device=k.device(t, dev_hash) if dev_hash else None,
            ip=k.ip(ip_hash) if ip_hash else None,
            resend=k.resend(t, who_hash, num_hash) if who_hash else None,
            ip_countries=k.ip_countries(ip_hash) if ip_hash else None,
            sweep=sweep,
            allow=allow,
            block=block,
            list_fields=("n:" + num_hash, *fields),
            limits=tuple(limits),
            limit_scopes=tuple(scopes),
            suffix4=info.suffix4,
        )

    def _limit_groups(
        self, policy: TenantPolicy
    ) -> tuple[tuple[str, tuple[tuple[int, int], ...], float], ...]:
        """The policy's limits grouped by scope, windows ascending, with the TTL of their key
        (cached per policy)."""
        got = self._groups.get(id(policy))
        if got is not None and got[0] is policy:
            return got[1]
        by: dict[str, list[tuple[int, int]]] = {}
        for rule in policy.limits:
            by.setdefault(rule.scope, []).append((rule.window, rule.limit))
        groups = tuple(
            (scope, windows, 2.0 * windows[-1][0])
            for scope, windows in ((sc, tuple(sorted(ws))) for sc, ws in by.items())
        )
        for _, windows, _ in groups:
            self._spans[windows] = tuple(w for w, _ in windows)
        self._groups[id(policy)] = (policy, groups)
        return groups

    def _send_deltas(
        self, weight: float, full: bool, challenged: bool, sign: float
    ) -> tuple[tuple[int, float], ...]:
        key = (weight, full, challenged, sign)
        got = self._deltas.get(key)
        if got is None:
            if len(self._deltas) > 10_000:
                self._deltas.clear()
            got = self._deltas[key] = self._make_deltas(weight, full, challenged, sign)
        return got

    def _undo_deltas(
        self, weight: float, cp: bool, challenge: bool
    ) -> tuple[tuple[tuple[int, float], ...], tuple[tuple[int, float], ...]]:
        """The deltas that undo a request's tentative send in its long and short ranges (and count
        a challenge)."""
        key = (weight, cp, challenge)
        got = self._undos.get(key)
        if got is None:
            full = self._send_deltas(weight, True, cp, -1.0)
            short = self._send_deltas(weight, False, cp, -1.0)
            if challenge:
                ch = ((self._pos[RANGE][K.CHALLENGED], 1.0),)
                full += ch
                short += ch
            if len(self._undos) > 10_000:
                self._undos.clear()
            got = self._undos[key] = (full, short)
        return got

    def _request_deltas(
        self, weight: float, cp: bool
    ) -> tuple[tuple[tuple[int, float], ...], tuple[tuple[int, float], ...]]:
        """The deltas a request adds to its ranges kept over the long window and the short one."""
        key = (weight, cp)
        got = self._req_deltas.get(key)
        if got is None:
            rp = self._pos[RANGE]
            req_fields: tuple[tuple[int, float], ...] = ((rp[K.REQUESTS], 1.0),)
            if cp:
                req_fields += ((rp[K.CH_PASSED_REQ], 1.0),)
            full = self._send_deltas(weight, True, cp, 1.0) + req_fields
            short = self._send_deltas(weight, False, cp, 1.0) + req_fields
            if len(self._req_deltas) > 10_000:
                self._req_deltas.clear()
            got = self._req_deltas[key] = (full, short)
        return got

    def _make_deltas(
        self, weight: float, full: bool, challenged: bool, sign: float
    ) -> tuple[tuple[int, float], ...]:
        rp = self._pos[RANGE]
        d: list[tuple[int, float]] = [(rp[K.SENT], sign), (rp[K.EXPECTED], sign * weight)]
        d += [(p, sign * weight) for p in self._pend]
        if full:
            d.append((rp[K.LONG_SENT], sign))
        if challenged:
            d += [(rp[K.CH_SENT], sign), (rp[K.CH_EXPECTED], sign * weight)]
        return tuple(d)

    def _op(
        self, key: str, schema: int, deltas: tuple[tuple[str, float], ...], at: float, ttl: float
    ) -> HashAdd:
        pos = self._pos[schema]
        return HashAdd(key, schema, tuple((pos[f], d) for f, d in deltas), at, ttl)

    def _plan(
        self, req: FraudRequest, info: NumberInfo, country: str, lay: _Layout, weight: float, *, count: bool
    ) -> Plan:
        now = req.now
        s = self.settings
        cp = req.challenge_passed
        full, short = self._request_deltas(weight, cp)
        r = lay.ranges
        fttl, sttl = self._full_ttl, self._short_ttl
        writes = [
            HashAdd(r[0], TENANT, self._tenant_deltas, now, fttl),
            HashAdd(r[1], RANGE, full, now, fttl),
            HashAdd(r[2], RANGE, full, now, fttl),
            HashAdd(r[3], RANGE, full, now, fttl),
            HashAdd(r[4], RANGE, full, now, fttl),
            HashAdd(r[5], RANGE, short, now, sttl),
            HashAdd(r[6], RANGE, short, now, sttl),
            HashAdd(lay.number, NUMBER, ((0, 1.0),), now, _ENTITY_TTL),
        ]
        reads = [*lay.range_reads, HashRead(lay.number, NUMBER)]
        lists = [(lay.sweep, s.sweep_list)]
        stamp = f"{now:.0f}"
        pushes = [ListPush(lay.sweep, f"{lay.suffix4}:{stamp}", s.sweep_list, 2.0 * s.sweep_window)]
        if lay.device:
            reads.append(HashRead(lay.device, DEVICE))
            writes.append(HashAdd(lay.device, DEVICE, ((0, 1.0),), now, _ENTITY_TTL))
        if lay.ip and lay.ip_countries:
            reads.append(HashRead(lay.ip, IP))
            writes.append(HashAdd(lay.ip, IP, ((0, 1.0), (1, 1.0)), now, _IP_TTL))
            lists.append((lay.ip_countries, 8))
            pushes.append(ListPush(lay.ip_countries, f"{country}:{stamp}", 8, _DAY))
        if lay.resend:  # last: its read is the snapshot's last row, its write the plan's last
            reads.append(HashRead(lay.resend, RESEND))
            writes.append(HashAdd(lay.resend, RESEND, ((0, 1.0),), now, self._resend_ttl))
        return Plan(
            now=now,
            schemas=self.schemas,
            count=count,
            limits=lay.limits,
            reads=tuple(reads),
            lists=tuple(lists),
            flags=(FlagRead(lay.allow, lay.list_fields), FlagRead(lay.block, lay.list_fields)),
            writes=tuple(writes),
            pushes=tuple(pushes),
        )

    def _limited(self, snap: Snapshot, lay: _Layout) -> Decision:
        reasons = []
        worst = 0.0
        for hit in sorted(snap.hits, key=lambda h: -h.retry_after):
            scope = lay.limit_scopes[hit.index]
            worst = max(worst, hit.retry_after)
            reasons.append(
                Reason(
                    "rate_limited",
                    f"at most {hit.limit} per {_span(hit.window)} per {scope}; "
                    f"retry in {math.ceil(hit.retry_after)} s",
                    scope,
                )
            )
        return Decision("rate_limited", tuple(reasons), retry_after=worst, score=0.0)

    def _evidence(
        self,
        req: FraudRequest,
        info: NumberInfo,
        suffix4: int,
        country: str,
        cinfo: CountryInfo,
        snap: Snapshot,
        weight: float,
        hour: float,
        declared: frozenset[str] = frozenset(),
        created_at: float | None = None,
    ) -> Evidence:
        s = self.settings
        rows = snap.reads
        lsent, lver, treq = rows[0]
        # the tenant's country range holds at most its age of history (its 100k blocks are judged
        # against a day: real users are a few a day in a block, pumping concentrates there)
        span = max(req.now - created_at, 1.0) if created_at is not None else 0.0
        young = 0.0 < span < s.long_tau
        if not young:
            span = 0.0
        ns, nv, nh = rows[7]
        idx = 8
        dq = dh = 0.0
        if req.device_id:
            dq, dh = rows[idx]
            idx += 1
        iq = iday = iv = 0.0
        ip_countries = 0
        if req.client_ip:
            iq, iday, iv = rows[idx]
            ip_countries = distinct_recent(snap.lists[1], req.now, _DAY, exclude=country)
        return Evidence(
            t_all=RangeView((0.0, 0.0, 0.0, 0.0, treq, lsent, lver, *self._pad), s),
            t_cc=RangeView(rows[1], s, weight, span),
            t_p5=RangeView(rows[2], s, weight, 0.0),
            g_cc=RangeView(rows[3], s),
            g_p5=RangeView(rows[4], s),
            g_p4=RangeView(rows[5], s),
            g_p3=RangeView(rows[6], s),
            number_sent=ns,
            number_verified=nv,
            number_history=nh,
            device_requests=dq,
            device_history=dh,
            ip_short=iq,
            ip_day=iday,
            ip_verified=iv,
            ip_countries=ip_countries,
            sweep=sweep_of(snap.lists[0], suffix4, req.now, s.sweep_window),
            local_hour=hour,
            risk=cinfo.risk,
            price=cinfo.price_usd,
            info=info,
            has_ip=bool(req.client_ip),
            has_device=bool(req.device_id),
            challenge_passed=req.challenge_passed,
            declared_of=len(declared) if country in declared else 0,
            declares=bool(declared),
            declared_volume=s.declared_country_volume,
            young=young,
        )

    def _remember_weight(
        self, tenant_id: str, country: str, t_cc: Sequence[float], cinfo: CountryInfo
    ) -> None:
        """Learn the tenant's verify rate in the country from its counters (the row of ``t_cc``);
        until then its weight is the country prior (``cinfo.fillback``)."""
        prior = cinfo.fillback
        m = self.settings.tenant_prior_strength
        p = (t_cc[_LONG_VERIFIED] + m * prior) / (t_cc[_LONG_SENT] + m)
        if len(self._weights) > 200_000:
            self._weights.clear()
        # rounded: a per-mille is precision enough, and the send deltas can be reused
        self._weights[(tenant_id, country)] = round(min(max(p, 0.5 * prior), 1.0), 3)

    def _decide(
        self,
        req: FraudRequest,
        info: NumberInfo,
        country: str,
        policy: TenantPolicy,
        lay: _Layout,
        snap: Snapshot,
        weight: float,
        cinfo: CountryInfo,
    ) -> Decision:
        now = req.now
        allow_flags, block_flags = snap.flags
        for kind, value in zip(_LIST_KINDS, block_flags, strict=True):
            if value and _active(value, now):
                return Decision(
                    "block", (Reason("blocklisted", f"this {kind} is on the block list", kind),), score=1.0
                )
        for value in allow_flags:
            if value and _active(value, now):
                return Decision("allow", score=0.0)

        # the number's own evidence first: the ranges are only looked at when it does not decide
        ns, nv, nh = snap.reads[7]
        found = number_finding(ns, nv, nh, self.settings)
        if found is not None and found.action == "block":
            return Decision("block", (self._reason(found, info, country),), score=1.0)
        if nh >= 0.5:  # returning user: verified before for this tenant
            return Decision("allow", score=0.0)
        if found is None and lay.resend and snap.reads[-1][0] >= self.settings.resend_min:
            # the same session asked for a code to this number minutes ago and it was sent: the retry
            # of a late or lost SMS (one-number pumping meets the number's limits and evidence)
            return Decision("allow", score=0.0, challenged=req.challenge_passed)

        hour = self._local.hour(info.zone, now)
        ev = self._evidence(
            req, info, lay.suffix4, country, cinfo, snap, weight, hour, policy.declared, policy.created_at
        )
        if req.challenge_passed:
            esc = escalation(ev, self.settings, attacked=range_rules(ev, self.settings) is not None)
            if esc is not None:
                return Decision("block", (self._reason(esc, info, country),), score=1.0, challenged=True)
            return Decision("allow", score=0.0, challenged=True)

        reasons: list[Reason] = []
        if found is not None:
            reasons.append(self._reason(found, info, country))
        if policy.number_types.get(info.kind) == "challenge":
            reasons.append(
                Reason(
                    "number_type_challenged",
                    f"{info.kind.replace('_', '-')} numbers need a challenge",
                    "number",
                )
            )
        rule = range_rules(ev, self.settings)
        if rule is not None:
            reasons.append(self._reason(rule, info, country))
        x = ev.vector(self.settings)
        if self.feature_log is not None:
            self.feature_log(req, x)
        score = self.model.score(x)
        threshold = policy.challenge_threshold
        if threshold is None:
            threshold = self.model.threshold
        if score >= threshold:
            reasons.extend(self._model_reasons(x, info, country, have={r.code for r in reasons}))
        if reasons:
            return Decision("challenge", tuple(reasons), score=score)
        return Decision("allow", score=score)

    def _reason(self, f: Finding, info: NumberInfo, country: str) -> Reason:
        masked = mask_e164(info.e164, info.country_code)
        where = f.where
        across = " (across tenants)" if where.startswith("g_") else ""
        if where == "number":
            return Reason(f.code, f"{masked}: {f.detail}", "number")
        if where.endswith("cc"):
            return Reason(f.code, f"{country}{across}: {f.detail}", "country")
        depth = {"p5": (info.p5, 5), "p4": (info.p4, 4), "p3": (info.p3, 3)}[where[2:]]
        text = describe_prefix(depth[0], info.country_code) + "x" * depth[1]
        return Reason(f.code, f"{text}{across}: {f.detail}", "prefix")

    def _model_reasons(self, x: list[float], info: NumberInfo, country: str, have: set[str]) -> list[Reason]:
        out: list[Reason] = []
        for name, contrib in self.model.contributions(x)[:3]:
            if contrib < 0.5 and out:
                break
            code, scope = _FEATURE_REASON.get(name, ("fraud_score", "tenant"))
            if code in have or any(r.code == code for r in out):
                continue
            where = country if scope == "country" else describe_prefix(info.p4, info.country_code) + "xxxx"
            if scope in ("ip", "number", "tenant"):
                where = {"ip": "this client IP", "number": mask_e164(info.e164, info.country_code)}.get(
                    scope, "this account"
                )
            out.append(Reason(code, f"{where}: {name.replace('_', ' ')} raised the fraud score", scope))
        if not out and not have:
            out.append(Reason("fraud_score", "the combined fraud score is above the threshold", "tenant"))
        return out

    def _finish(
        self,
        req: FraudRequest,
        info: NumberInfo,
        policy: TenantPolicy,
        decision: Decision,
        plan: Plan | None,
        weight: float | None,
        dry_run: bool,
        shared: bool = True,
    ) -> Decision:
        if not shared:
            decision = _replace_shared(decision)
        if not policy.enforce and decision.action in ("challenge", "block"):
            log.info("antifraud monitor mode: would %s %s", decision.action, _codes(decision))
            decision = Decision("allow", decision.reasons, None, decision.score, decision.shared_state)
        if dry_run:
            return decision
        self.stats.decisions[decision.action] += 1
        if decision.reasons:
            self.stats.reasons[decision.reasons[0].code] += 1
        if not shared:
            self.stats.local_state += 1
        if plan is not None and weight is not None and decision.action != "allow":
            self.backend.settle(self._correction(req, info, plan, weight, decision), shared=shared)
        elif decision.action != "allow":
            self.backend.settle(Settle(logs=(self._record(req, info, decision),)), shared=shared)
        if decision.action != "allow" and log.isEnabledFor(logging.INFO):
            log.info(
                "antifraud %s tenant=%s to=%s country=%s reasons=%s score=%.3f",
                decision.action,
                req.tenant_id,
                mask_e164(info.e164, info.country_code or None),
                req.country or info.region,
                _codes(decision),
                decision.score,
            )
        return decision

    def _correction(
        self, req: FraudRequest, info: NumberInfo, plan: Plan, weight: float, decision: Decision
    ) -> Settle:
        """Undo the tentative send of a request that was not allowed (and count a challenge)."""
        now = req.now
        cp = req.challenge_passed
        w = plan.writes
        full, short = self._undo_deltas(weight, cp, decision.action == "challenge")
        fttl, sttl = self._full_ttl, self._short_ttl
        adds: tuple[HashAdd, ...] = (
            HashAdd(w[0].key, TENANT, ((self._pos[TENANT][K.LONG_SENT], -1.0),), now, fttl),
            HashAdd(w[1].key, RANGE, full, now, fttl),
            HashAdd(w[2].key, RANGE, full, now, fttl),
            HashAdd(w[3].key, RANGE, full, now, fttl),
            HashAdd(w[4].key, RANGE, full, now, fttl),
            HashAdd(w[5].key, RANGE, short, now, sttl),
            HashAdd(w[6].key, RANGE, short, now, sttl),
            HashAdd(w[7].key, NUMBER, ((0, -1.0),), now, _ENTITY_TTL),
        )
        if w[-1].schema == RESEND:
            adds += (HashAdd(w[-1].key, RESEND, ((0, -1.0),), now, self._resend_ttl),)
        spans = self._spans
        undos = tuple(
            LimitUndo(spec.key, spans.get(spec.windows) or tuple(w for w, _ in spec.windows), now)
            for spec in plan.limits
        )
        return Settle(adds, undos, (self._record(req, info, decision),))

    def _record(self, req: FraudRequest, info: NumberInfo, decision: Decision) -> ListPush:
        rec = {
            "at": req.now,
            "tenant_id": req.tenant_id,
            "number": mask_e164(info.e164, info.country_code or None),
            "country": req.country or info.region,
            "action": decision.action,
            "codes": [r.code for r in decision.reasons],
            "messages": [r.message for r in decision.reasons],
            "score": round(decision.score, 4),
        }
        return ListPush(
            self.keys.decisions(req.tenant_id),
            _COMPACT_JSON.encode(rec),
            self.settings.decisions_kept,
            30 * _DAY,
        )

    # ---- feedback from the gateway ------------------------------------------------------------------

    async def record_verified(
        self,
        tenant_id: str,
        e164: str,
        country: str,
        sent_at: float,
        now: float,
        *,
        client_ip: str | None = None,
        device_id: str | None = None,
        challenged: bool = False,
    ) -> None:
        """An OTP sent at ``sent_at`` was verified at ``now`` (``challenged``: it was sent after a
        passed challenge, ``Decision.challenged``)."""
        info = number_info(e164)
        country = country or info.region
        k = self.keys
        t, g = tenant_id, K.ALL_TENANTS
        ver: tuple[tuple[str, float], ...] = ((K.VERIFIED, 1.0),)
        if challenged:
            ver += ((K.CH_VERIFIED, 1.0),)
        full = (*ver, (K.LONG_VERIFIED, 1.0))
        op = self._op
        fttl, sttl = self._full_ttl, self._short_ttl
        number = k.number(t, k.hash(info.e164))
        writes = [
            op(k.range(t, "all", ""), TENANT, ((K.LONG_VERIFIED, 1.0),), sent_at, fttl),
            op(k.range(t, "cc", country), RANGE, full, sent_at, fttl),
            op(k.range(t, "p5", info.p5), RANGE, full, sent_at, fttl),
            op(k.range(g, "cc", country), RANGE, full, sent_at, fttl),
            op(k.range(g, "p5", info.p5), RANGE, full, sent_at, fttl),
            op(k.range(g, "p4", info.p4), RANGE, ver, sent_at, sttl),
            op(k.range(g, "p3", info.p3), RANGE, ver, sent_at, sttl),
            op(number, NUMBER, ((K.NUM_VERIFIED, 1.0),), sent_at, _ENTITY_TTL),
            op(number, NUMBER, ((K.NUM_HISTORY, 1.0),), now, _ENTITY_TTL),
        ]
        if device_id:
            dev = k.device(t, k.hash("d:" + device_id))
            writes.append(op(dev, DEVICE, ((K.DEV_HISTORY, 1.0),), now, _ENTITY_TTL))
        if client_ip:
            writes.append(op(k.ip(k.hash("i:" + client_ip)), IP, ((K.IP_VERIFIED, 1.0),), sent_at, _IP_TTL))
        await self.backend.check(Plan(now=now, schemas=self.schemas, writes=tuple(writes)))

    async def record_delivery_failed(
        self, tenant_id: str, e164: str, country: str, sent_at: float, now: float
    ) -> None:
        """The carrier reported that an OTP sent at ``sent_at`` was not delivered."""
        info = number_info(e164)
        country = country or info.region
        k = self.keys
        t, g = tenant_id, K.ALL_TENANTS
        fail = ((K.FAILED, 1.0),)
        fttl, sttl = self._full_ttl, self._short_ttl
        writes = [
            self._op(k.range(t, "cc", country), RANGE, fail, sent_at, fttl),
            self._op(k.range(t, "p5", info.p5), RANGE, fail, sent_at, fttl),
            self._op(k.range(g, "cc", country), RANGE, fail, sent_at, fttl),
            self._op(k.range(g, "p5", info.p5), RANGE, fail, sent_at, fttl),
            self._op(k.range(g, "p4", info.p4), RANGE, fail, sent_at, sttl),
            self._op(k.range(g, "p3", info.p3), RANGE, fail, sent_at, sttl),
        ]
        await self.backend.check(Plan(now=now, schemas=self.schemas, writes=tuple(writes)))

    async def flush(self, now: float | None = None) -> None:
        """Apply queued corrections now (run-until-idle for tests and idle processes)."""
        await self.backend.flush(self.clock() if now is None else now, self.schemas)

    # ---- erasure -------------------------------------------------------------------------------------

    async def forget(self, e164: str, *, tenant_ids: Iterable[str] | None = None) -> int:
        """Erase what the engine keeps about one phone number (a data subject's erasure): its
        per-number counters and rate-limit windows (for every tenant, or only ``tenant_ids``) and its
        place in the recent-neighbours list of its 10k block, on the shared backend and the local
        fallback, including corrections still queued. Returns how many keys and list entries were
        removed.

        Range counters (digit prefixes, never a whole number), the masked decisions log and admin
        allow/block entries stay: they are about ranges, or decisions an administrator made.
        Without ``tenant_ids`` the Redis backend SCANs the keyspace (an admin operation, not the
        request path)."""
        info = number_info(e164)
        num_hash = self.keys.hash(info.e164)
        self._hashes.pop(info.e164, None)
        await self.flush()
        k = self.keys
        entries = ((k.sweep(info.p4), str(info.suffix4)),)  # its place among the block's recent numbers
        if tenant_ids is None:
            erasure = Erasure(
                matching=(
                    (f"{k.prefix}n:", ":" + num_hash),
                    (f"{k.prefix}lim:number:", ":" + num_hash),
                    (f"{k.prefix}rs:", ":" + num_hash),
                ),
                entries=entries,
            )
        else:
            tenants = tuple(tenant_ids)
            erasure = Erasure(
                keys=(
                    *(k.number(t, num_hash) for t in tenants),
                    *(k.limit("number", t, num_hash) for t in tenants),
                ),
                entries=entries,
            )
        removed = await self.backend.erase(erasure)
        log.warning(
            "antifraud: erased the state of %s (%d keys and entries)",
            mask_e164(info.e164, info.country_code or None),
            removed,
        )
        return removed

    # ---- admin --------------------------------------------------------------------------------------

    def _list_field(self, kind: ListKind, value: str) -> tuple[str, str]:
        """(hash field, label shown to admins) for a number, prefix or country."""
        if kind == "number":
            info = number_info(value)
            return f"n:{self.keys.hash(info.e164)}", mask_e164(info.e164, info.country_code or None)
        if kind == "prefix":
            if not value.startswith("+") or not value[1:].isdigit() or not 4 <= len(value) <= 13:
                raise ValueError("a prefix is '+' and 3 to 12 digits, e.g. +4915123")
            return f"p:{value}", value
        if kind == "country":
            return f"c:{value.upper()}", value.upper()
        raise ValueError(f"unknown list kind {kind!r}")

    async def allow(self, tenant_id: str, kind: ListKind, value: str, *, until: float | None = None) -> str:
        """Allow-list a number, a prefix (matched at its 1k, 10k or 100k block) or a country: range
        rules, breakers and the model no longer refuse it (number rules, geo and limits still apply).
        Returns the label stored (numbers masked)."""
        f, label = self._list_field(kind, value)
        await self.backend.hset(self.keys.allow(tenant_id), {f: f"{until or 0}|{label}|{self.clock():.0f}"})
        log.warning("antifraud admin: allow-listed %s %s for tenant %s", kind, label, tenant_id)
        return label

    async def lift(self, tenant_id: str, kind: ListKind, value: str) -> str:
        """Lift a range-level block or challenge now: exempt it for ``lift_seconds`` (after which the
        counters, which keep decaying, decide again)."""
        return await self.allow(tenant_id, kind, value, until=self.clock() + self.settings.lift_seconds)

    async def block(self, tenant_id: str, kind: ListKind, value: str) -> str:
        f, label = self._list_field(kind, value)
        await self.backend.hset(self.keys.block(tenant_id), {f: f"0|{label}|{self.clock():.0f}"})
        log.warning("antifraud admin: blocked %s %s for tenant %s", kind, label, tenant_id)
        return label

    async def unlist(self, tenant_id: str, kind: ListKind, value: str) -> bool:
        """Remove a number, prefix or country from both the allow and the block list."""
        f, _ = self._list_field(kind, value)
        a = await self.backend.hdel(self.keys.allow(tenant_id), [f])
        b = await self.backend.hdel(self.keys.block(tenant_id), [f])
        return bool(a or b)

    async def lists(self, tenant_id: str) -> dict[str, list[dict[str, object]]]:
        out: dict[str, list[dict[str, object]]] = {}
        now = self.clock()
        for name, key in (("allow", self.keys.allow(tenant_id)), ("block", self.keys.block(tenant_id))):
            entries: list[dict[str, object]] = []
            for f, raw in sorted((await self.backend.hgetall(key)).items()):
                until, label, at = [*raw.split("|"), "", "", ""][:3]
                kind = {"n": "number", "p": "prefix", "c": "country"}.get(f[:1], "?")
                u = float(until or 0)
                entries.append(
                    {
                        "kind": kind,
                        "value": label,
                        "until": u or None,
                        "active": u == 0 or u > now,
                        "since": float(at or 0),
                    }
                )
            out[name] = entries
        return out

    async def recent_decisions(self, tenant_id: str, limit: int = 50) -> list[DecisionRecord]:
        """The tenant's most recent refusals (challenge, block, rate_limited), newest first."""
        await self.flush()
        out = []
        for raw in await self.backend.lrange(self.keys.decisions(tenant_id), limit):
            d = json.loads(raw)
            out.append(
                DecisionRecord(
                    at=float(d["at"]),
                    tenant_id=str(d["tenant_id"]),
                    number=str(d["number"]),
                    country=str(d["country"]),
                    action=d["action"],
                    codes=tuple(d["codes"]),
                    score=float(d["score"]),
                    messages=tuple(d["messages"]),
                )
            )
        return out


# json.dumps(rec, separators=(",", ":")) without building an encoder per call
_COMPACT_JSON = json.JSONEncoder(separators=(",", ":"))

_LIST_KINDS: tuple[Literal["number", "prefix", "country"], ...] = (
    "number",
    "prefix",
    "prefix",
    "prefix",
    "country",
)


def _active(value: str, now: float) -> bool:
    if not value:
        return False
    until = value.split("|", 1)[0]
    try:
        u = float(until)
    except ValueError:
        return False
    return u == 0 or u > now


def _span(window: int) -> str:
    return {60: "minute", 3600: "hour", 86400: "day"}.get(window, f"{window} s")


def _codes(d: Decision) -> str:
    return ",".join(r.code for r in d.reasons) or "-"


def _masked(info: NumberInfo) -> str:
    return mask_e164(info.e164, info.country_code or None)


def _replace_shared(d: Decision) -> Decision:
    return Decision(d.action, d.reasons, d.retry_after, d.score, False, d.challenged)
