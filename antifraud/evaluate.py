"""The evaluation report: the engine and the baselines on the same simulated traffic, held-out seeds.

``evaluate(seeds)`` runs the traffic simulator in process on a simulated clock once through the
engine (memory backend, the shipped model) and once through each baseline, then prints per attack
family: the share of pumping SMS refused by count and by cost, SMS leaked per campaign before it was
stopped, time to stop, time to release after the campaign ended; and for real users: the share of
requests blocked (403 or 429) and challenged (428), overall, in the worst big country, during a
marketing surge and a route outage, and for the real users inside attacked ranges; and the decision
latency.

Definitions (``shared/notes/fraud.md`` §(c)): a campaign is *stopped* at the first request after which
≥ 95 % of its requests are refused; its *leak* is the SMS it got sent before that. *Release* is the
time from a campaign's last request until a dry-run request from a real user in its range is allowed
(probed every minute, up to 6 h). Typos (invalid numbers real users type) are counted apart: the
gateway answers them ``400 invalid_number`` before any fraud check.

    .venv/bin/python -m antifraud.evaluate --seeds 101 102

``--window SECONDS`` plays instead, per seed, one short window of the traffic ``smsgw simulate``
plays against a running gateway (``WindowConfig``: fresh tenants with no history in a fresh engine,
real users at ``--legit-rate`` a second, one campaign per attack family), in process on a simulated
clock, starting at ``window_origin(seed)``:

    .venv/bin/python -m antifraud.evaluate --seeds 101 102 103 --window 300 --no-baselines --quiet
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import statistics
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from antifraud.baselines import CountryHourlyCap, PrefixConversionBlock, VolumeOverBaseline
from antifraud.decision import FraudRequest
from antifraud.engine import FraudEngine
from antifraud.limits_memory import MemoryFraudBackend
from antifraud.scorer import Scorer, load_scorer
from antifraud.settings import FraudSettings, TenantPolicy
from antifraud.simulate import (
    ATTACK_FAMILIES,
    DAY,
    LEGIT_FAMILIES,
    Answer,
    Driver,
    Row,
    Sent,
    SimConfig,
    SimResult,
    Simulation,
    WindowConfig,
    window_tenants,
)


class EngineDriver:
    """Drives :class:`FraudEngine` in process (the simulator's :class:`Driver`)."""

    def __init__(self, engine: FraudEngine, *, collect_features: bool = False) -> None:
        self.engine = engine
        self._features: list[float] | None = None
        if collect_features:
            engine.feature_log = self._keep

    def _keep(self, req: FraudRequest, x: list[float]) -> None:
        self._features = x

    async def request(self, req: FraudRequest) -> Answer:
        self._features = None
        t0 = time.perf_counter_ns()
        d = await self.engine.evaluate(req)
        lat = time.perf_counter_ns() - t0
        sent = Sent(req, d.challenged) if d.action == "allow" else None
        return Answer(d.action, d.retry_after, sent, lat, tuple(r.code for r in d.reasons), self._features)

    async def verified(self, sent: Sent, at: float) -> None:
        r = sent.req
        await self.engine.record_verified(
            r.tenant_id,
            r.e164,
            r.country,
            r.now,
            at,
            client_ip=r.client_ip,
            device_id=r.device_id,
            challenged=sent.challenged,
        )

    async def delivery_failed(self, sent: Sent, at: float) -> None:
        r = sent.req
        await self.engine.record_delivery_failed(r.tenant_id, r.e164, r.country, r.now, at)

    async def probe(self, req: FraudRequest) -> str:
        return (await self.engine.evaluate(req, dry_run=True)).action


def sim_settings() -> FraudSettings:
    """The simulated tenants may send everywhere: the detector, not geo permissions, must stop
    attacks (the worst case; the default safe list would refuse most high-cost destinations)."""
    return FraudSettings(default_policy=TenantPolicy(allowed_countries=None))


def make_engine(model: Scorer, settings: FraudSettings | None = None) -> FraudEngine:
    s = settings or sim_settings()
    return FraudEngine(s, MemoryFraudBackend(), model, clock=time.time)


async def simulate(
    config: SimConfig, driver: Driver, *, progress: bool = False, collect_features: bool = False
) -> SimResult:
    return await Simulation(config, driver, collect_features=collect_features).run(progress=progress)


# ---- figures ----------------------------------------------------------------------------------------


@dataclass(slots=True)
class FamilyFigures:
    requests: int = 0
    sent: int = 0
    cost: float = 0.0
    cost_sent: float = 0.0
    leaks: list[int] = field(default_factory=list)  # per campaign, before it was stopped
    totals: list[int] = field(default_factory=list)  # per campaign, all SMS sent
    stops: list[float] = field(default_factory=list)  # seconds from the first request
    releases: list[float] = field(default_factory=list)  # seconds after the last request

    @property
    def blocked_count(self) -> float:
        return 1.0 - self.sent / self.requests if self.requests else 1.0

    @property
    def blocked_cost(self) -> float:
        return 1.0 - self.cost_sent / self.cost if self.cost else 1.0


@dataclass(slots=True)
class LegitFigures:
    requests: int = 0
    blocked: int = 0
    challenged: int = 0

    def add(self, action: str) -> None:
        self.requests += 1
        self.blocked += action in ("block", "rate_limited")
        self.challenged += action == "challenge"

    @property
    def blocked_rate(self) -> float:
        return self.blocked / self.requests if self.requests else 0.0

    @property
    def challenged_rate(self) -> float:
        return self.challenged / self.requests if self.requests else 0.0


@dataclass(slots=True)
class Friction:
    """Real users' requests per family (``LEGIT_FAMILIES``) and the first reason of each refusal."""

    families: dict[str, LegitFigures] = field(
        default_factory=lambda: {f: LegitFigures() for f in LEGIT_FAMILIES}
    )
    reasons: dict[str, Counter[str]] = field(default_factory=lambda: {f: Counter() for f in LEGIT_FAMILIES})

    def add(self, r: Row) -> None:
        for g in r.groups:
            self.families[g].add(r.action)
            if r.action != "allow":
                self.reasons[g][r.codes[0] if r.codes else r.action] += 1

    def worst(self) -> tuple[str, float]:
        got = [(f, x.challenged_rate) for f, x in self.families.items() if x.requests]
        return max(got, key=lambda kv: kv[1], default=("-", 0.0))

    def table(self, pct: Callable[[float], str]) -> list[str]:
        """Markdown rows: family, requests, challenged, blocked, where the friction comes from."""
        out = ["| real-user family | requests | challenged | blocked | first reasons of refusals |"]
        out.append("| --- | --- | --- | --- | --- |")
        for fam, x in self.families.items():
            top = ", ".join(f"{k} {v}" for k, v in self.reasons[fam].most_common(4)) or "-"
            out.append(
                f"| {fam} | {x.requests} | {pct(x.challenged_rate)} ({x.challenged}) "
                f"| {pct(x.blocked_rate)} ({x.blocked}) | {top} |"
            )
        return out


@dataclass(slots=True)
class Figures:
    name: str
    families: dict[str, FamilyFigures] = field(default_factory=dict)
    legit: LegitFigures = field(default_factory=LegitFigures)
    collateral: LegitFigures = field(default_factory=LegitFigures)
    typos: LegitFigures = field(default_factory=LegitFigures)
    by_country: dict[str, LegitFigures] = field(default_factory=dict)
    surge: LegitFigures = field(default_factory=LegitFigures)
    outage: LegitFigures = field(default_factory=LegitFigures)
    newbie_legit: LegitFigures = field(default_factory=LegitFigures)
    newbie_attack: FamilyFigures = field(default_factory=FamilyFigures)
    friction: Friction = field(default_factory=Friction)
    sessions: int = 0
    lost: int = 0
    latencies: list[int] = field(default_factory=list)
    reasons: dict[str, int] = field(default_factory=lambda: defaultdict(int))

    @property
    def overall(self) -> FamilyFigures:
        tot = FamilyFigures()
        for f in self.families.values():
            tot.requests += f.requests
            tot.sent += f.sent
            tot.cost += f.cost
            tot.cost_sent += f.cost_sent
            tot.leaks += f.leaks
            tot.totals += f.totals
            tot.stops += f.stops
            tot.releases += f.releases
        return tot


def add_result(fig: Figures, res: SimResult) -> Figures:
    by_campaign: dict[str, list[tuple[float, bool, float]]] = defaultdict(list)
    episodes = res.episodes
    for r in res.rows:
        if r.who in ("legit", "collateral", "typo"):
            if r.who == "typo":
                fig.typos.add(r.action)
                continue
            target = fig.collateral if r.who == "collateral" else fig.legit
            target.add(r.action)
            if r.who == "legit":
                fig.friction.add(r)
                fig.by_country.setdefault(r.country, LegitFigures()).add(r.action)
                if r.tenant == "newbie":
                    fig.newbie_legit.add(r.action)
                for ep in episodes:
                    if ep.start <= r.t < ep.end and ep.country == r.country and ep.tenant in ("*", r.tenant):
                        (fig.surge if ep.kind.startswith("L9") else fig.outage).add(r.action)
            if r.action != "allow" and r.codes:
                fig.reasons[f"legit:{r.codes[0]}"] += 1
        else:
            f = fig.families.setdefault(r.who, FamilyFigures())
            f.requests += 1
            f.sent += r.sent
            f.cost += r.price
            f.cost_sent += r.price * r.sent
            if r.tenant == "newbie":
                fig.newbie_attack.requests += 1
                fig.newbie_attack.sent += r.sent
                fig.newbie_attack.cost += r.price
                fig.newbie_attack.cost_sent += r.price * r.sent
            by_campaign[r.campaign].append((r.t, r.sent, r.price))
            if r.action != "allow" and r.codes:
                fig.reasons[f"attack:{r.codes[0]}"] += 1
        if r.latency_ns:
            fig.latencies.append(r.latency_ns)
    released = {p.campaign: p for p in res.probes}
    for cid, camp in res.campaigns.items():
        rows = sorted(by_campaign.get(cid, []))
        if not rows:
            continue
        f = fig.families.setdefault(camp.family, FamilyFigures())
        stop = stop_index(rows)
        f.leaks.append(sum(s for _, s, _ in rows[:stop]))
        f.totals.append(sum(s for _, s, _ in rows))
        f.stops.append(rows[stop][0] - rows[0][0] if stop < len(rows) else rows[-1][0] - rows[0][0])
        probe = released.get(cid)
        if probe is not None:
            f.releases.append(probe.t - camp.end if probe.action == "released" else float("inf"))
    fig.sessions += res.sessions
    fig.lost += res.sessions_lost
    return fig


def stop_index(rows: Sequence[tuple[float, bool, float]]) -> int:
    """Smallest i such that ≥ 95 % of rows[i:] were refused (len(rows) if never)."""
    refused = 0
    best = len(rows)
    for i in range(len(rows) - 1, -1, -1):
        refused += not rows[i][1]
        if refused >= 0.95 * (len(rows) - i):
            best = i
    return best


# ---- the report -------------------------------------------------------------------------------------


def _pct(x: float) -> str:
    return f"{100 * x:.2f}%" if x < 0.9995 or x == 1.0 else f"{100 * x:.3f}%"


def _med(xs: list[float] | list[int]) -> str:
    if not xs:
        return "-"
    m = statistics.median(xs)
    return "never" if m == float("inf") else f"{m:.0f}"


def _maxs(xs: list[int]) -> str:
    return str(max(xs)) if xs else "-"


def _dur(xs: list[float]) -> str:
    if not xs:
        return "-"
    m = statistics.median(xs)
    if m == float("inf"):
        return "never"
    return f"{m:.0f} s" if m < 120 else f"{m / 60:.0f} min"


def percentile(xs: list[int], q: float) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, int(q * len(s)))] if s else 0.0


