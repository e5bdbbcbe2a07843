"""The traffic simulator against a RUNNING gateway and sim-carrier, over HTTP, in real time.

:class:`HttpDriver` is the simulator's :class:`~antifraud.simulate.Driver` spoken over the public API:

==================  ========================================================================================
driver call         what goes over the wire
==================  ========================================================================================
``request``         ``POST /v1/otp`` ``{"to", "client_ip", "device_id", "session_id", "challenge_token"?}``
                    with the simulated tenant's API key; 202 → allow, 428 ``challenge_required`` →
                    challenge, 403 ``fraud_blocked`` / ``country_not_permitted`` → block, 429 → rate_limited
                    (``Retry-After``), 400 ``invalid_number`` → block (a typo, refused before anti-fraud);
                    anything else → ``error`` (e.g. 422 ``template_not_registered``), kept apart
``verified``        the code read from the sim-carrier's inbox (``GET /inbox?to=``, the first message
                    received after the request), then ``POST /v1/otp/{id}/verify``
``delivery_failed`` the sim-carrier's ``POST /fail {"to"}``: the receipt it still holds for that number
                    becomes a ``failed`` receipt, posted to the gateway before the answer
                    ``{"switched": n}``; n = 0 (the receipt was already sent) counts as missed
``probe``           ``POST /v1/fraud/check`` (same body as ``/v1/otp``): the send path's decision as a dry
                    run, nothing counted; answers the ``action``
==================  ========================================================================================

A failed delivery reaches the gateway only as a ``failed`` receipt from the carrier, as in service: the
gateway applies it (``smsgw_messages_total{status="failed"}``) and tells anti-fraud
(``record_delivery_failed``). The simulator decides a failure 2–20 s after the send, so the sim-carrier
must hold its receipts longer than that (``smsgw sim-carrier --receipt-delay-ms 25000``,
:data:`RECEIPT_DELAY_NEEDED_MS`); the run reads the sim's knobs from its ``/stats`` and the report says
when failures were missed.

:func:`run_http` plays a :class:`~antifraud.simulate.WindowConfig` (a SHORT window at per-second rates,
never hours compressed into seconds) through the driver, reads the gateway's ``/metrics`` before and
after, and :func:`report_http` prints the same kind of figures as the in-process evaluation, labelled as
what they are: a short real-time run on fresh tenants, seen from the client.
"""

from __future__ import annotations

import asyncio
import json
import math
import re
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from antifraud.decision import FraudRequest
from antifraud.evaluate import FamilyFigures, Friction, LegitFigures, percentile, stop_index
from antifraud.simulate import (
    ATTACK_FAMILIES,
    DECISIONS,
    HIGH_COST,
    MID_COST,
    Answer,
    Row,
    Sent,
    SimResult,
    Simulation,
    WindowConfig,
    mobile_blocks,
    window_tenants,
)

CHALLENGE_TOKEN = "sim-captcha-passed"  # what a tenant's backend passes after its own CAPTCHA check
RECEIPT_DELAY_NEEDED_MS = 25_000.0  # the simulator decides a failure up to 20 s after the send
_CODE = re.compile(r"(?<!\d)(\d{4,10})(?!\d)")


# ---- one answer -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Outcome:
    """What one ``POST /v1/otp`` answer means to the simulator and to the gateway's counters.

    ``fraud`` is the anti-fraud decision the gateway counted in ``smsgw_fraud_decisions_total``
    (``allow`` / ``challenge`` / ``block``), None when the check did not run or refused by a rate
    limit (those count in ``smsgw_rate_limited_total``)."""

    action: str  # allow | challenge | block | rate_limited | error
    code: str  # the error code, "" for 202
    retry_after: float | None = None
    reasons: tuple[str, ...] = ()
    otp_id: str | None = None
    fraud: str | None = None


def classify(status: int, body: Any, retry_after: str | None) -> Outcome:
    """Map one HTTP answer of ``POST /v1/otp`` (status, decoded JSON body, ``Retry-After``) to the
    simulator's action. Pure: the contract's answers in, no I/O."""
    err = body.get("error") if isinstance(body, dict) else None
    err = err if isinstance(err, dict) else {}
    code = str(err.get("code", "")) if err else ""
    reasons = tuple(
        str(r.get("code", "")) for r in err.get("reasons", []) if isinstance(r, dict) and r.get("code")
    )
    if status == 202 and isinstance(body, dict) and isinstance(body.get("id"), str):
        return Outcome("allow", "", otp_id=body["id"], fraud="allow")
    if status == 428 and code == "challenge_required":
        return Outcome("challenge", code, reasons=reasons, fraud="challenge")
    if status == 403 and code == "fraud_blocked":
        return Outcome("block", code, reasons=reasons or (code,), fraud="block")
    if status == 403 and code == "country_not_permitted":
        return Outcome("block", code, reasons=(code,))  # the tenant's countries, or the engine's
    if status == 429:
        after = _seconds(retry_after if retry_after is not None else err.get("retry_after"))
        # the gateway's own resend gate (cooldown, hourly cap per number) runs before anti-fraud, so
        # its 429 is no anti-fraud decision; neither is anti-fraud's own limit
        gate = "limit" in err
        return Outcome(
            "rate_limited",
            code or "rate_limited",
            after,
            reasons or (f"{err.get('scope', 'number')}_{err['limit']}" if gate else "rate_limited",),
        )
    if status == 400 and code == "invalid_number":
        return Outcome("block", code, reasons=(code,))
    return Outcome("error", code or f"http_{status}", reasons=(code or f"http_{status}",))


def _seconds(value: object) -> float | None:
    try:
        v = float(str(value))
    except ValueError:
        return None
    return v if math.isfinite(v) and v >= 0 else None


def code_in(text: str) -> str | None:
    """The OTP code in a message text: the first run of 4 to 10 digits."""
    m = _CODE.search(text)
    return m.group(1) if m else None


# ---- the driver -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class OtpRef:
    """The driver's handle on an accepted OTP (``Sent.ref``)."""

    otp_id: str
    tenant: str
    sent_at: float  # wall clock just before the request, to find its message in the inbox


@dataclass(slots=True)
class HttpStats:
    answers: Counter[str] = field(default_factory=Counter)  # "202", "428 challenge_required", …
    fraud: Counter[str] = field(default_factory=Counter)  # decisions the gateway should have counted
    rate_limited: int = 0  # 429s of any source (smsgw_rate_limited_total)
    verify: Counter[str] = field(default_factory=Counter)  # verified, incorrect_code, no_code, …
    latencies_ns: list[int] = field(default_factory=list)  # whole POST /v1/otp, client side
    failures_played: int = 0  # delivery failures the sim-carrier turned into failed receipts
    failures_missed: int = 0  # … it could not: the receipt had been sent (or was never asked for)
    receipts_failed: int = 0  # failed receipts posted by those (a number may hold several)
    probes: Counter[str] = field(default_factory=Counter)  # POST /v1/fraud/check answers by action
    transport_errors: int = 0