def report(figs: list[Figures], seeds: Sequence[int], model_version: str) -> str:
    lines: list[str] = []
    out = lines.append
    out(f"# Anti-fraud evaluation: seeds {', '.join(map(str, seeds))} (held out), model {model_version}")
    out("")
    out("## Pumping refused, per attack family (count / cost) and SMS leaked per campaign before stop")
    out("")
    head = "| family | " + " | ".join(f"{f.name}: refused count / cost, leak median/max" for f in figs) + " |"
    out(head)
    out("| --- " * (len(figs) + 1) + "|")
    fams = [f for f in ATTACK_FAMILIES if any(f in g.families for g in figs)]
    for fam in [*fams, "all"]:
        cells = []
        for g in figs:
            ff = g.overall if fam == "all" else g.families.get(fam, FamilyFigures())
            cells.append(
                f"{_pct(ff.blocked_count)} / {_pct(ff.blocked_cost)}, {_med(ff.leaks)}/{_maxs(ff.leaks)}"
            )
        out(f"| {fam} | " + " | ".join(cells) + " |")
    out("")
    out("## Time to stop / time to release after the campaign ended (medians)")
    out("")
    out("| family | " + " | ".join(f"{f.name}: stop / release" for f in figs) + " |")
    out("| --- " * (len(figs) + 1) + "|")
    for fam in [*fams, "all"]:
        cells = []
        for g in figs:
            ff = g.overall if fam == "all" else g.families.get(fam, FamilyFigures())
            cells.append(f"{_dur(ff.stops)} / {_dur(ff.releases)}")
        out(f"| {fam} | " + " | ".join(cells) + " |")
    out("")
    out("## Real users")
    out("")
    out("| measure | " + " | ".join(f.name for f in figs) + " |")
    out("| --- " * (len(figs) + 1) + "|")

    def row(label: str, fn: Callable[[Figures], str]) -> None:
        out(f"| {label} | " + " | ".join(fn(g) for g in figs) + " |")

    row("legit OTP requests", lambda g: f"{g.legit.requests}")
    row("blocked (403 + 429)", lambda g: f"{_pct(g.legit.blocked_rate)} ({g.legit.blocked})")
    row("challenged (428)", lambda g: f"{_pct(g.legit.challenged_rate)} ({g.legit.challenged})")
    row("worst country ≥ 1000 requests, blocked", lambda g: _pct(_worst(g)))
    row("users lost (never got a code)", lambda g: _pct(g.lost / g.sessions if g.sessions else 0))
    row(
        "L9 surge 5×: blocked / challenged",
        lambda g: f"{_pct(g.surge.blocked_rate)} / {_pct(g.surge.challenged_rate)} of {g.surge.requests}",
    )
    row(
        "L10 route outage: blocked / challenged",
        lambda g: f"{_pct(g.outage.blocked_rate)} / {_pct(g.outage.challenged_rate)} of {g.outage.requests}",
    )
    row(
        "L11 users inside attacked ranges: blocked / challenged",
        lambda g: (
            f"{_pct(g.collateral.blocked_rate)} / {_pct(g.collateral.challenged_rate)} "
            f"of {g.collateral.requests}"
        ),
    )
    row(
        "cold-start tenant: attack cost refused / legit blocked",
        lambda g: f"{_pct(g.newbie_attack.blocked_cost)} / {_pct(g.newbie_legit.blocked_rate)}",
    )
    row("typos refused (400 invalid_number)", lambda g: f"{g.typos.blocked} of {g.typos.requests}")
    out("")
    out(f"## Friction per real-user family ({figs[0].name}; a request may be in several)")
    out("")
    lines += figs[0].friction.table(_pct)
    out("")
    out("## Decision latency in process (memory backend, whole check, GC settled as in a serving gateway)")
    out("")
    for g in figs:
        if g.latencies:
            out(
                f"- {g.name}: p50 {percentile(g.latencies, 0.5) / 1e3:.0f} µs, "
                f"p99 {percentile(g.latencies, 0.99) / 1e3:.0f} µs, "
                f"p99.9 {percentile(g.latencies, 0.999) / 1e3:.0f} µs over {len(g.latencies)} checks"
            )
    eng = figs[0]
    top = sorted(eng.reasons.items(), key=lambda kv: -kv[1])[:12]
    if top:
        out("")
        out(f"Most frequent first reasons ({eng.name}): " + ", ".join(f"{k} {v}" for k, v in top))
    return "\n".join(lines)