class HttpDriver:
    """The simulator's :class:`~antifraud.simulate.Driver` over HTTP (see the module docstring).

    ``keys`` maps the simulator's tenant names to API keys (scopes ``send,verify``) of real tenants.
    ``code_wait`` bounds how long a verification waits for its message to reach the inbox."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        gateway: str,
        sim_carrier: str,
        keys: Mapping[str, str],
        *,
        clock: Callable[[], float] = time.time,
        code_wait: float = 5.0,
        clock_skew: float = 2.0,
    ) -> None:
        self.session = session
        self.gateway = gateway.rstrip("/")
        self.sim_carrier = sim_carrier.rstrip("/")
        self.keys = dict(keys)
        self.clock = clock
        self.code_wait = code_wait
        self.clock_skew = clock_skew
        self.stats = HttpStats()

    def _auth(self, tenant: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.keys[tenant]}"}

    async def request(self, req: FraudRequest) -> Answer:
        body = request_body(req)
        sent_at = self.clock()
        t0 = time.perf_counter_ns()
        try:
            async with self.session.post(
                f"{self.gateway}/v1/otp", json=body, headers=self._auth(req.tenant_id)
            ) as r:
                status, retry = r.status, r.headers.get("Retry-After")
                try:
                    payload: Any = await r.json(content_type=None)
                except ValueError:
                    payload = None
        except (aiohttp.ClientError, TimeoutError):
            self.stats.transport_errors += 1
            self.stats.answers["transport_error"] += 1
            return Answer("error", None, None, time.perf_counter_ns() - t0, ("transport_error",))
        lat = time.perf_counter_ns() - t0
        out = classify(status, payload, retry)
        self.stats.latencies_ns.append(lat)
        self.stats.answers[f"{status} {out.code}".strip()] += 1
        if out.fraud is not None:
            self.stats.fraud[out.fraud] += 1
        self.stats.rate_limited += status == 429
        sent = None
        if out.otp_id is not None:
            sent = Sent(req, req.challenge_passed, OtpRef(out.otp_id, req.tenant_id, sent_at))
        return Answer(out.action, out.retry_after, sent, lat, out.reasons)

    async def verified(self, sent: Sent, at: float) -> None:
        """The user reads the SMS in the sim-carrier's inbox and types the code in."""
        ref = sent.ref
        assert isinstance(ref, OtpRef)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.code_wait
        tried: set[str] = set()
        pause = 0.02
        while True:
            try:
                async with self.session.get(f"{self.sim_carrier}/inbox", params={"to": sent.req.e164}) as r:
                    inbox: Any = await r.json(content_type=None) if r.status == 200 else []
            except (aiohttp.ClientError, TimeoutError, ValueError):
                self.stats.transport_errors += 1
                inbox = []
            fresh = [
                m
                for m in reversed(inbox if isinstance(inbox, list) else [])  # oldest first
                if isinstance(m, dict)
                and float(m.get("received_at", 0)) >= ref.sent_at - self.clock_skew
                and m.get("id") not in tried
            ]
            for m in fresh:
                tried.add(str(m.get("id")))
                code = code_in(str(m.get("text", "")))
                if code is None:
                    continue
                outcome = await self._verify(ref, code)
                if outcome != "incorrect_code":
                    self.stats.verify[outcome] += 1
                    return
                self.stats.verify["incorrect_code"] += 1  # another message to this number: try the next
            if loop.time() >= deadline:
                self.stats.verify["no_code"] += 1
                return
            await asyncio.sleep(pause)  # the dispatcher has not handed it to the carrier yet
            pause = min(pause * 2, 0.5)

    async def _verify(self, ref: OtpRef, code: str) -> str:
        try:
            async with self.session.post(
                f"{self.gateway}/v1/otp/{ref.otp_id}/verify",
                json={"code": code},
                headers=self._auth(ref.tenant),
            ) as r:
                if r.status == 200:
                    return "verified"
                body: Any = await r.json(content_type=None)
        except (aiohttp.ClientError, TimeoutError, ValueError):
            self.stats.transport_errors += 1
            return "transport_error"
        err = body.get("error") if isinstance(body, dict) else None
        return str(err.get("code")) if isinstance(err, dict) and err.get("code") else f"http_{r.status}"

    async def delivery_failed(self, sent: Sent, at: float) -> None:
        """The carrier learns the message was not delivered: its held receipt becomes a failed one."""
        try:
            async with self.session.post(f"{self.sim_carrier}/fail", json={"to": sent.req.e164}) as r:
                payload: Any = await r.json(content_type=None) if r.status == 200 else None
        except (aiohttp.ClientError, TimeoutError, ValueError):
            payload = None
        n = payload.get("switched") if isinstance(payload, dict) else None
        if not isinstance(n, int):
            self.stats.transport_errors += 1
            self.stats.failures_missed += 1
        elif n > 0:
            self.stats.failures_played += 1
            self.stats.receipts_failed += n
        else:
            self.stats.failures_missed += 1

    async def probe(self, req: FraudRequest) -> str:
        """What ``POST /v1/otp`` would answer now, counting nothing (``POST /v1/fraud/check``);
        "error" when the gateway gave no decision."""
        try:
            async with self.session.post(
                f"{self.gateway}/v1/fraud/check", json=request_body(req), headers=self._auth(req.tenant_id)
            ) as r:
                payload: Any = await r.json(content_type=None) if r.status == 200 else None
        except (aiohttp.ClientError, TimeoutError, ValueError):
            self.stats.transport_errors += 1
            payload = None
        action = payload.get("action") if isinstance(payload, dict) else None
        out = action if isinstance(action, str) and action in DECISIONS else "error"
        self.stats.probes[out] += 1
        return out