def _worst(g: Figures) -> float:
    big = [c for c in g.by_country.values() if c.requests >= 1000]
    return max((c.blocked_rate for c in big), default=0.0)


SERVING_GC_THRESHOLDS = (50_000, 50, 1_000)  # = gateway.app.GC_THRESHOLDS (a test keeps them equal)

# ---- entry points -------------------------------------------------------------------------------------


async def run(
    seeds: Sequence[int],
    *,
    model: Scorer | None = None,
    baselines: bool = True,
    scale: float = 1.0,
    progress: bool = True,
    config: Callable[[int], SimConfig] | None = None,
) -> list[Figures]:
    scorer: Scorer = model if model is not None else load_scorer()
    make = config or (lambda seed: SimConfig(seed=seed, scale=scale, attack_scale=scale))
    figs = [Figures("smsgw")]
    if baselines:
        figs += [Figures("country hourly cap"), Figures("volume over baseline"), Figures("prefix conversion")]
    for seed in seeds:
        cfg = make(seed)
        res = await simulate(cfg, EngineDriver(make_engine(scorer)), progress=progress)
        add_result(figs[0], res)
        if baselines:
            learn_until = cfg.start + cfg.attack_from * DAY
            drivers: list[Driver] = [
                CountryHourlyCap(learn_until),
                VolumeOverBaseline(),
                PrefixConversionBlock(),
            ]
            for fig, drv in zip(figs[1:], drivers, strict=True):
                add_result(fig, await simulate(cfg, drv, progress=False))
    return figs


# what ``smsgw simulate`` leaves out by default: destinations where the gateway refuses unregistered
# OTP templates before anti-fraud (422 template_not_registered)
WINDOW_EXCLUDED = ("CN", "IN", "VN")


def window_origin(seed: int) -> float:
    """The first second of a seed's window: the seed's day of the multi-day run, at hour
    ``5·seed mod 24`` UTC (seeds 101, 102, 103: 01:00, 06:00, 11:00 UTC), so seeds differ in the
    destinations' local time of day as well."""
    return SimConfig(seed=seed).start + (5 * seed % 24) * 3600.0


async def run_windows(
    seeds: Sequence[int],
    seconds: float,
    *,
    model: Scorer,
    legit_rate: float = 5.0,
    tenants: int = 3,
    declared: bool = True,
) -> list[Figures]:
    """Per seed, a fresh engine and a window of traffic with fresh tenants, played until idle.
    ``declared``: each tenant declares the countries its real users are in (``TenantPolicy.
    expected_countries``, as ``tenant create --countries`` does) while it may still send everywhere,
    so attacks are not refused by geo permission; without it, tenants declare nothing."""
    fig = Figures("smsgw")
    for seed in seeds:
        w = WindowConfig(
            seed=seed,
            seconds=seconds,
            legit_rate=legit_rate,
            tenants=tenants,
            tail=30.0,
            exclude_countries=WINDOW_EXCLUDED,
        )
        engine = make_engine(model)
        origin = window_origin(seed)
        for spec in window_tenants(w):
            engine.set_tenant_policy(
                spec.id,
                TenantPolicy(
                    allowed_countries=None,
                    expected_countries=frozenset(c for c, _ in spec.countries) if declared else None,
                    created_at=origin,
                ),
            )
        sim = Simulation.for_window(w, EngineDriver(engine), origin)
        add_result(fig, await sim.play(sim.window_end + w.tail, clock=time.time, pace=False))
    return [fig]