def request_body(req: FraudRequest) -> dict[str, str]:
    """The JSON body of ``POST /v1/otp`` and ``POST /v1/fraud/check`` for one simulated request."""
    body: dict[str, str] = {"to": req.e164}
    if req.client_ip:
        body["client_ip"] = req.client_ip
    if req.device_id:
        body["device_id"] = req.device_id
    if req.session_id:
        body["session_id"] = req.session_id
    if req.challenge_passed:
        body["challenge_token"] = CHALLENGE_TOKEN
    return body


# ---- the gateway's own counters ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class GatewayCounters:
    """The counters of ``/metrics`` the run is checked against (summed over labels as noted)."""

    fraud: Mapping[str, float]  # smsgw_fraud_decisions_total by decision (all countries)
    rate_limited: float  # smsgw_rate_limited_total, all scopes
    otp_sent: float  # smsgw_otp_sent_total of the run's tenants
    otp_verified: float  # smsgw_otp_verified_total of the run's tenants
    failed: float = 0.0  # smsgw_messages_total{status="failed"}, all countries and routes

    def minus(self, before: GatewayCounters) -> GatewayCounters:
        keys = set(self.fraud) | set(before.fraud)
        return GatewayCounters(
            {k: self.fraud.get(k, 0.0) - before.fraud.get(k, 0.0) for k in sorted(keys)},
            self.rate_limited - before.rate_limited,
            self.otp_sent - before.otp_sent,
            self.otp_verified - before.otp_verified,
            self.failed - before.failed,
        )


def parse_counters(text: str, tenant_ids: Sequence[str]) -> GatewayCounters:
    """The counters from a Prometheus text exposition."""
    fraud: dict[str, float] = {}
    limited = sent = verified = failed = 0.0
    tenants = set(tenant_ids)
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            if s.name == "smsgw_fraud_decisions_total":
                d = s.labels.get("decision", "")
                fraud[d] = fraud.get(d, 0.0) + s.value
            elif s.name == "smsgw_rate_limited_total":
                limited += s.value
            elif s.name == "smsgw_otp_sent_total" and s.labels.get("tenant") in tenants:
                sent += s.value
            elif s.name == "smsgw_otp_verified_total" and s.labels.get("tenant") in tenants:
                verified += s.value
            elif s.name == "smsgw_messages_total" and s.labels.get("status") == "failed":
                failed += s.value
    return GatewayCounters(fraud, limited, sent, verified, failed)


async def scrape(session: aiohttp.ClientSession, gateway: str, tenant_ids: Sequence[str]) -> GatewayCounters:
    async with session.get(f"{gateway.rstrip('/')}/metrics") as r:
        r.raise_for_status()
        return parse_counters(await r.text(), tenant_ids)


async def sim_receipt_delay(session: aiohttp.ClientSession, sim_carrier: str) -> float | None:
    """The sim-carrier's receipt delay in ms, from its ``/stats`` (None when it does not say)."""
    try:
        async with session.get(f"{sim_carrier.rstrip('/')}/stats") as r:
            stats: Any = await r.json(content_type=None) if r.status == 200 else None
    except (aiohttp.ClientError, TimeoutError, ValueError):
        return None
    delay = stats.get("receipt_delay_ms") if isinstance(stats, dict) else None
    return float(delay) if isinstance(delay, int | float) else None


# ---- a run ------------------------------------------------------------------------------------------

# (tenant name, the countries its real users are in, or None: it declares none) → (tenant_id, api_key)
Provision = Callable[[str, frozenset[str] | None], Awaitable[tuple[str, str]]]


@dataclass(slots=True)
class HttpRun:
    window: WindowConfig
    result: SimResult
    stats: HttpStats
    tenants: dict[str, str]  # simulated tenant → real tenant id
    counters: GatewayCounters  # delta of the gateway's counters over the run
    wall_seconds: float
    gateway: str
    receipt_delay_ms: float | None = None  # the sim-carrier's, read from its /stats before the run
    declared: bool = True  # the tenants declared the countries of their real users (expected countries)


def countries_touched(window: WindowConfig) -> list[str]:
    """Every destination the window can draw numbers in (their numbering is prepared up front, so
    number sampling does not stall the event loop while requests are timed)."""
    out = {cc for ten in window_tenants(window) for cc, _ in ten.countries}
    fams = set(window.families)
    if fams - {"A5", "A9"}:
        out |= set(HIGH_COST)
    if fams & {"A4", "A8"}:
        out |= set(MID_COST)
    if "A9" in fams:
        out |= {"US", "GB", "DE", "IN", "BR"}
    return sorted(out)


async def run_http(
    gateway: str,
    sim_carrier: str,
    window: WindowConfig,
    provision: Provision,
    *,
    concurrency: int = 64,
    clock: Callable[[], float] = time.time,
    session: aiohttp.ClientSession | None = None,
    declared: bool = True,
) -> HttpRun:
    """Create one real tenant per simulated tenant (``provision``; fraud mode enforce, every country
    allowed, and with ``declared`` the countries of its real users expected, as a tenant that says
    where its users are does), play the window in real time through :class:`HttpDriver`, and take
    the gateway's counters over it."""
    own = session is None
    s = session or aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30))
    try:
        stamp = f"{int(clock())}"
        tenants: dict[str, str] = {}
        keys: dict[str, str] = {}
        for spec in window_tenants(window):
            expected = frozenset(cc for cc, _ in spec.countries) if declared else None
            tid, key = await provision(f"sim-{window.seed}-{spec.id}-{stamp}", expected)
            tenants[spec.id], keys[spec.id] = tid, key
        for cc in countries_touched(window):
            mobile_blocks(cc)
        before = await scrape(s, gateway, list(tenants.values()))
        delay = await sim_receipt_delay(s, sim_carrier)
        driver = HttpDriver(s, gateway, sim_carrier, keys, clock=clock)
        t0 = clock()
        sim = Simulation.for_window(window, driver, t0 + 0.5)
        result = await sim.play(sim.window_end + window.tail, clock=clock, concurrency=concurrency)
        wall = clock() - t0
        after = await scrape(s, gateway, list(tenants.values()))
    finally:
        if own:
            await s.close()
    return HttpRun(window, result, driver.stats, tenants, after.minus(before), wall, gateway, delay, declared)


# ---- the report ------------------------------------------------------------------------------------


@dataclass(slots=True)
class HttpFigures:
    families: dict[str, FamilyFigures]
    legit: LegitFigures
    passed: LegitFigures  # real users' requests after passing a challenge
    errors: Counter[str]  # answers that were neither a send nor a fraud refusal, by code
    reasons: dict[str, Counter[str]]  # "legit" / "attack" → first reason code of each refusal
    sent_legit: int
    sessions: int
    lost: int
    outage: LegitFigures = field(default_factory=LegitFigures)  # real users there, from its start on
    baselines: dict[str, str] = field(default_factory=dict)  # campaign → probe answer before it began
    friction: Friction = field(default_factory=Friction)  # per real-user family