def evaluate(
    seeds: Sequence[int] = (101, 102),
    *,
    model_path: Path | None = None,
    baselines: bool = True,
    scale: float = 1.0,
    progress: bool = True,
    window: float = 0.0,
    legit_rate: float = 5.0,
    tenants: int = 3,
    declared: bool = True,
) -> str:
    model = load_scorer(model_path)
    clash = sorted(set(seeds) & set(model.train_seeds))
    if clash:
        raise ValueError(f"seeds {clash} were used to train the model: evaluate on held-out seeds")
    # the garbage collector as a serving gateway runs it (gateway.app.settle_gc): what exists now is
    # frozen and young collections come every 50 000 allocations, so a collection over the simulator's
    # own objects is not read as the decision's latency
    threshold = gc.get_threshold()
    gc.collect()
    gc.freeze()
    gc.set_threshold(*SERVING_GC_THRESHOLDS)
    try:
        if window > 0:
            figs = asyncio.run(
                run_windows(
                    seeds, window, model=model, legit_rate=legit_rate, tenants=tenants, declared=declared
                )
            )
        else:
            figs = asyncio.run(run(seeds, model=model, baselines=baselines, scale=scale, progress=progress))
    finally:
        gc.unfreeze()
        gc.set_threshold(*threshold)
    return report(figs, seeds, model.version)


def main(argv: Sequence[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m antifraud.evaluate", description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[101, 102])
    ap.add_argument("--model", type=Path, default=None, help="model JSON (default: the shipped one)")
    ap.add_argument("--scale", type=float, default=1.0, help="multiplies traffic volumes")
    ap.add_argument("--no-baselines", action="store_true")
    ap.add_argument("--quiet", action="store_true", help="no progress bar")
    ap.add_argument(
        "--window",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="play one window of this many seconds per seed (fresh tenants, as smsgw simulate plays)",
    )
    ap.add_argument("--legit-rate", type=float, default=5.0, help="with --window: real users a second")
    ap.add_argument("--tenants", type=int, default=3, help="with --window: simulated tenants")
    ap.add_argument(
        "--undeclared",
        action="store_true",
        help="with --window: tenants declare no countries (as smsgw simulate's tenants, --countries ALL)",
    )
    args = ap.parse_args(argv)
    print(
        evaluate(
            args.seeds,
            model_path=args.model,
            baselines=not args.no_baselines,
            scale=args.scale,
            progress=not args.quiet,
            window=args.window,
            legit_rate=args.legit_rate,
            tenants=args.tenants,
            declared=not args.undeclared,
        )
    )


if __name__ == "__main__":
    main()