def figures(res: SimResult) -> HttpFigures:
    fams: dict[str, FamilyFigures] = {}
    legit, passed, outage = LegitFigures(), LegitFigures(), LegitFigures()
    l10 = [ep for ep in res.episodes if ep.kind.startswith("L10")]
    errors: Counter[str] = Counter()
    reasons: dict[str, Counter[str]] = {"legit": Counter(), "attack": Counter()}
    by_campaign: dict[str, list[Row]] = {}
    sent_legit = 0
    friction = Friction()
    for r in res.rows:
        if r.action == "error":
            errors[r.codes[0] if r.codes else "error"] += 1
            continue
        if r.who == "legit":
            friction.add(r)
        if r.action != "allow" and r.codes and r.who != "typo":
            reasons["legit" if r.who in ("legit", "collateral") else "attack"][r.codes[0]] += 1
        if r.who in ("legit", "collateral"):
            (passed if r.challenge_passed else legit).add(r.action)
            sent_legit += r.sent
            if any(ep.country == r.country and r.t >= ep.start for ep in l10):
                outage.add(r.action)
        elif r.who != "typo":
            f = fams.setdefault(r.who, FamilyFigures())
            f.requests += 1
            f.sent += r.sent
            f.cost += r.price
            f.cost_sent += r.price * r.sent
            by_campaign.setdefault(r.campaign, []).append(r)
    for cid, rows in by_campaign.items():
        f = fams[cid.split("-")[0]]
        seq = [(r.t, r.sent, r.price) for r in sorted(rows, key=lambda r: r.t)]
        stop = stop_index(seq)
        f.leaks.append(sum(sent for _, sent, _ in seq[:stop]))
        f.totals.append(sum(sent for _, sent, _ in seq))
        f.stops.append(seq[stop][0] - seq[0][0] if stop < len(seq) else float("inf"))
    baselines = {cid: c.baseline for cid, c in res.campaigns.items() if c.baseline}
    for p in res.probes:  # one per probed campaign: released (when) or not within the run
        camp = res.campaigns[p.campaign]
        fams.setdefault(camp.family, FamilyFigures()).releases.append(
            p.t - camp.end if p.action == "released" else float("inf")
        )
    return HttpFigures(
        fams,
        legit,
        passed,
        errors,
        reasons,
        sent_legit,
        res.sessions,
        res.sessions_lost,
        outage,
        baselines,
        friction,
    )


def _pct(x: float) -> str:
    return f"{100 * x:.1f} %"


def _release(f: FamilyFigures) -> float | str | None:
    """Seconds from a campaign's last request to its release; "not within the run"; None: not probed."""
    if not f.releases:
        return None
    return round(f.releases[0], 1) if math.isfinite(f.releases[0]) else "not within the run"


def _q(ns: list[int], q: float) -> float:
    """The ``q`` quantile of nanosecond latencies, in milliseconds."""
    return percentile(ns, q) / 1e6


def agreement(run: HttpRun) -> list[tuple[str, float, float]]:
    """(counter, what the driver saw, what the gateway counted) for each checked counter."""
    st, c = run.stats, run.counters
    return [
        ("smsgw_fraud_decisions_total{decision=allow}", st.fraud["allow"], c.fraud.get("allow", 0.0)),
        (
            "smsgw_fraud_decisions_total{decision=challenge}",
            st.fraud["challenge"],
            c.fraud.get("challenge", 0.0),
        ),
        ("smsgw_fraud_decisions_total{decision=block}", st.fraud["block"], c.fraud.get("block", 0.0)),
        ("smsgw_rate_limited_total", st.rate_limited, c.rate_limited),
        ("smsgw_otp_sent_total (run's tenants)", st.answers["202"], c.otp_sent),
        ("smsgw_otp_verified_total (run's tenants)", st.verify["verified"], c.otp_verified),
        ('smsgw_messages_total{status="failed"}', st.receipts_failed, c.failed),
    ]


def summary(run: HttpRun) -> dict[str, Any]:
    """The run's figures as plain data (``smsgw simulate --json``)."""
    fig = figures(run.result)
    lat = run.stats.latencies_ns
    return {
        "kind": "short real-time run over HTTP",
        "seed": run.window.seed,
        "seconds": run.window.seconds,
        "tail": run.window.tail,
        "wall_seconds": round(run.wall_seconds, 1),
        "tenants": run.tenants,
        "declared": run.declared,
        "families": {
            fam: {
                "requests": f.requests,
                "sent": f.sent,
                "refused_count": round(f.blocked_count, 4),
                "refused_cost": round(f.blocked_cost, 4),
                "leaked": f.leaks[0] if f.leaks else 0,
                "stop_seconds": f.stops[0] if f.stops and math.isfinite(f.stops[0]) else None,
                "release_seconds": _release(f),
                "baseline": fig.baselines.get(f"{fam}-0"),  # probe answer before the campaign
            }
            for fam, f in sorted(fig.families.items(), key=lambda kv: ATTACK_FAMILIES.index(kv[0]))
        },
        "legit": {
            "requests": fig.legit.requests,
            "blocked": fig.legit.blocked,
            "challenged": fig.legit.challenged,
            "after_challenge": fig.passed.requests,
            "after_challenge_blocked": fig.passed.blocked,
            "sent": fig.sent_legit,
            "sessions": fig.sessions,
            "sessions_lost": fig.lost,
        },
        "legit_families": {
            fam: {
                "requests": x.requests,
                "challenged": x.challenged,
                "blocked": x.blocked,
                "first_reasons": dict(fig.friction.reasons[fam]),
            }
            for fam, x in fig.friction.families.items()
        },
        "errors": dict(fig.errors),
        "first_reasons": {k: dict(v) for k, v in fig.reasons.items()},
        "answers": dict(run.stats.answers),
        "verify": dict(run.stats.verify),
        "latency_ms": {
            "n": len(lat),
            "p50": round(_q(lat, 0.5), 2),
            "p90": round(_q(lat, 0.9), 2),
            "p99": round(_q(lat, 0.99), 2),
            "max": round(_q(lat, 1.0), 2),
        },
        "delivery_failures": {
            "played": run.stats.failures_played,
            "missed": run.stats.failures_missed,
            "failed_receipts": run.stats.receipts_failed,
            "sim_receipt_delay_ms": run.receipt_delay_ms,
        },
        "outage": [
            {
                "country": ep.country,
                "start": round(ep.start - run.result.config.start, 1),
                "seconds": ep.end - ep.start,
            }
            for ep in run.result.episodes
            if ep.kind.startswith("L10")
        ],
        "outage_users": {
            "requests": fig.outage.requests,
            "blocked": fig.outage.blocked,
            "challenged": fig.outage.challenged,
        },
        "probes": dict(run.stats.probes),
        "counters": [{"counter": n, "driver": a, "gateway": b} for n, a, b in agreement(run)],
    }


def report_http(run: HttpRun) -> str:
    w, st = run.window, run.stats
    fig = figures(run.result)
    lines: list[str] = []
    out = lines.append
    out(
        f"# Anti-fraud over HTTP: a SHORT real-time run ({w.seconds:.0f} s of traffic + {w.tail:.0f} s "
        f"tail, {run.wall_seconds:.0f} s wall), seed {w.seed}, {len(run.tenants)} tenant(s), {run.gateway}"
    )
    out("")
    out(
        "Tenants may send everywhere and "
        + (
            "declare the countries their real users are in (`tenant create --expect`)."
            if run.declared
            else "declare no countries (`--undeclared`): every first send to a country is a cold start."
        )
    )
    out("")
    out(
        "Not the evaluation report: minutes of traffic at per-second rates on FRESH tenants (no history, "
        "so every tenant is a cold start), one campaign per family, figures from the client's side. "
        "For the held-out evaluation over days run `smsgw antifraud evaluate`."
    )
    out("")
    out("## Pumping refused (429, 403, and 428 not passed), SMS leaked before stop")
    out("")
    probed = w.probe_every > 0
    rel_head, rel_rule = (" time to release |", " --- |") if probed else ("", "")
    out(
        "| family | requests | refused by count / by cost | SMS sent | leaked before stop | time to stop |"
        + rel_head
    )
    out("| --- | --- | --- | --- | --- | --- |" + rel_rule)
    tot = FamilyFigures()
    for fam in ATTACK_FAMILIES:
        f = fig.families.get(fam)
        if f is None:
            continue
        for k in ("requests", "sent", "cost", "cost_sent"):
            setattr(tot, k, getattr(tot, k) + getattr(f, k))
        tot.leaks += f.leaks
        stop = f.stops[0] if f.stops else float("inf")
        rel = _release(f)
        rel_cell = (
            " - |" if rel is None else f" {rel if isinstance(rel, str) else f'{rel:.0f} s'} |"
        ) * probed
        out(
            f"| {fam} | {f.requests} | {_pct(f.blocked_count)} / {_pct(f.blocked_cost)} | {f.sent} | "
            f"{f.leaks[0] if f.leaks else 0} | {'not stopped' if math.isinf(stop) else f'{stop:.0f} s'} |"
            + rel_cell
        )
    out(
        f"| **all** | {tot.requests} | {_pct(tot.blocked_count)} / {_pct(tot.blocked_cost)} | {tot.sent} | "
        f"max {max(tot.leaks, default=0)} | |" + " |" * probed
    )
    if probed:
        out("")
        out(
            f"Time to release: after each campaign's last request, `POST /v1/fraud/check` (a dry run, "
            f"nothing counted) every {w.probe_every:g} s for a real user in its range, until answered "
            f'`allow` or as before the campaign; "not within the run" when the tail ended first. '
            "Probe answers: " + (", ".join(f"{k} {n}" for k, n in sorted(st.probes.items())) or "none")
        )
    out("")
    out("## Real users")
    out("")
    lg = fig.legit
    out(f"- requests: {lg.requests} first tries (+ {fig.passed.requests} after passing a challenge)")
    out(f"- blocked (403 + 429): {_pct(lg.blocked_rate)} ({lg.blocked})")
    out(f"- challenged (428): {_pct(lg.challenged_rate)} ({lg.challenged})")
    out(f"- blocked after passing a challenge: {fig.passed.blocked} of {fig.passed.requests}")
    out(f"- codes sent: {fig.sent_legit}; sessions without a code: {fig.lost} of {fig.sessions}")
    v = st.verify
    other = ", ".join(f"{k} {n}" for k, n in sorted(v.items()) if k != "verified") or "no failures"
    out(
        f"- verified through the sim-carrier inbox: {v['verified']} of {sum(v.values())} attempted during "
        f"the run ({other}); real users take ~25 s (median) to type a code, later ones fall after the run"
    )
    if fig.errors:
        out(
            "- refused before anti-fraud (not counted above): "
            + ", ".join(f"{k} {n}" for k, n in fig.errors.most_common())
        )
    if fig.outage.requests:
        ol = fig.outage
        ep = next(e for e in run.result.episodes if e.kind.startswith("L10"))
        out(
            f"- L10 route outage in {ep.country} ({ep.end - ep.start:.0f} s from second "
            f"{ep.start - run.result.config.start:.0f}): real users there from its start on: {ol.requests} "
            f"requests, blocked {ol.blocked}, challenged {ol.challenged}"
        )
    if st.failures_played or st.failures_missed:
        out(
            f"- delivery failures played as failed receipts: {st.failures_played} "
            f"({st.receipts_failed} receipts); missed (the receipt was already sent): {st.failures_missed}"
        )
    if st.failures_missed and (run.receipt_delay_ms or 0.0) < RECEIPT_DELAY_NEEDED_MS:
        out(
            f"- the sim-carrier sends receipts after {run.receipt_delay_ms} ms; to play every failure, "
            f"start it with `smsgw sim-carrier --receipt-delay-ms {RECEIPT_DELAY_NEEDED_MS:.0f}`"
        )
    for who, label in (("legit", "real users"), ("attack", "attacks")):
        top = fig.reasons[who].most_common(6)
        if top:
            out(f"- first reasons given to {label}: " + ", ".join(f"{k} {n}" for k, n in top))
    out("")
    out("Per real-user family (every tenant here is brand new, so every request is also `new_tenant`):")
    out("")
    lines.extend(fig.friction.table(_pct))
    out("")
    out("## Decision latency as seen over HTTP (whole POST /v1/otp, client side, loopback)")
    out("")
    lat = st.latencies_ns
    out(
        f"p50 {_q(lat, 0.5):.1f} ms, p90 {_q(lat, 0.9):.1f} ms, p99 {_q(lat, 0.99):.1f} ms, "
        f"max {_q(lat, 1.0):.1f} ms over {len(lat)} requests"
    )
    out("")
    out("## The gateway's counters over the run (delta of /metrics) against what the driver saw")
    out("")
    out("| counter | driver | gateway |")
    out("| --- | --- | --- |")
    for name, a, b in agreement(run):
        out(f"| {name} | {a:.0f} | {b:.0f}{'' if a == b else ' (differs)'} |")
    out("")
    out("(fraud decisions and rate limits are gateway-wide: they agree when nothing else used the gateway)")
    return "\n".join(lines)


async def simulate_command(
    gateway: str,
    sim_carrier: str,
    window: WindowConfig,
    provision: Provision,
    *,
    as_json: bool = False,
    declared: bool = True,
) -> str:
    """``smsgw simulate``: the run and its report (markdown, or JSON)."""
    run = await run_http(gateway, sim_carrier, window, provision, declared=declared)
    return json.dumps(summary(run), indent=2, sort_keys=True) if as_json else report_http(run)
